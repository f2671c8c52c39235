"""ferkit: facial expression recognition (angry, disgust, fear, happy, sad, surprise, neutral)."""

import os

from .data import EMOTIONS

# ONNX Runtime keeps a telemetry database under ~/.cache unless this is set before it loads, which
# ferkit's modules do after this package.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "__version__"]

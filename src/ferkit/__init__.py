"""ferkit: facial expression recognition (angry, disgust, fear, happy, sad, surprise, neutral).

`from ferkit import EmotionRecognizer` is all a user who predicts needs; it imports no torch.
"""

import os

# ONNX Runtime keeps a telemetry database under ~/.cache unless this is set before it loads (the
# imports below load it).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .data import EMOTIONS  # noqa: E402
from .errors import FerkitError  # noqa: E402
from .recognize import EmotionRecognizer, RecognizerConfig, recognize_source  # noqa: E402

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "EmotionRecognizer", "FerkitError", "RecognizerConfig", "__version__", "recognize_source"]

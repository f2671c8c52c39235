"""ferkit: facial expression recognition (angry, disgust, fear, happy, sad, surprise, neutral).

`from ferkit import EmotionRecognizer` is all a user who predicts needs; it imports no torch.
"""

import os

from .data import EMOTIONS
from .errors import FerkitError
from .recognize import EmotionRecognizer, RecognizerConfig, recognize_source

# ONNX Runtime keeps a telemetry database under ~/.cache unless this is set before it loads, which
# ferkit's modules do after this package.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "EmotionRecognizer", "FerkitError", "RecognizerConfig", "__version__", "recognize_source"]

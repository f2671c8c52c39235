"""ferkit: facial expression recognition (angry, disgust, fear, happy, sad, surprise, neutral)."""

from .data import EMOTIONS

__version__ = "0.1.0"
__all__ = ["EMOTIONS", "__version__"]

"""The errors a user can cause and fix: a bad file, a bad option, a camera that is not there.

Each says what went wrong and, where there is one, the fix. The CLI prints a `FerkitError` as one
line and exits with code 2; any other exception is a bug and keeps its traceback.
"""


class FerkitError(Exception):
    """Base of every expected error."""


class OptionError(FerkitError):
    """An option or argument that names nothing known (a detector, an architecture, an optimizer)."""


class DataError(FerkitError):
    """A data file that cannot be used."""


class ModelError(FerkitError):
    """A model file or training checkpoint that cannot be loaded, or does not fit the architecture asked for."""


class RunError(FerkitError):
    """A training run that cannot start or resume as asked."""


class SourceError(FerkitError):
    """An input (image, folder, video, camera) that is not there or cannot be read."""


class ImageError(SourceError):
    """An image that cannot be used (unreadable, empty, too large); front ends report it and go on."""


class ImageTooLarge(ImageError):
    """An image over the pixel limit (the server answers 413)."""


class ImageTooSmall(ImageError):
    """An image too small to hold a face (the server answers 422)."""


class VideoError(SourceError):
    """A video or camera that cannot be opened or written."""


class ClusterError(FerkitError):
    """A Ray cluster (`ferkit batch --address`) that cannot be reached."""

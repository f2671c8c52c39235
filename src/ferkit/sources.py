"""Where frames come from: image files and folders, video files and cameras; reading and decoding
images, with size limits so that no image takes more memory than it should."""

from __future__ import annotations

import glob
import io
import os
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Iterator, Sequence, Union

import cv2
import numpy as np
import PIL.Image
import PIL.ImageOps

from .errors import ImageError, ImageTooLarge, ImageTooSmall, SourceError, VideoError

if TYPE_CHECKING:
    from PIL.Image import Image

MAX_PIXELS = 60_000_000  # larger images are refused rather than exhausting memory
MIN_SIDE = 8  # pixels; smaller images cannot hold a face
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"}
# The encoded formats read: Pillow reads their headers (sizes, before any decoding), OpenCV decodes them.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF")
# ferkit checks every image's size against its own limit before decoding; Pillow's warning would only add noise.
warnings.filterwarnings("ignore", category=PIL.Image.DecompressionBombWarning)


def find_images(sources: Sequence[str | Path], warn: Callable[[str], None] = print,
                suffixes: Collection[str] = IMAGE_SUFFIXES) -> list[tuple[Path, Path]]:
    """Files as given, the images inside folders (recursively, sorted) and those a glob pattern
    matches (by `suffixes`; `batch` adds videos'), each with the path its annotated copy keeps
    (relative to the folder given, so same-named files in subfolders don't clash). A folder that
    cannot be listed is told to `warn`; anything named like an image that is not a plain file (a
    FIFO, say) is kept, for the reader to report."""

    def unreadable(e: OSError) -> None:
        warn(f"{e.filename}: cannot read the folder ({e.strerror})")

    found = []
    for source in map(Path, sources):
        if source.is_dir():
            inside = [Path(folder) / name for folder, _, names in os.walk(source, onerror=unreadable) for name in names]
            found += [(p, p.relative_to(source)) for p in sorted(inside) if p.suffix.lower() in suffixes]
        elif source.exists():
            found.append((source, Path(source.name)))
        elif glob.has_magic(str(source)) and (matches := sorted(Path(p) for p in glob.glob(str(source), recursive=True))):
            found += [(p, Path(p.name)) for p in matches if p.suffix.lower() in suffixes and not p.is_dir()]
        else:
            raise SourceError(f"{source}: no such file or folder")
    return found


def read_image(source: str | Path | np.ndarray | Image, color: str = "bgr") -> np.ndarray:
    """Any image a user may hand over (path, BGR/RGB/gray array, PIL image) -> a BGR or gray uint8 array."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.exists() and not path.is_file():  # a FIFO or device would block or never end
            raise ImageError(f"{path}: not a regular file")
        try:
            raw = np.fromfile(path, dtype=np.uint8)
        except OSError as e:
            raise ImageError(f"{path}: cannot read ({e.strerror or e})") from None
        return decode_image(raw, str(path))
    if not isinstance(source, np.ndarray):  # a PIL image, turned upright by its EXIF orientation as files are (OpenCV does that)
        try:
            source, color = np.asarray(PIL.ImageOps.exif_transpose(source).convert("RGB")), "rgb"
        except AttributeError:
            raise ImageError(f"cannot read an image from a {type(source).__name__}") from None
    image = source
    if image.dtype != np.uint8:
        if not np.issubdtype(image.dtype, np.floating):
            raise ImageError(f"image arrays must be uint8 or float in 0..1, got {image.dtype}")
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGR if color == "rgb" else cv2.COLOR_BGRA2BGR)
    elif image.ndim == 3 and image.shape[2] == 3 and color == "rgb":
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim != 2 and not (image.ndim == 3 and image.shape[2] == 3):
        raise ImageError(f"image arrays must be H x W or H x W x 3/4, got shape {image.shape}")
    return _checked_size(np.ascontiguousarray(image), "image")


def decode_image(data: bytes | np.ndarray, what: str = "image", max_pixels: int | None = None) -> np.ndarray:
    """Encoded image bytes -> BGR array. The size the header declares is checked first, so a small
    file that would decode to gigabytes (a decompression bomb) is refused before any decoding."""
    limit = max_pixels or MAX_PIXELS
    raw = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if raw.size == 0:
        raise ImageError(f"{what}: empty file")
    _check_size(*declared_size(raw, what), what, limit)
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError(f"{what}: not a readable image")
    return _checked_size(image, what, limit)


def declared_size(raw: np.ndarray, what: str = "image") -> tuple[int, int]:
    """Width and height from an encoded image's header alone: Pillow's `open` is lazy and decodes nothing."""
    try:
        with PIL.Image.open(io.BytesIO(raw.tobytes()), formats=IMAGE_FORMATS) as image:
            return image.size
    except PIL.Image.DecompressionBombError:
        raise ImageTooLarge(f"{what}: over {2 * PIL.Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels") from None
    except Exception:  # a parser of untrusted bytes: any failure means the file is not an image we read
        raise ImageError(f"{what}: not a readable image ({', '.join(IMAGE_FORMATS)})") from None


def _checked_size(image: np.ndarray, what: str, limit: int | None = None) -> np.ndarray:
    _check_size(image.shape[1], image.shape[0], what, limit or MAX_PIXELS)
    return image


def _check_size(w: int, h: int, what: str, limit: int) -> None:
    if h == 0 or w == 0:
        raise ImageError(f"{what}: empty image")
    if h * w > limit:
        raise ImageTooLarge(f"{what}: {w}x{h} is over the limit of {limit / 1e6:g} megapixels")
    if min(h, w) < MIN_SIDE:
        raise ImageTooSmall(f"{what}: {w}x{h} pixels is too small to hold a face (at least {MIN_SIDE}x{MIN_SIDE})")


def open_video(source: str | int) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        what = f"camera {source}" if isinstance(source, int) else f"{source}"
        raise VideoError(f"{what}: cannot be opened as a video")
    return cap


@dataclass
class Frame:
    """One picture from a source, and where it came from."""

    image: np.ndarray | None  # BGR (or grey) uint8; None where it could not be read (`error` says why)
    origin: str  # the file it came from, or the camera
    index: int = 0  # its number in a video or camera's frames, from 0
    time: float = 0.0  # seconds into the video
    name: Path | None = None  # an image's path below the folder it was found in (annotated copies keep it)
    error: str = ""


class Images:
    """Image files, folders (searched recursively) and glob patterns, read one at a time; an
    unreadable image comes as a frame with its error, so a batch goes on past it."""

    stream = False  # each image stands alone: no tracking between them

    def __init__(self, sources: Sequence[str | Path], warn: Callable[[str], None] = print) -> None:
        self.files = find_images(sources, warn)

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[Frame]:
        for path, name in self.files:
            try:
                yield Frame(read_image(path), str(path), name=name)
            except ImageError as e:
                yield Frame(None, str(path), name=name, error=str(e))


class Video:
    """A video file's frames in order, or those from `start` up to `stop` (a chunk of a long video,
    for `batch`). Its first frame is decoded at once, so a file that is no video fails before
    anything is written; one that breaks off part-way ends there (`complete`)."""

    stream = True  # consecutive frames: faces are tracked from one to the next

    def __init__(self, path: str | Path, start: int = 0, stop: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such file")
        self.cap = open_video(str(self.path))
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.total = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        if start:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, start)
        self.stop = stop  # None: to the end
        self.read, self.seconds = start, 0.0  # the next frame's index; seconds spent decoding (the benchmark's "decode")
        self.first = self._decode()
        if self.first is None:
            self.close()
            raise VideoError(f"{self.path}: no frame could be decoded" + (f" at frame {start}" if start else ""))

    @property
    def size(self) -> tuple[int, int]:
        return self.first.shape[1], self.first.shape[0]

    @property
    def complete(self) -> bool:
        """Whether every frame the file announces (up to `stop`) was read."""
        end = self.total if self.stop is None else self.stop
        return end is None or self.read >= end

    def _decode(self) -> np.ndarray | None:
        t = time.perf_counter()
        ok, image = self.cap.read()
        self.seconds += time.perf_counter() - t
        return image if ok else None

    def __iter__(self) -> Iterator[Frame]:
        image = self.first
        try:
            while image is not None:
                yield Frame(image, str(self.path), self.read, self.read / self.fps)
                self.read += 1
                image = self._decode() if self.stop is None or self.read < self.stop else None
        finally:
            self.close()

    def close(self) -> None:
        self.cap.release()


class Camera:
    """A camera, or a video file standing in for one, read in a background thread that keeps only
    the newest frame: capture never waits for recognition and the picture never lags behind. A
    file plays at its own frame rate (so tests can use one) and, with `loop`, starts again at its
    end; a camera is read as fast as it delivers."""

    stream = True

    def __init__(self, source: int | str, loop: bool = False, wait: float = 0.05) -> None:
        self.source, self.cap, self.loop, self.wait = source, open_video(source), loop, wait
        self.is_file = not isinstance(source, int)
        self.interval = 1.0 / (self.cap.get(cv2.CAP_PROP_FPS) or 30.0) if self.is_file else 0.0
        self.frame: np.ndarray | None = None
        self.count = 0
        self.ended = False  # the camera disconnected, or the file ran out
        self.arrived = threading.Condition()
        self.stopping = threading.Event()
        self.started = time.perf_counter()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        next_time = time.perf_counter()
        while not self.stopping.is_set():
            ok, frame = self.cap.read()
            if not ok and self.loop and self.is_file and self.count:
                self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, frame = self.cap.read()
            with self.arrived:
                if ok:
                    self.frame, self.count = frame, self.count + 1
                else:
                    self.ended = True
                self.arrived.notify_all()
            if not ok:
                return
            if self.interval:
                next_time += self.interval
                time.sleep(max(0.0, next_time - time.perf_counter()))

    def __iter__(self) -> Iterator[Frame]:
        """Each new frame once; a frame without an image when none came within `wait` seconds (so a
        window can still answer keys while a camera stalls); the end when the camera is lost."""
        seen = 0
        while True:
            with self.arrived:
                self.arrived.wait_for(lambda: self.count != seen or self.ended, timeout=self.wait)
                image, count, ended = self.frame, self.count, self.ended
            if count != seen:
                seen = count
                yield Frame(image, str(self.source), count - 1, time.perf_counter() - self.started)
            elif ended:
                return
            else:
                yield Frame(None, str(self.source), count - 1, time.perf_counter() - self.started)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=2)
        self.cap.release()


Source = Union[Images, Video, Camera]

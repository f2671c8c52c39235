"""Web app and REST API: `ferkit serve`. The page at / streams the browser's camera to
/api/v1/predict and draws the answers; every asset is served from the package (no CDN)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi_offline import FastAPIOffline
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware.trustedhost import TrustedHostMiddleware

from . import __version__
from .errors import ImageError, ImageTooLarge, ImageTooSmall
from .recognize import EmotionRecognizer
from .results import Face
from .sources import decode_image

WEB = Path(__file__).parent / "web"
MB = 1024 * 1024
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]  # as Host headers name them
ANY_ADDRESS = ("0.0.0.0", "::")
CLOSE = {"Connection": "close"}  # a body left unread: the connection cannot carry another request


@dataclass
class Limits:
    """What requests may cost. Bodies are size-capped and must arrive within `upload_seconds` (a slow
    or stalled client would otherwise hold its memory for ever); at most `max_uploads` requests hold
    a body at once (the rest wait, their bytes unread, or get 503 when none frees in time); decoding
    and recognition run in `workers` threads, off the event loop."""

    max_bytes: int = 10 * MB
    max_pixels: int = 25_000_000
    upload_seconds: float = 30.0
    max_uploads: int = 16
    workers: int = 2


async def read_upload(request: Request, limits: Limits) -> bytes:
    """The image bytes of a multipart upload (any file field) or of a raw body, size-capped (413)
    and time-capped (408)."""
    too_large = HTTPException(413, f"upload too large: over {limits.max_bytes // MB} MB", headers=CLOSE)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes + 64 * 1024:
        raise too_large
    body = bytearray()
    try:
        with anyio.fail_after(limits.upload_seconds):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.max_bytes + 64 * 1024:  # multipart framing gets a little headroom
                    raise too_large
    except TimeoutError:
        raise HTTPException(408, f"upload too slow: the body must arrive within {limits.upload_seconds:g} s", headers=CLOSE) from None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async def replay():
            yield bytes(body)

        try:
            form = await MultiPartParser(request.headers, replay()).parse()
        except MultiPartException as e:
            raise HTTPException(422, f"malformed multipart body: {e.message}") from None
        files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
        if not files:
            raise HTTPException(422, "no file in the multipart body: send the image as a file field, e.g. -F file=@photo.jpg")
        data = await files[0].read()
    else:
        data = bytes(body)
    if not data:
        raise HTTPException(422, "empty body: send an image (JPEG, PNG, BMP, WebP or TIFF)")
    if len(data) > limits.max_bytes:
        raise HTTPException(413, f"upload too large: over {limits.max_bytes // MB} MB")
    return data


def decode(data: bytes, limits: Limits) -> np.ndarray:
    """Image bytes -> BGR array; too many pixels -> 413 (read from the header, before decoding),
    too few to hold a face -> 422, not an image -> 415."""
    try:
        return decode_image(data, "upload", limits.max_pixels)
    except ImageTooLarge as e:
        raise HTTPException(413, f"image too large: {e}") from None
    except ImageTooSmall as e:
        raise HTTPException(422, f"image too small: {e}") from None
    except ImageError as e:
        raise HTTPException(415, f"not an image: send JPEG, PNG, BMP, WebP, TIFF or GIF bytes ({e})") from None


def same_origin(request: Request) -> None:
    """Refuse (403) a POST that a web page of another origin makes: browsers send forms across
    origins without asking, and the server would spend its time on them."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, f"cross-origin request refused (Origin {origin})")


def trusted_hosts(bind: str, allowed: list[str]) -> list[str]:
    """The Host names a server bound to `bind` answers to: loopback, the bound address itself (unless
    it is every address), and the names given."""
    own = [] if bind in ANY_ADDRESS else [f"[{bind}]" if ":" in bind else bind]
    return [*LOOPBACK_HOSTS, *own, *allowed]


def create_app(recognizer: EmotionRecognizer | None = None, limits: Limits | None = None,
               allowed_hosts: list[str] | None = None) -> FastAPI:
    """The FastAPI app; one recognizer shared by all requests behind its lock (OpenCV's detectors
    are not safe to call from several threads at once; ONNX Runtime uses all cores per call).
    With `allowed_hosts`, a request naming any other Host gets 400 (DNS rebinding, spoofed names)."""
    recognizer = recognizer or EmotionRecognizer()
    limits = limits or Limits()
    uploads = anyio.Semaphore(limits.max_uploads)
    workers = anyio.CapacityLimiter(limits.workers)
    # FastAPIOffline serves the /docs assets itself: plain FastAPI loads them from a CDN.
    app = FastAPIOffline(title="ferkit", version=__version__, description="Facial expression recognition: 7 emotions per face.")
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB / "index.html")

    @app.get("/api/v1/health")
    async def health() -> dict:  # on the event loop: it answers while every worker thread is busy
        return {"status": "ok", "version": __version__}

    @app.get("/api/v1/model")
    def model() -> dict:
        card = recognizer.classifier.card
        return {
            "labels": list(recognizer.labels),
            "version": __version__,
            "name": card.get("name"),
            "architecture": card.get("architecture"),
            "metrics": card.get("metrics", {}),
            "detector": type(recognizer.detector).__name__,
            "options": asdict(recognizer.config),
            "limits": {"max_bytes": limits.max_bytes, "max_pixels": limits.max_pixels},
        }

    @app.post(
        "/api/v1/predict",
        summary="Emotions of the faces in an image",
        description="Send the image as multipart (`-F file=@photo.jpg`) or as the raw body. "
        "Returns each face's box (x, y, width, height), detector score, label, confidence and all 7 probabilities.",
        responses={403: {"description": "Cross-origin request"}, 408: {"description": "Upload too slow"},
                   413: {"description": "Upload or image too large"}, 415: {"description": "Not an image"},
                   422: {"description": "Malformed request, or an image too small to hold a face"},
                   503: {"description": "Too many uploads at once"}},
    )
    async def predict(request: Request) -> dict:
        same_origin(request)
        with anyio.move_on_after(limits.upload_seconds) as waiting:
            await uploads.acquire()
        if waiting.cancelled_caught:
            raise HTTPException(503, f"busy: {limits.max_uploads} uploads in progress; try again", headers={**CLOSE, "Retry-After": "1"})
        try:
            data = await read_upload(request, limits)

            def run() -> tuple[np.ndarray, list[Face], float]:
                image = decode(data, limits)
                with recognizer.lock:  # held here too, so time_ms is the work, not the wait
                    t = time.perf_counter()
                    return image, recognizer.predict(image), (time.perf_counter() - t) * 1000

            image, faces, ms = await anyio.to_thread.run_sync(run, limiter=workers)
        finally:
            uploads.release()
        return {"width": image.shape[1], "height": image.shape[0], "faces": [f.to_dict() for f in faces], "time_ms": round(ms, 2)}

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:  # never a bare 500 page
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    return app

"""Web app and REST API: `ferkit serve`. The page at / streams the browser's camera to
/api/v1/predict and draws the answers; every asset is served from the package (no CDN)."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi_offline import FastAPIOffline
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from . import __version__
from .errors import ImageError, ImageTooLarge
from .recognize import EmotionRecognizer
from .sources import decode_image

WEB = Path(__file__).parent / "web"
MB = 1024 * 1024


class Limits:
    """What one request may carry; anything larger is refused before it is decoded."""

    def __init__(self, max_bytes: int = 10 * MB, max_pixels: int = 25_000_000) -> None:
        self.max_bytes, self.max_pixels = max_bytes, max_pixels


async def read_upload(request: Request, limits: Limits) -> bytes:
    """The image bytes of a multipart upload (any file field) or of a raw body, size-capped (413)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_bytes + 64 * 1024:
        raise HTTPException(413, f"upload too large: over {limits.max_bytes // MB} MB")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limits.max_bytes + 64 * 1024:  # multipart framing gets a little headroom
            raise HTTPException(413, f"upload too large: over {limits.max_bytes // MB} MB")
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
    """Image bytes -> BGR array; too many pixels -> 413 (checked before the full decode), not an image -> 415."""
    try:
        return decode_image(data, "upload", limits.max_pixels)
    except ImageTooLarge as e:
        raise HTTPException(413, f"image too large: {e}") from None
    except ImageError as e:
        raise HTTPException(415, f"not an image: send JPEG, PNG, BMP, WebP or TIFF bytes ({e})") from None


def create_app(recognizer: EmotionRecognizer | None = None, limits: Limits | None = None) -> FastAPI:
    """The FastAPI app; one recognizer shared by all requests behind its lock (OpenCV's detectors
    are not safe to call from several threads at once; ONNX Runtime uses all cores per call)."""
    recognizer = recognizer or EmotionRecognizer()
    limits = limits or Limits()
    # FastAPIOffline serves the /docs assets itself: plain FastAPI loads them from a CDN.
    app = FastAPIOffline(title="ferkit", version=__version__, description="Facial expression recognition: 7 emotions per face.")
    app.mount("/static", StaticFiles(directory=WEB), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB / "index.html")

    @app.get("/api/v1/health")
    def health() -> dict:
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
        responses={413: {"description": "Upload or image too large"}, 415: {"description": "Not an image"}, 422: {"description": "Malformed request"}},
    )
    async def predict(request: Request) -> dict:
        image = decode(await read_upload(request, limits), limits)

        def run() -> tuple[list, float]:
            with recognizer.lock:  # held here too, so time_ms is the work, not the wait
                t = time.perf_counter()
                faces = recognizer.predict(image)
                return faces, (time.perf_counter() - t) * 1000

        faces, ms = await run_in_threadpool(run)
        return {"width": image.shape[1], "height": image.shape[0], "faces": [f.to_dict() for f in faces], "time_ms": round(ms, 2)}

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> JSONResponse:  # never a bare 500 page
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    return app

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from ferkit.classify import ASSETS
from ferkit.server import MB, Limits, create_app

SAMPLE = (ASSETS / "sample.jpg").read_bytes()


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(limits=Limits(max_bytes=1 * MB, max_pixels=4_000_000))) as client:  # one event loop, as a server has
        yield client


def test_predict_multipart_and_raw_body(client: TestClient) -> None:
    for response in (
        client.post("/api/v1/predict", files={"file": ("a.jpg", SAMPLE, "image/jpeg")}),
        client.post("/api/v1/predict", content=SAMPLE, headers={"content-type": "image/jpeg"}),
        client.post("/api/v1/predict", content=SAMPLE, headers={"content-type": "application/octet-stream"}),
    ):
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["width"], body["height"]) == (512, 512)
        (face,) = body["faces"]
        assert face["label"] == "happy" and len(face["probabilities"]) == 7 and len(face["box"]) == 4
        assert abs(sum(face["probabilities"].values()) - 1) < 1e-4


def test_no_face_is_an_empty_list(client: TestClient) -> None:
    ok, png = cv2.imencode(".png", np.full((240, 320, 3), 30, np.uint8))
    response = client.post("/api/v1/predict", content=png.tobytes())
    assert response.status_code == 200 and response.json()["faces"] == []


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"content": b"hello, not an image"}, 415, "not an image"),
        ({"content": b""}, 422, "empty body"),
        ({"files": {"note": ("a.txt", b"text", "text/plain")}, "data": {}}, 415, "not an image"),
        ({"content": b'--x\r\nContent-Disposition: form-data; name="field"\r\n\r\nvalue\r\n--x--\r\n',
          "headers": {"content-type": "multipart/form-data; boundary=x"}}, 422, "no file in the multipart body"),
        ({"data": {"field": "value"}}, 415, "not an image"),
        ({"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}}, 422, ""),
        ({"content": b"\xff\xd8\xff" + b"\x00" * 2 * MB}, 413, "upload too large"),
        ({"content": SAMPLE[: len(SAMPLE) // 3]}, 415, "not"),  # a truncated JPEG
    ],
)
def test_bad_requests_get_clear_answers(client: TestClient, kwargs: dict, status: int, message: str) -> None:
    response = client.post("/api/v1/predict", **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json().get("detail", "")


def test_dimension_cap(client: TestClient) -> None:
    ok, png = cv2.imencode(".png", np.zeros((2100, 2100), np.uint8))  # 4.4 MP, small file
    assert len(png) < MB
    response = client.post("/api/v1/predict", content=png.tobytes())
    assert response.status_code == 413 and "megapixels" in response.json()["detail"]


def test_health_model_docs_and_page(client: TestClient) -> None:
    assert client.get("/api/v1/health").json()["status"] == "ok"
    model = client.get("/api/v1/model").json()
    assert model["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert "PrivateTest_accuracy" in model["metrics"] or "PublicTest_accuracy" in model["metrics"]
    assert model["options"] == {"model": None, "detector": "centerface", "min_face": None, "min_score": None, "margin": 0.0, "align": True,
                                "views": True, "tta": False, "detect_size": None, "detect_zoom": 1.0, "detect_every": 10}  # RecognizerConfig's fields
    page = client.get("/").text
    assert "getUserMedia" not in page and '<script src="/static/app.js">' in page
    assert "getUserMedia" in client.get("/static/app.js").text
    docs = client.get("/docs").text
    assert "cdn" not in docs.lower() and "swagger" in docs.lower()
    assert "/api/v1/predict" in client.get("/openapi.json").json()["paths"]


def test_concurrent_requests_share_the_model_safely(client: TestClient) -> None:
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: client.post("/api/v1/predict", content=SAMPLE), range(24)))
    assert all(r.status_code == 200 for r in responses)
    boxes = {tuple(r.json()["faces"][0]["box"]) for r in responses}
    assert len(boxes) == 1  # every answer identical: no state leaks between threads

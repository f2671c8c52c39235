from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ferkit.errors import ImageError, ImageTooLarge
from ferkit.sources import read_image


def test_read_image_accepts_every_form(astronaut_bgr: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    cv2.imwrite(str(path), astronaut_bgr)
    rgb = astronaut_bgr[:, :, ::-1]
    assert np.array_equal(read_image(path), astronaut_bgr)
    assert np.array_equal(read_image(str(path)), astronaut_bgr)
    assert np.array_equal(read_image(rgb, color="rgb"), astronaut_bgr)
    assert np.array_equal(read_image(Image.fromarray(rgb)), astronaut_bgr)
    assert np.array_equal(read_image(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), color="rgb"), astronaut_bgr)
    gray = cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(read_image(gray), gray)
    assert np.array_equal(read_image(gray / 255.0), gray)


def test_read_image_rejects_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="empty file"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(tmp_path / "text.jpg")
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="empty image"):
        read_image(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ImageError, match="shape"):
        read_image(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ImageError, match="uint8 or float"):
        read_image(np.zeros((4, 4), np.int32))
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((2600, 2600), np.uint8))
    monkeypatch.setattr("ferkit.sources.MAX_PIXELS", 4_000_000)
    with pytest.raises(ImageTooLarge, match="about 2600x2600, over the limit of 4 megapixels"):
        read_image(tmp_path / "big.png")  # refused from its 1/8-scale decode
    cv2.imwrite(str(tmp_path / "edge.png"), np.zeros((2100, 2100), np.uint8))
    with pytest.raises(ImageTooLarge, match="2100x2100 is over the limit of 4 megapixels"):
        read_image(tmp_path / "edge.png")  # within the pre-check's slack: refused after the full decode
    monkeypatch.setattr("ferkit.sources.MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="over the limit of 0.001 megapixels"):
        read_image(np.zeros((100, 100), np.uint8))

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from ferkit.errors import ImageError, ImageTooLarge, SourceError, VideoError
from ferkit.sources import Camera, Images, Video, find_images, read_image


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


def test_a_phone_photo_turned_by_its_exif_is_read_upright_as_file_and_as_pil_image(astronaut_bgr: np.ndarray, tmp_path: Path) -> None:
    """A camera stores a portrait photo sideways with an EXIF orientation: the file and the PIL image
    of it both come out upright, where the face is found."""
    from ferkit import EmotionRecognizer

    sideways = Image.fromarray(cv2.cvtColor(cv2.rotate(astronaut_bgr, cv2.ROTATE_90_COUNTERCLOCKWISE), cv2.COLOR_BGR2RGB))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    sideways.save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    with Image.open(tmp_path / "phone.jpg") as pil:
        for image in (read_image(tmp_path / "phone.jpg"), read_image(pil)):
            assert image.shape == astronaut_bgr.shape and np.abs(image.astype(int) - astronaut_bgr).mean() < 4
    assert len(EmotionRecognizer().predict(tmp_path / "phone.jpg")) == 1


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
    with pytest.raises(ImageTooLarge, match="2600x2600 is over the limit of 4 megapixels"):
        read_image(tmp_path / "big.png")  # refused from its header, before decoding
    monkeypatch.setattr("ferkit.sources.MAX_PIXELS", 1000)
    with pytest.raises(ImageError, match="over the limit of 0.001 megapixels"):
        read_image(np.zeros((100, 100), np.uint8))


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 30) -> Path:
    h, w = frames[0].shape[:2]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        out.write(frame)
    out.release()
    return path


def test_images_from_files_folders_and_globs(astronaut_bgr: np.ndarray, tmp_path: Path) -> None:
    (tmp_path / "a" / "sub").mkdir(parents=True)
    for name in ("a/one.png", "a/sub/two.jpg", "three.png"):
        cv2.imwrite(str(tmp_path / name), astronaut_bgr)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG broken")
    found = find_images([tmp_path / "a", tmp_path / "three.png", str(tmp_path / "a" / "**" / "*.jpg")])
    assert [(p.relative_to(tmp_path).as_posix(), name.as_posix()) for p, name in found] == [
        ("a/broken.png", "broken.png"), ("a/one.png", "one.png"), ("a/sub/two.jpg", "sub/two.jpg"),
        ("three.png", "three.png"), ("a/sub/two.jpg", "two.jpg")]
    with pytest.raises(SourceError, match="no such file or folder"):
        find_images([tmp_path / "none.png"])
    with pytest.raises(SourceError, match="no such file or folder"):
        find_images([tmp_path / "*.gif"])  # a pattern that matches nothing
    frames = list(Images([tmp_path / "a"]))
    assert [f.error != "" for f in frames] == [True, False, False] and not Images.stream
    assert frames[0].image is None and "not a readable image" in frames[0].error
    assert frames[2].origin == str(tmp_path / "a" / "sub" / "two.jpg") and frames[2].name == Path("sub/two.jpg")
    assert np.array_equal(frames[1].image, astronaut_bgr)


def test_video_frames_in_order_with_their_time(astronaut_bgr: np.ndarray, tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "clip.mp4", [astronaut_bgr] * 12, fps=24)
    video = Video(clip)
    assert video.size == (512, 512) and video.fps == 24 and video.total == 12 and Video.stream
    frames = list(video)
    assert [f.index for f in frames] == list(range(12)) and frames[6].time == 0.25
    assert video.read == 12 and video.complete and video.seconds > 0
    (tmp_path / "x.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoError, match="x.mp4"):
        Video(tmp_path / "x.mp4")
    with pytest.raises(VideoError, match="no such file"):
        Video(tmp_path / "missing.mp4")


def test_camera_gives_each_new_frame_once_then_ends(astronaut_bgr: np.ndarray, tmp_path: Path) -> None:
    """A file stands in for the camera, at its own frame rate; frames without an image mean nothing new yet."""
    clip = write_clip(tmp_path / "clip.mp4", [np.roll(astronaut_bgr, 8 * i, axis=1) for i in range(8)], fps=60)
    camera = Camera(str(clip))
    try:
        frames = [f for f in camera if f.image is not None]
    finally:
        camera.close()
    assert [f.index for f in frames] == sorted({f.index for f in frames}) and frames[-1].index == 7
    assert len(frames) >= 4 and camera.ended  # only the newest frame is kept: a slow reader may skip some
    with pytest.raises(VideoError, match="camera 9: cannot be opened"):
        Camera(9)

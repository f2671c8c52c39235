"""End to end in a real browser: headless Chromium (Debian's) driven by Playwright, with a fake
camera that plays real faces, against the app served by uvicorn on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import pytest

from ferkit.classify import ASSETS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("FERKIT_ARTIFACTS", "test-artifacts"))


def write_y4m(video: Path, out: Path, frames: int = 30) -> None:
    """The talking-face video as 640x480 Y4M, the format Chromium's fake camera reads."""
    cap = cv2.VideoCapture(str(video))
    with open(out, "wb") as f:
        f.write(b"YUV4MPEG2 W640 H480 F30:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            ok, frame = cap.read()
            assert ok
            f.write(b"FRAME\n" + cv2.cvtColor(cv2.resize(frame[:, 107:747], (640, 480)), cv2.COLOR_BGR2YUV_I420).tobytes())


@pytest.fixture(scope="module")
def server() -> str:
    import uvicorn

    from ferkit.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def browser(fer_npz: Path, tmp_path_factory: pytest.TempPathFactory):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is needed (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    camera = tmp_path_factory.mktemp("camera") / "faces.y4m"
    write_y4m(fer_npz.parent / "face_talking_854x480.mp4", camera)
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-video-capture={camera}"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)
        yield browser
        browser.close()


def test_live_camera_page_labels_the_face(server: str, browser) -> None:
    page = browser.new_page(viewport={"width": 1000, "height": 760})
    page.goto(server)
    page.click("#start")
    page.wait_for_function("Number(document.querySelector('#faces').dataset.count) >= 1", timeout=60_000)
    label = page.get_attribute("#faces li.face", "data-label")
    assert label in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    page.wait_for_function("parseFloat(document.querySelector('#fps').textContent) > 0", timeout=30_000)
    drawn = page.evaluate(
        """() => { const c = document.querySelector('#overlay');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"""
    )
    assert drawn > 500  # a box and its label are on the overlay
    page.keyboard.press("a")
    assert page.is_checked("#all")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web_live.png"))
    page.keyboard.press(" ")
    page.wait_for_function("document.querySelector('#status').textContent === 'paused'")
    with page.expect_download() as download:
        page.keyboard.press("s")
    assert download.value.suggested_filename.startswith("ferkit_") and download.value.suggested_filename.endswith(".png")
    page.close()


def test_upload_tab_annotates_an_image(server: str, browser) -> None:
    page = browser.new_page()
    page.goto(server)
    page.click("#tab-upload")
    page.set_input_files("#file", str(ASSETS / "sample.jpg"))
    page.click("#upload-form button[type=submit]")
    page.wait_for_function("document.querySelector('#upload-faces').dataset.count === '1'", timeout=30_000)
    assert page.get_attribute("#upload-faces li.face", "data-label") == "happy"
    assert "1 face(s)" in page.text_content("#upload-status")
    page.screenshot(path=str(ARTIFACTS / "web_upload.png"), full_page=True)
    page.close()

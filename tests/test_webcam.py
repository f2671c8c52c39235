"""The live window, driven as a person would: a real X server (Xvfb), keys typed with xdotool,
and the shared talking-face video standing in for the camera."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from conftest import ferkit


@pytest.fixture(scope="module")
def display() -> str:
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("Xvfb and xdotool are needed (apt-get install xvfb xdotool; .ci/run installs them)")
    number = 90 + os.getpid() % 100
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x1024x24"], stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists() and time.time() < deadline:
        time.sleep(0.1)
    yield f":{number}"
    server.terminate()
    server.wait()


def wait_for(predicate, seconds: float = 30.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_window_keys_screenshot_pause_quit(display: str, fer_npz: Path, tmp_path: Path) -> None:
    env = dict(os.environ, DISPLAY=display)
    video = fer_npz.parent / "face_talking_854x480.mp4"
    log = tmp_path / "log.txt"
    app = subprocess.Popen(
        [sys.executable, "-m", "ferkit.cli", "webcam", "--source", str(video), "--loop", "--shots", str(tmp_path / "shots")],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
    )

    def xdo(*args: str) -> str:
        return subprocess.run(["xdotool", *args], env=env, capture_output=True, text=True).stdout.strip()

    def press(key: str, expect: str) -> None:
        xdo("windowfocus", "--sync", window)
        xdo("key", key)
        assert wait_for(lambda: expect in log.read_text(), 15), f"no {expect!r} after key {key}:\n{log.read_text()}"

    try:
        assert wait_for(lambda: xdo("search", "--name", "^ferkit$") != "", 60), log.read_text()
        window = xdo("search", "--name", "^ferkit$").split()[0]
        time.sleep(2)  # let a few frames through the pipeline
        press("s", "screenshot: ")
        shot = Path(log.read_text().split("screenshot: ")[1].split()[0])
        image = cv2.imread(str(shot))
        assert shot.parent == tmp_path / "shots" and image.shape == (480, 854, 3)
        assert (image[:40, :150] == (0, 255, 0)).all(axis=2).any()  # the annotated frame: FPS counter drawn
        press("space", "paused")
        press("a", "all emotions: on")
        press("space", "resumed")
        press("q", "quit")
        assert app.wait(15) == 0
    finally:
        app.kill()


def test_camera_that_cannot_open_is_a_clear_error(tmp_path: Path) -> None:
    result = ferkit("webcam", "--camera", "9", check=False)
    assert result.returncode == 2 and "camera 9: cannot be opened" in result.stderr and "Traceback" not in result.stderr
    result = ferkit("webcam", "--source", tmp_path / "none.mp4", check=False)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_camera_that_disappears_ends_with_a_message(display: str, fer_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Camera 0 here is the shared video cut off after 20 frames, as when a USB camera is unplugged."""
    import ferkit.sources as sources
    import ferkit.webcam as webcam
    from ferkit.recognize import EmotionRecognizer

    class Unplugged:
        def __init__(self) -> None:
            self.video, self.left = cv2.VideoCapture(str(fer_npz.parent / "face_talking_854x480.mp4")), 20

        def read(self):
            self.left -= 1
            return self.video.read() if self.left >= 0 else (False, None)

        def get(self, prop: int) -> float:
            return 0.0

        def release(self) -> None:
            self.video.release()

    monkeypatch.setenv("DISPLAY", display)
    monkeypatch.setattr(sources, "open_video", lambda source: Unplugged())
    said: list[str] = []
    assert webcam.run(0, EmotionRecognizer(), log=said.append) == 1
    assert said[-1] == "0: camera disconnected"

"""A corpus of bad inputs, made here rather than committed: crafted checkpoints, decompression bombs,
tiny and mislabelled images, malformed data files, slow and oversized HTTP bodies. Each case checks
its outcome: one clear line and exit code 2 (or a 4xx), no traceback, nothing lost, no code run."""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from ferkit.benchmark import png_bomb
from ferkit.cli import app
from ferkit.server import MB, Limits, create_app


def cli(*args: object) -> tuple[int, str]:
    """Run the real command line in this process; return its exit code and what it printed to stderr."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stderr


def one_line_error(code: int, stderr: str, *words: str) -> None:
    """The contract for a user's mistake: exit code 2 and one `error:` line, the last, naming the problem."""
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in stderr, stderr
    assert sum("error" in line.lower() or "warn" in line.lower() for line in lines) == 1, stderr
    assert all(w in lines[-1] for w in words), lines[-1]


def faces_npz(path: Path, n_train: int = 96, n_val: int = 32, **arrays: np.ndarray) -> Path:
    """A small FER2013-shaped npz of random faces (training mechanics, not accuracy, are under test)."""
    rng = np.random.default_rng(0)
    n = n_train + n_val
    data = {"pixels": rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), "labels": np.arange(n) % 7,
            "usage": np.array([0] * n_train + [1] * n_val, dtype=np.int8)}
    np.savez(path, **{**data, **arrays})
    return path


# --- checkpoints: a pickle that would run code is refused and does not run ------------------------


class RunsCode:
    """Unpickling this object calls exec, which would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of tiny_cnn on 96 random faces: a real run folder with config, log and checkpoints."""
    root = tmp_path_factory.mktemp("run")
    npz = faces_npz(root / "faces.npz")
    code, stderr = cli("train", "--data", npz, "--model", "tiny_cnn", "--epochs", "1", "--batch-size", "16",
                       "--runs-dir", root, "--name", "small")
    assert code == 0, stderr
    return root / "small"


def test_checkpoint_that_would_run_code_is_refused_everywhere(small_run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    good = torch.load(small_run / "best.pt", weights_only=True)
    evil = tmp_path / "evil.pt"
    torch.save({**good, "extra": RunsCode(marker)}, evil)
    npz = small_run.parent / "faces.npz"
    for args in (("export", evil, "--out", tmp_path / "x.onnx"),
                 ("evaluate", "--model", evil, "--data", npz, "--split", "PublicTest"),
                 ("train", "--data", npz, "--model", "tiny_cnn", "--epochs", "1", "--runs-dir", tmp_path, "--name", "t",
                  "--teacher", evil),
                 ("train", "--data", npz, "--model", "tiny_cnn", "--epochs", "1", "--runs-dir", tmp_path, "--name", "p",
                  "--pretrained", evil)):
        one_line_error(*cli(*args), "evil.pt: refused", "exec", "could run code")
    # Resuming from a tampered last.pt is refused too, and the run's files are left as they were.
    before = {p.name: p.read_bytes() for p in small_run.iterdir()}
    torch.save({**torch.load(small_run / "last.pt", weights_only=True), "extra": RunsCode(marker)}, small_run / "last.pt")
    try:
        one_line_error(*cli("train", "--data", npz, "--runs-dir", small_run.parent, "--name", "small", "--resume"),
                       "last.pt: refused")
        assert {p.name: p.read_bytes() for p in small_run.iterdir() if p.name != "last.pt"} == \
               {k: v for k, v in before.items() if k != "last.pt"}
    finally:
        (small_run / "last.pt").write_bytes(before["last.pt"])
    assert not marker.exists()


def test_a_log_row_lost_to_a_kill_is_restored_on_resume(small_run: Path) -> None:
    """A kill after last.pt is written but before log.csv is: resuming rewrites the log from the checkpoint."""
    log = small_run / "log.csv"
    whole = log.read_text()
    assert len(whole.splitlines()) == 2
    log.write_text(whole.splitlines()[0] + "\n1,0.0")  # the header, and half of the row being written
    code, stderr = cli("train", "--data", small_run.parent / "faces.npz", "--runs-dir", small_run.parent, "--name", "small", "--resume")
    assert code == 0 and "Traceback" not in stderr, stderr
    assert log.read_text() == whole


def test_damaged_checkpoints_are_one_line(small_run: Path, tmp_path: Path) -> None:
    whole = (small_run / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    for name, words in (("cut.pt", "not a readable checkpoint"), ("text.pt", "not a readable checkpoint"),
                        ("list.pt", "holds a list"), ("other.pt", "not a ferkit training checkpoint")):
        one_line_error(*cli("export", tmp_path / name, "--out", tmp_path / "x.onnx"), name, words)
    assert not (tmp_path / "x.onnx").exists()


# --- images: decompression bombs of several formats, tiny images, files that are not images ---------


def encoded(fmt: str, width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buf, fmt)
    return buf.getvalue()


def declaring(fmt: str, width: int, height: int) -> bytes:
    """A real 16x16 image of format `fmt` whose header is rewritten to declare width x height: what a
    decoder believes, and allocates for, before it finds the data missing."""
    data = bytearray(encoded(fmt, 16, 16))
    if fmt == "JPEG":  # the SOF0 segment: FF C0, length, precision, height, width
        at = data.index(b"\xff\xc0") + 5
        data[at : at + 4] = struct.pack(">HH", height, width)
    elif fmt == "BMP":  # BITMAPINFOHEADER: width and height, int32 at byte 18
        data[18:26] = struct.pack("<ii", width, height)
    elif fmt == "GIF":  # the logical screen, then the first image descriptor
        data[6:10] = struct.pack("<HH", width, height)
        at = data.index(b"\x2c")
        data[at + 5 : at + 9] = struct.pack("<HH", width, height)
    elif fmt == "WEBP":  # the VP8 key frame: start code 9D 01 2A, then 14-bit width and height
        at = data.index(b"\x9d\x01\x2a") + 3
        data[at : at + 4] = struct.pack("<HH", width, height)
    elif fmt == "TIFF":  # the first IFD's ImageWidth (256) and ImageLength (257) entries
        ifd = struct.unpack("<I", data[4:8])[0]
        for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
            at = ifd + 2 + 12 * i
            tag, kind = struct.unpack("<HH", data[at : at + 4])
            if tag in (256, 257):
                value = width if tag == 256 else height
                data[at + 8 : at + 12] = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
    return bytes(data)


SAMPLE = (Path(__file__).parents[1] / "src" / "ferkit" / "assets" / "sample.jpg").read_bytes()
BOMBS = {"bomb.png": png_bomb(20000, 20000), "bomb.gif": declaring("GIF", 60000, 60000),
         **{f"bomb.{fmt.lower()}": declaring(fmt, 12000, 12000) for fmt in ("JPEG", "BMP", "WEBP", "TIFF")},
         "bomb2.tiff": declaring("TIFF", 60000, 60000)}
TINY = {f"tiny.{fmt.lower()}": encoded(fmt, 5, 7) for fmt in ("PNG", "BMP", "WEBP", "TIFF", "GIF", "JPEG")}
NOT_IMAGES = {"text.jpg": b"hello, not an image", "cut.png": encoded("PNG", 64, 64)[:40], "empty.png": b"",
              "icon.png": encoded("ICO", 64, 64)}  # a format neither ferkit nor OpenCV reads, mislabelled


@pytest.fixture(scope="module")
def server_client() -> Iterator[TestClient]:
    with TestClient(create_app(limits=Limits(max_bytes=1 * MB, max_pixels=4_000_000))) as client:
        yield client


def test_server_refuses_bombs_tiny_and_non_images_from_the_header(server_client: TestClient) -> None:
    for name, data in {**BOMBS, **TINY, **NOT_IMAGES}.items():
        response = server_client.post("/api/v1/predict", content=data, headers={"content-type": "image/jpeg"})
        expected = 413 if name in BOMBS else 422 if name in TINY else 415 if data else 422
        assert response.status_code == expected, (name, response.text)
    # A PNG sent as multipart and labelled a JPEG is read by its bytes, not its label.
    png = encoded("PNG", 64, 48)
    response = server_client.post("/api/v1/predict", files={"file": ("photo.jpg", png, "image/jpeg")})
    assert response.status_code == 200 and (response.json()["width"], response.json()["height"]) == (64, 48)


def test_predict_reports_and_skips_every_bad_file_and_goes_on(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, data in {**BOMBS, **TINY, **NOT_IMAGES, "good.jpg": SAMPLE}.items():
        (folder / name).write_bytes(data)
    os.mkfifo(folder / "pipe.jpg")  # a FIFO would block a reader for ever: it is reported, not opened
    code, stderr = cli("predict", folder, "--out", tmp_path / "out.jsonl")
    assert code == 0 and "Traceback" not in stderr, stderr
    records = {Path(r["path"]).name: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert set(records) == {*BOMBS, *TINY, *NOT_IMAGES, "good.jpg", "pipe.jpg"}
    assert [f["label"] for f in records["good.jpg"]["faces"]] == ["happy"] and "error" not in records["good.jpg"]
    for name in BOMBS:
        assert "over" in records[name]["error"] and "megapixels" in records[name]["error"], records[name]
    for name in TINY:
        assert "5x7 pixels is too small" in records[name]["error"]
    assert "not a regular file" in records["pipe.jpg"]["error"]
    assert f"{len(records)} images, 1 face (happy 1), {len(records) - 1} unreadable" in stderr
    assert stderr.count("skipped:") == len(records) - 1
    (folder / "good.jpg").unlink()  # now nothing can be read: a batch that found nothing fails
    code, stderr = cli("predict", folder, "--out", tmp_path / "out.jsonl")
    assert code == 2 and stderr.strip().splitlines()[-1] == "error: no image could be read", stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == len(records) - 1  # each failure is still recorded


# --- a real server: bombs off the event loop, slow and oversized bodies, foreign hosts and origins --


@pytest.fixture(scope="module")
def live_server() -> Iterator[tuple[str, int]]:
    """`ferkit serve` in its own process (uvicorn, as users run it) with a 1.5 s upload timeout and
    two upload slots, so the slow-client cases finish quickly."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "ferkit.cli", "serve", "--port", str(port), "--upload-timeout", "1.5",
                               "--max-uploads", "2"], stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if request("127.0.0.1", port, "GET", "/api/v1/health")[0] == 200:
                break
        except OSError:
            time.sleep(0.2)
    try:
        yield "127.0.0.1", port
    finally:
        server.terminate()
        server.wait(10)


def request(host: str, port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes, float]:
    """Status, body and seconds of one HTTP request on a fresh connection."""
    t = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read(), time.perf_counter() - t
    finally:
        conn.close()


def stalled_upload(address: tuple[str, int], sent: bytes = b"\xff\xd8" * 500) -> tuple[bytes, float]:
    """Declare a 1 MB image, send `sent` of it and no more; return the server's answer and how long it took."""
    t = time.perf_counter()
    with socket.create_connection(address, timeout=30) as s:
        s.sendall(b"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/jpeg\r\n"
                  b"Content-Length: 1000000\r\n\r\n" + sent)
        answer = b""
        while chunk := s.recv(65536):  # the server answers, then closes the connection
            answer += chunk
        return answer, time.perf_counter() - t


def test_server_answers_health_at_once_while_bombs_are_refused(live_server: tuple[str, int]) -> None:
    bomb = BOMBS["bomb.png"]
    with ThreadPoolExecutor(4) as pool:
        bombs = [pool.submit(request, *live_server, "POST", "/api/v1/predict", bomb, {"Content-Type": "image/png"}) for _ in range(6)]
        health = []
        while not all(b.done() for b in bombs):
            health.append(request(*live_server, "GET", "/api/v1/health"))
        answers = [b.result() for b in bombs]
    assert all(status == 413 and b"megapixels" in body and seconds < 3 for status, body, seconds in answers), answers
    assert health and all(status == 200 and seconds < 1 for status, _, seconds in health), health


def test_server_times_out_slow_bodies_and_bounds_uploads(live_server: tuple[str, int]) -> None:
    with ThreadPoolExecutor(3) as pool:
        stalled = [pool.submit(stalled_upload, live_server) for _ in range(2)]  # both upload slots, cut off at 1.5 s
        time.sleep(1.0)
        status, body, seconds = request(*live_server, "POST", "/api/v1/predict", SAMPLE, {"Content-Type": "image/jpeg"})
        answers = [s.result() for s in stalled]
    for answer, took in answers:
        assert answer.startswith(b"HTTP/1.1 408") and b"upload too slow" in answer and took < 5, answer
    # The third upload waited for a slot (its bytes unread) and was answered once the stalled ones were cut off.
    assert status == 200 and json.loads(body)["faces"][0]["label"] == "happy" and seconds > 0.2
    status, body, seconds = request(*live_server, "POST", "/api/v1/predict", None,
                                    {"Content-Type": "image/jpeg", "Content-Length": str(50 * MB)})
    assert status == 413 and seconds < 1


def test_server_refuses_foreign_hosts_and_cross_origin_posts(live_server: tuple[str, int]) -> None:
    host, port = live_server
    assert request(host, port, "GET", "/api/v1/health", headers={"Host": "attacker.example"})[0] == 400
    status, body, _ = request(host, port, "POST", "/api/v1/predict", SAMPLE, {"Origin": "http://attacker.example"})
    assert status == 403 and b"cross-origin" in body
    for same in (f"http://127.0.0.1:{port}", None):  # the web page's own origin, and clients that send none
        headers = {"Origin": same} if same else {}
        assert request(host, port, "POST", "/api/v1/predict", SAMPLE, headers)[0] == 200


# --- video: the output must not be the input -----------------------------------------------------


def test_video_refuses_to_write_over_its_input(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    original = clip.read_bytes()
    os.link(clip, tmp_path / "hard.avi")
    (tmp_path / "soft.avi").symlink_to(clip)
    for args in (("--out", clip), ("--out", tmp_path / "hard.avi"), ("--out", tmp_path / "soft.avi"), ("--csv", tmp_path / "soft.avi"),
                 ("--out", tmp_path / "sub" / ".." / "clip.avi")):
        one_line_error(*cli("video", clip, *args), "is the input video")
    assert clip.read_bytes() == original


def test_predict_and_export_refuse_to_write_over_their_input(small_run: Path, tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes(SAMPLE)
    (tmp_path / "link.jpg").symlink_to(tmp_path / "photo.jpg")
    one_line_error(*cli("predict", tmp_path, "--out", tmp_path / "link.jpg"), "that is the input image")
    assert (tmp_path / "photo.jpg").read_bytes() == SAMPLE
    checkpoint = small_run / "best.pt"
    before = checkpoint.read_bytes()
    for out in (checkpoint, small_run / ".." / "small" / "best.pt"):
        one_line_error(*cli("export", checkpoint, "--out", out), "that is the checkpoint")
    assert checkpoint.read_bytes() == before


# --- data files: malformed CSV, npz and FER+ files -------------------------------------------------


def fer_csv_rows(n: int = 12) -> list[str]:
    rng = np.random.default_rng(1)
    return [f"{i % 7},{' '.join(map(str, rng.integers(0, 256, 48 * 48)))},{'PublicTest' if i % 2 else 'Training'}" for i in range(n)]


def ferplus_text(rows: int) -> str:
    columns = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    return "\n".join([columns, *(f"Training,fer{i:07d}.png,{i % 10},0,0,0,{10 - i % 10},0,0,0,0,0" for i in range(rows))]) + "\n"


def test_malformed_data_files_are_one_line(tmp_path: Path) -> None:
    good = faces_npz(tmp_path / "good.npz").read_bytes()
    rows = fer_csv_rows()
    cases = {
        "no_usage.csv": ("emotion,pixels,Usage\n" + "\n".join([*rows[:3], rows[3].rsplit(",", 1)[0], *rows[4:]]) + "\n",
                         "line 5: 2 fields, expected 3"),
        "cut.npz": (good[: len(good) // 2], "not a complete zip archive"),
        "pickle.npz": (b"\x80\x04K\x01.", "not a complete zip archive"),
        "corrupt.npz": (good[:5000] + bytes(b ^ 0xFF for b in good[5000:6000]) + good[6000:], "not a readable .npz file"),
    }
    np.savez(tmp_path / "empty.npz", pixels=np.zeros((0, 48, 48), np.uint8), labels=np.zeros(0, np.int64), usage=np.zeros(0, np.int8))
    faces_npz(tmp_path / "float.npz", pixels=np.random.default_rng(0).random((128, 48, 48)))
    faces_npz(tmp_path / "int32.npz", pixels=np.random.default_rng(0).integers(0, 65536, (128, 48, 48)).astype(np.int32))
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content.encode() if isinstance(content, str) else content)
    os.mkfifo(tmp_path / "pipe.npz")
    expected = {**{name: words for name, (_, words) in cases.items()}, "empty.npz": "no rows",
                "float.npz": "pixels must be uint8 in 0..255, found float64 in ", "int32.npz": "found int32 in 0..65535",
                "pipe.npz": "not a regular file"}
    for name, words in expected.items():
        one_line_error(*cli("evaluate", "--data", tmp_path / name, "--split", "PublicTest"), name, words)


def test_bom_csv_and_utf16_ferplus_are_read(tmp_path: Path) -> None:
    """What spreadsheets save: UTF-8 with a byte-order mark, and UTF-16 ("Unicode text")."""
    (tmp_path / "bom.csv").write_text("emotion,pixels,Usage\n" + "\n".join(fer_csv_rows()) + "\n", encoding="utf-8-sig")
    code, stderr = cli("evaluate", "--data", tmp_path / "bom.csv", "--split", "PublicTest", "--json", tmp_path / "a.json")
    assert code == 0 and json.loads((tmp_path / "a.json").read_text())["images"] == 6, stderr
    (tmp_path / "plus.csv").write_text(ferplus_text(128), encoding="utf-16")
    code, stderr = cli("evaluate", "--data", faces_npz(tmp_path / "f.npz"), "--ferplus", tmp_path / "plus.csv",
                       "--split", "PublicTest", "--json", tmp_path / "b.json")
    assert code == 0 and json.loads((tmp_path / "b.json").read_text())["images"] == 32, stderr


def test_environment_mistakes_are_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    one_line_error(*cli("predict", "--out", tmp_path / "notes.txt" / "results.csv"), "notes.txt is a file")
    one_line_error(*cli("predict", "--save", tmp_path / "notes.txt" / "sub"), "notes.txt is a file")
    if not torch.cuda.is_available():
        one_line_error(*cli("train", "--data", faces_npz(tmp_path / "f.npz"), "--model", "tiny_cnn", "--device", "cuda",
                            "--runs-dir", tmp_path), "no CUDA GPU")
    one_line_error(*cli("train", "--data", tmp_path / "f.npz", "--device", "tpu", "--runs-dir", tmp_path), "unknown device 'tpu'")


def test_a_broken_video_gets_our_line_alone_not_ffmpegs(tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    done = subprocess.run([sys.executable, "-m", "ferkit.cli", "video", str(tmp_path / "broken.mp4")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.splitlines() == [f"error: {tmp_path / 'broken.mp4'}: cannot be opened as a video"], done.stderr


def test_webcam_without_a_display_is_one_line_not_an_abort(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.release()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    done = subprocess.run([sys.executable, "-m", "ferkit.cli", "webcam", "--source", str(clip)], capture_output=True, text=True,
                          env=env, timeout=120)
    one_line_error(done.returncode, done.stderr, "no display for the webcam window (DISPLAY is not set)")


def test_predict_reports_an_unreadable_subfolder_and_writes_nothing_home(tmp_path: Path) -> None:
    """With an empty home: ONNX Runtime's telemetry must not write there either."""
    (tmp_path / "photos" / "private").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "photos" / "good.jpg").write_bytes(SAMPLE)
    (tmp_path / "photos" / "private" / "hidden.jpg").write_bytes(SAMPLE)
    (tmp_path / "photos" / "private").chmod(0)
    prefix = []
    if os.geteuid() == 0:  # root reads any folder unless it gives up the capabilities that let it
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: no folder is unreadable")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    try:
        done = subprocess.run([*prefix, sys.executable, "-m", "ferkit.cli", "predict", str(tmp_path / "photos")], capture_output=True,
                              text=True, env={**os.environ, "HOME": str(tmp_path / "home")}, timeout=120)
    finally:
        (tmp_path / "photos" / "private").chmod(0o700)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert f"skipped: {tmp_path / 'photos' / 'private'}: cannot read the folder (Permission denied)" in done.stderr
    assert [json.loads(line)["path"] for line in done.stdout.splitlines()] == [str(tmp_path / "photos" / "good.jpg")]
    assert list((tmp_path / "home").iterdir()) == []

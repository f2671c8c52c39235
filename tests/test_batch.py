"""`ferkit batch` on a local Ray with 2 CPUs: its rows are those `predict` and `video` give one by
one, a rerun adds nothing, a stopped job resumes to the same rows, and bad inputs become rows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

from conftest import ferkit, write_clip
from ferkit.batch import DONE_KEY, run_batch
from ferkit.data import EMOTIONS, FERData
from ferkit.errors import OptionError
from ferkit.predict import predict
from ferkit.recognize import EmotionRecognizer, RecognizerConfig
from ferkit.scenes import compose_scene
from ferkit.video import process_video

CONFIG = RecognizerConfig()
CHUNK_SECONDS = 1.0  # the 3 s test video in 3 chunks (30 frames each, at 30 FPS)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(fer: FERData, fer_npz: Path, astronaut_bgr: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 scenes of two FER2013 faces each (10 in a subfolder), the astronaut, a 3 s video, and a
    JPEG and an MP4 that are broken."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "more").mkdir()
    faces = fer.split("PrivateTest").pixels
    for i in range(30):
        scene, _ = compose_scene(faces[2 * i : 2 * i + 2])
        cv2.imwrite(str(folder / ("more" if i % 3 == 0 else "") / f"scene{i:02}.png"), scene)
    cv2.imwrite(str(folder / "astronaut.jpg"), astronaut_bgr)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 and no more")
    write_clip(fer_npz.parent / "face_talking_854x480.mp4", folder / "talk.mp4", frames=90)
    return folder


@pytest.fixture(scope="module")
def batch_run(local_ray: None, inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("batch")
    return out, run_batch([inputs], out, CONFIG, workers=2, chunk_seconds=CHUNK_SECONDS, warn=pytest.fail)


def rows(out: Path) -> list[dict]:
    """Every row under `out`, in a fixed order."""
    return sorted(pq.read_table(out).to_pylist(), key=lambda r: (r["source"], r["frame"] or 0, r["face"] or 0))


def same(row: dict, face: dict) -> None:
    assert (row["x"], row["y"], row["w"], row["h"]) == tuple(face["box"])
    assert row["label"] == face["label"] and row["error"] is None
    assert row["score"] == pytest.approx(face["score"], abs=1e-6)
    assert [row["confidence"], *(row[k] for k in EMOTIONS)] == pytest.approx([face["confidence"], *(face["probabilities"][k] for k in EMOTIONS)], abs=1e-5)


def test_batch_gives_the_rows_predict_and_video_give_one_by_one(batch_run: tuple[Path, dict], inputs: Path, tmp_path: Path) -> None:
    out, summary = batch_run
    recognizer = EmotionRecognizer(CONFIG)
    predict([inputs], recognizer, tmp_path / "images.jsonl", warn=lambda message: None)
    process_video(inputs / "talk.mp4", recognizer, results=tmp_path / "video.jsonl", progress=False)
    images = [json.loads(line) for line in open(tmp_path / "images.jsonl")]
    frames = [json.loads(line) for line in open(tmp_path / "video.jsonl")]
    got = rows(out)
    by_source = defaultdict(list)
    for row in got:
        by_source[row["source"]].append(row)

    image_faces = sum(len(record["faces"]) for record in images)
    video_faces = sum(len(record["faces"]) for record in frames)
    assert len(images) == 32 and image_faces >= 25 and len(frames) == 90 and video_faces >= 85  # enough to compare
    assert summary | {"seconds": 0, "rate": 0} == {"inputs": 34, "skipped": 0, "images": 32, "chunks": 3, "faces": image_faces + video_faces,
                                                   "errors": 2, "seconds": 0, "rate": 0}
    assert len(got) == image_faces + video_faces + 2
    assert [r["error"] for r in by_source[str(inputs / "broken.mp4")]] == [f"{inputs / 'broken.mp4'}: cannot be opened as a video"]
    assert {r["model"] for r in got} == {"ferkit"} and len({r["model_version"] for r in got}) == 1

    for record in images:
        found = by_source[record["path"]]
        if "error" in record:  # the broken JPEG: one row with the error predict reports
            assert [(r["error"], r["label"]) for r in found] == [(record["error"], None)] and "broken.jpg" in record["error"]
            continue
        assert [r["face"] for r in found] == list(range(len(record["faces"])))
        assert {(r["frame"], r["track_id"], r["chunk"]) for r in found} <= {(None, None, None)}
        for row, face in zip(found, record["faces"]):
            same(row, face)

    video = {(r["frame"], r["face"]): r for r in by_source[str(inputs / "talk.mp4")]}
    assert len(video) == video_faces
    tracks = {}  # (chunk, its track id) -> the id `ferkit video` gave: ids are numbered within each chunk
    for record in frames:
        for i, face in enumerate(record["faces"]):
            row = video.pop((record["frame"], i))
            same(row, face)
            assert row["time"] == pytest.approx(record["time"], abs=1e-3) and row["chunk"] == record["frame"] // 30 * 30
            assert tracks.setdefault((row["chunk"], row["track_id"]), face["track_id"]) == face["track_id"]
    assert not video and {chunk for chunk, _ in tracks} == {0, 30, 60}


def test_a_rerun_adds_nothing(batch_run: tuple[Path, dict], inputs: Path) -> None:
    out, _ = batch_run
    parts, before = sorted(out.iterdir()), rows(out)
    summary = run_batch([inputs], out, CONFIG, workers=2, chunk_seconds=CHUNK_SECONDS)
    assert (summary["skipped"], summary["images"], summary["chunks"], summary["faces"], summary["errors"]) == (36, 0, 0, 0, 0)
    assert sorted(out.iterdir()) == parts and rows(out) == before


def test_a_stopped_job_resumes_to_the_same_rows(batch_run: tuple[Path, dict], inputs: Path, tmp_path: Path) -> None:
    """Parts never written (the units in flight when a job was stopped) are redone, and only they."""
    out, _ = batch_run
    shutil.copytree(out, tmp_path / "out")
    lost = sorted((tmp_path / "out").glob("part-*.parquet"))[::2]
    keys = [key for part in lost for key in json.loads(pq.read_schema(part).metadata[DONE_KEY])]
    for part in lost:
        part.unlink()
    (tmp_path / "out" / ".part-0.parquet.tmp").write_bytes(b"half a part")
    summary = run_batch([inputs], tmp_path / "out", CONFIG, workers=2, chunk_seconds=CHUNK_SECONDS)
    redone = summary["images"] + summary["chunks"] + (str(inputs / "broken.mp4") in keys)  # that one is tried again before Ray starts
    assert keys and redone == len(keys) and summary["skipped"] == 36 - len(keys)
    assert rows(tmp_path / "out") == rows(out) and not list((tmp_path / "out").glob(".part-*"))


def test_other_options_are_refused_where_results_were_made_with_others(batch_run: tuple[Path, dict], inputs: Path) -> None:
    with pytest.raises(OptionError, match=r"\(min_face\)"):
        run_batch([inputs], batch_run[0], RecognizerConfig(min_face=60), chunk_seconds=CHUNK_SECONDS)
    with pytest.raises(OptionError, match=r"\(chunk_seconds\)"):
        run_batch([inputs], batch_run[0], CONFIG, chunk_seconds=2.0)


def test_cli_stopped_midway_and_rerun_from_a_list_file(batch_run: tuple[Path, dict], inputs: Path, tmp_path: Path) -> None:
    """`ferkit batch` on a CSV of paths (relative to it; one missing) is stopped after its first part
    and run again: the rows are those of the run above, with the missing file as an error row."""
    images = sorted(inputs.rglob("scene*.png"))
    listing = tmp_path / "list.csv"
    listing.write_text("path,note\n" + "".join(f"{os.path.relpath(p, tmp_path)},x\n" for p in images) + "missing.png,x\n")
    out = tmp_path / "out"
    job = subprocess.Popen([sys.executable, "-m", "ferkit.cli", "batch", listing, "--out", out, "--workers", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while job.poll() is None and not list(out.glob("part-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    job.wait(timeout=30)
    first = {key for part in out.glob("part-*.parquet") for key in json.loads(pq.read_schema(part).metadata[DONE_KEY])}
    assert 0 < len(first) < 31  # stopped part-way
    result = ferkit("batch", listing, "--out", out, "--workers", "1")
    assert f"31 inputs: {31 - len(first)} images and 0 video chunks done now, {len(first)} done before" in result.stderr
    expected = [r for r in rows(batch_run[0]) if r["source"] in set(map(str, images))]
    got = rows(out)
    error = [r for r in got if r["error"] is not None]
    assert [r["source"] for r in error] == [str(tmp_path / "missing.png")] and "missing.png" in error[0]["error"]
    assert [r for r in got if r["error"] is None] == expected and not list(out.glob(".part-*"))

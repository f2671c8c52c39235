"""`ferkit batch` on a two-node Ray cluster started on this machine (one CPU a node): its rows are
those `predict` and `video` give one by one, track ids included; a rerun adds nothing; a job killed
mid-way resumes to the same rows; bad inputs become rows. Every job here, from Python or from the
command line, runs on that one cluster through its address, so Ray starts once."""

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
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from conftest import write_clip
from ferkit.batch import DONE_KEY, REPLACES_KEY, WARM_KEY, compact, run_batch, schema, stitch
from ferkit.cluster import local_cluster
from ferkit.data import EMOTIONS, FERData
from ferkit.errors import OptionError
from ferkit.predict import predict
from ferkit.recognize import EmotionRecognizer, RecognizerConfig
from ferkit.scenes import compose_scene
from ferkit.video import process_video

CONFIG = RecognizerConfig()
CHUNK_SECONDS = 1.0  # 30 frames a chunk at 30 FPS: talk.mp4 (90 frames) in 3 chunks, two.mp4 (60) in 2
SCENES = 300
UNITS = SCENES + 4 + 3 + 2  # scenes, astronaut, broken.jpg, empty.png, broken.mp4; talk.mp4's and two.mp4's chunks


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head and a worker node, one CPU each; this process joins it at its first job."""
    with local_cluster(nodes=2, cpus=1) as address:
        yield address
        ray.shutdown()


def two_faces_video(source: Path, out: Path, frames: int = 60) -> None:
    """A 400x240 video of the talking head on the left throughout and, on the right, a second
    copy (mirrored) from frame 20 to 44: a track that starts in one chunk and ends in the next."""
    cap = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30, (400, 240))
    for i in range(frames):
        ok, frame = cap.read()
        assert ok
        canvas = np.full((240, 400, 3), 200, np.uint8)
        head = cv2.resize(frame[40:340, 295:595], (160, 160))
        canvas[40:200, 20:180] = head
        if 20 <= i < 45:
            canvas[40:200, 220:380] = head[:, ::-1]
        writer.write(canvas)
    writer.release()


@pytest.fixture(scope="module")
def inputs(fer: FERData, fer_npz: Path, astronaut_bgr: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 small scenes of one or two FER2013 faces (a third in a subfolder), the astronaut, two
    videos (3 s, one face; 2 s, a second face coming and going), and a JPEG, a PNG and an MP4 that
    are broken."""
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "more").mkdir()
    faces = fer.split("PrivateTest").pixels
    for i in range(SCENES):
        scene, _ = compose_scene(faces[2 * i : 2 * i + 1 + i % 2], size=64, gap=24)
        cv2.imwrite(str(folder / ("more" if i % 3 == 0 else "") / f"scene{i:03}.png"), scene)
    cv2.imwrite(str(folder / "astronaut.jpg"), astronaut_bgr)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no JPEG")
    (folder / "empty.png").write_bytes(b"")
    (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 and no more")
    video = fer_npz.parent / "face_talking_854x480.mp4"
    write_clip(video, folder / "talk.mp4", frames=90)
    two_faces_video(video, folder / "two.mp4")
    return folder


@pytest.fixture(scope="module")
def batch_run(cluster: str, inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("batch")
    return out, run_batch([inputs], out, CONFIG, address=cluster, workers=2, chunk_seconds=CHUNK_SECONDS, warn=pytest.fail)


def rows(out: Path) -> list[dict]:
    """Every row under `out`, in a fixed order."""
    return sorted(pq.read_table(out).to_pylist(), key=lambda r: (r["source"], r["frame"] or 0, r["face"] or 0))


def footers(out: Path, key: bytes = DONE_KEY) -> list[list[str]]:
    """What each part's footer says under `key` (by default: the inputs and chunks it completes)."""
    return [json.loads(pq.read_schema(part).metadata.get(key, b"[]")) for part in sorted(out.glob("part-*.parquet"))]


def same(row: dict, face: dict) -> None:
    assert (row["x"], row["y"], row["w"], row["h"]) == tuple(face["box"])
    assert row["label"] == face["label"] and row["error"] is None
    assert row["score"] == pytest.approx(face["score"], abs=1e-6)
    assert [row["confidence"], *(row[k] for k in EMOTIONS)] == pytest.approx([face["confidence"], *(face["probabilities"][k] for k in EMOTIONS)], abs=1e-5)


def test_batch_gives_the_rows_predict_and_video_give_one_by_one(batch_run: tuple[Path, dict], inputs: Path, tmp_path: Path) -> None:
    """On both nodes: every image's faces, and every video frame's faces with the track ids
    `ferkit video` gives (chunks stitched), one error row per broken input."""
    out, summary = batch_run
    assert ray.cluster_resources()["CPU"] == 2 and len(ray.nodes()) == 2  # two workers of one CPU: one on each node
    recognizer = EmotionRecognizer(CONFIG)
    predict([inputs], recognizer, tmp_path / "images.jsonl", warn=lambda message: None)
    images = [json.loads(line) for line in open(tmp_path / "images.jsonl")]
    frames = {}
    for name in ("talk", "two"):
        process_video(inputs / f"{name}.mp4", recognizer, results=tmp_path / f"{name}.jsonl", progress=False)
        frames[name] = [json.loads(line) for line in open(tmp_path / f"{name}.jsonl")]
    got = rows(out)
    by_source = defaultdict(list)
    for row in got:
        by_source[row["source"]].append(row)

    image_faces = sum(len(record["faces"]) for record in images)
    video_faces = sum(len(record["faces"]) for video in frames.values() for record in video)
    assert len(images) == SCENES + 3 and image_faces >= 200 and video_faces >= 85 + 60 + 20  # enough to compare
    assert {name: len({f["track_id"] for r in video for f in r["faces"]}) for name, video in frames.items()} == {"talk": 1, "two": 2}
    assert summary | {"seconds": 0, "rate": 0, "work_seconds": 0} == {
        "inputs": SCENES + 6, "skipped": 0, "images": SCENES + 3, "chunks": 5, "faces": image_faces + video_faces,
        "errors": 3, "seconds": 0, "rate": 0, "work_seconds": 0}
    assert len(got) == image_faces + video_faces + 3
    assert [r["error"] for r in by_source[str(inputs / "broken.mp4")]] == [f"{inputs / 'broken.mp4'}: cannot be opened as a video"]
    assert {r["model"] for r in got} == {"ferkit"} and len({r["model_version"] for r in got}) == 1

    for record in images:
        found = by_source[record["path"]]
        if "error" in record:  # broken.jpg, empty.png: one row with the error predict reports
            assert [(r["error"], r["label"]) for r in found] == [(record["error"], None)]
            continue
        assert [r["face"] for r in found] == list(range(len(record["faces"])))
        assert {(r["frame"], r["track_id"], r["chunk"]) for r in found} <= {(None, None, None)}
        for row, face in zip(found, record["faces"]):
            same(row, face)
    assert {Path(r["path"]).name for r in images if "error" in r} == {"broken.jpg", "empty.png"}

    for name, video_frames in frames.items():
        video = {(r["frame"], r["face"]): r for r in by_source[str(inputs / f"{name}.mp4")]}
        assert len(video) == sum(len(record["faces"]) for record in video_frames)
        for record in video_frames:
            for i, face in enumerate(record["faces"]):
                row = video.pop((record["frame"], i))
                same(row, face)
                assert row["time"] == pytest.approx(record["time"], abs=1e-3) and row["chunk"] == record["frame"] // 30 * 30
                assert row["track_id"] == face["track_id"]  # video-wide: the same rows in each track as `ferkit video`
        assert not video
    assert sorted(keys for keys in footers(out) if "#" in keys[0]) == [[f"{inputs / 'talk.mp4'}#{s}" for s in (0, 30, 60)],
                                                                       [f"{inputs / 'two.mp4'}#{s}" for s in (0, 30)]]  # one part a video


def test_a_rerun_adds_nothing_and_ends_a_stitch_that_was_cut_short(batch_run: tuple[Path, dict], inputs: Path, tmp_path: Path) -> None:
    """Nothing is redone; a chunk part left behind by a job killed while it stitched (the part that
    replaces it already written) is deleted, so its rows are not counted twice."""
    out = tmp_path / "out"
    shutil.copytree(batch_run[0], out)
    parts, before = sorted(out.iterdir()), rows(out)
    stitched = next(part for part, replaced in zip(sorted(out.glob("part-*.parquet")), footers(out, REPLACES_KEY)) if replaced)
    shutil.copy(stitched, out / json.loads(pq.read_schema(stitched).metadata[REPLACES_KEY])[0])  # rows there twice
    summary = run_batch([inputs], out, CONFIG, workers=2, chunk_seconds=CHUNK_SECONDS)
    assert (summary["skipped"], summary["images"], summary["chunks"], summary["faces"], summary["errors"]) == (UNITS, 0, 0, 0, 0)
    assert sorted(out.iterdir()) == parts and rows(out) == before


def test_compacted_parts_hold_the_same_rows_and_still_resume(batch_run: tuple[Path, dict], inputs: Path, tmp_path: Path) -> None:
    """`compact` merges parts into parts of at most 200 rows (here), keeping every row and every
    input's record, so a rerun still has nothing to do."""
    out = tmp_path / "out"
    shutil.copytree(batch_run[0], out)
    before = len(list(out.glob("part-*.parquet")))
    assert compact(out, rows=200) == (before, len(list(out.glob("part-*.parquet"))))
    sizes = [pq.read_metadata(part).num_rows for part in out.glob("part-*.parquet")]
    largest = max(pq.read_metadata(part).num_rows for part in batch_run[0].glob("part-*.parquet"))
    assert len(sizes) < before / 2 and sum(sizes) == len(rows(batch_run[0])) and max(sizes) <= max(200, largest)
    assert rows(out) == rows(batch_run[0]) and sorted(k for keys in footers(out) for k in keys) == sorted(k for keys in footers(batch_run[0]) for k in keys)
    summary = run_batch([inputs], out, CONFIG, workers=2, chunk_seconds=CHUNK_SECONDS)
    assert (summary["skipped"], summary["images"], summary["chunks"]) == (UNITS, 0, 0)


def test_stitch_continues_tracks_by_their_warm_up_boxes() -> None:
    """Chunk 2's tracker numbers its faces afresh: its track 1 is chunk 1's track 2 (the same boxes
    in the warm-up frames), its track 2 was seen only in the warm-up and its track 3 not even
    there, so both are new, numbered in order of first appearance; a row without a track (a
    chunk's error) keeps none."""
    a, b, c, d = (0, 0, 50, 50), (100, 0, 50, 50), (200, 0, 50, 50), (300, 0, 50, 50)

    def part(chunk: int, faces: list[tuple[int, tuple, int]], warm: list[list[int]]) -> pa.Table:
        rows = [{"source": "v.mp4", "frame": f, "chunk": chunk, "track_id": t, **dict(zip("xywh", box))} for f, box, t in faces]
        return pa.Table.from_pylist(rows, schema(EMOTIONS)).replace_schema_metadata({WARM_KEY: json.dumps(warm)})

    first = part(0, [(0, a, 1), (0, b, 2), (1, a, 1), (1, b, 2), (2, b, 2)], [])
    second = part(3, [(3, b, 1), (3, c, 2), (3, d, 3)], [[1, *b, 1], [2, *b, 1], [2, *c, 2]])
    error = pa.Table.from_pylist([{"source": "v.mp4", "chunk": 6, "error": "broke off"}], schema(EMOTIONS))
    joined = stitch([first, second, error.replace_schema_metadata({WARM_KEY: "[]"})])
    assert joined.column("track_id").to_pylist() == [1, 2, 1, 2, 2, 2, 3, 4, None] and joined.schema.metadata is None


def test_other_options_are_refused_where_results_were_made_with_others(batch_run: tuple[Path, dict], inputs: Path) -> None:
    with pytest.raises(OptionError, match=r"\(min_face\)"):
        run_batch([inputs], batch_run[0], RecognizerConfig(min_face=60), chunk_seconds=CHUNK_SECONDS)
    with pytest.raises(OptionError, match=r"\(chunk_seconds\)"):
        run_batch([inputs], batch_run[0], CONFIG, chunk_seconds=2.0)


def test_a_job_killed_midway_resumes_to_the_same_rows(batch_run: tuple[Path, dict], cluster: str, inputs: Path, tmp_path: Path) -> None:
    """Parts never written are redone, and only they: a copy of the results above loses every
    fourth part and two.mp4's (so its chunks run and are joined again); `ferkit batch --address`
    on a CSV naming the inputs' folder and a missing file (relative to it) is killed (SIGKILL: no
    chance to tidy up) once it has written a part, and run again from here (connected already: a
    second command would only add Python's and Ray's start-up). The rows are those of the run
    above, each once, with the missing file as an error row."""
    out = tmp_path / "out"
    shutil.copytree(batch_run[0], out)
    broken = [str(inputs / "broken.mp4")]  # its part is written again before Ray starts: kept, so the first new part is Ray's
    by_input = sorted(zip(footers(out), sorted(out.glob("part-*.parquet"))))  # parts are named at random: order them by what they hold
    lost = [part for i, (keys, part) in enumerate(by_input) if (i % 4 == 0 and keys != broken) or "two.mp4#" in keys[0]]
    keys = {key for part in lost for key in json.loads(pq.read_schema(part).metadata[DONE_KEY])} | {str(tmp_path / "missing.png")}
    for part in lost:
        part.unlink()
    (out / ".part-0.parquet.tmp").write_bytes(b"half a part")
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,note\n{os.path.relpath(inputs, tmp_path)},x\nmissing.png,x\n")
    kept = {key for keys in footers(out) for key in keys}
    args = ["batch", listing, "--out", out, "--address", cluster, "--workers", "1", "--chunk-seconds", str(CHUNK_SECONDS)]
    job = subprocess.Popen([sys.executable, "-m", "ferkit.cli", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while job.poll() is None and {key for keys in footers(out) for key in keys} <= kept and time.monotonic() < deadline:
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=30)
    first = {key for keys in footers(out) for key in keys} - kept
    assert 0 < len(first) < len(keys) and job.returncode == -signal.SIGKILL  # killed part-way
    summary = run_batch([listing], out, CONFIG, address=cluster, workers=2, chunk_seconds=CHUNK_SECONDS, compact_rows=100_000)
    assert summary["chunks"] == sum("#" in key for key in keys - first)  # two.mp4's, and any other video's in a lost part
    assert summary["images"] + summary["chunks"] == len(keys - first)
    assert summary["skipped"] == UNITS + 1 - len(keys - first) and summary["parts"] == len(list(out.glob("part-*.parquet"))) == 1
    got = rows(out)
    error = [r for r in got if r["source"] == str(tmp_path / "missing.png")]
    assert len(error) == 1 and "missing.png" in error[0]["error"] and not list(out.glob(".part-*"))
    assert [r for r in got if r is not error[0]] == rows(batch_run[0])  # every row once, track ids joined again

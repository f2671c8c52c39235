"""Many images and long videos on a Ray cluster, or on this machine's cores: `ferkit batch` as a
library function. Ray Data hands out units of work (a few images, or one time chunk of a video) to
actors that each hold one `EmotionRecognizer` and run the one recognition loop; this process writes
each unit's rows as one Parquet part whose footer names the inputs it completes, so a rerun skips
them and a killed job loses only the units in flight. Once all of a video's chunks are done, their
parts are replaced by one whose track ids run through the whole video (`stitch`)."""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import logging
import math
import os
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import cv2

# The `batch` extra: cli imports this module only when the verb runs, so a plain install never needs them.
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from .errors import ClusterError, FerkitError, OptionError, SourceError, VideoError
from .progress import Meter
from .recognize import EmotionRecognizer, RecognizerConfig, recognize_source
from .results import Face
from .sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Images, Video, find_images
from .track import iou

LIST_SUFFIXES = {".txt", ".csv", ".parquet"}  # files that name inputs, one path a line or row
MEDIA = IMAGE_SUFFIXES | VIDEO_SUFFIXES
WARM_SECONDS = 1.0  # a video chunk starts this early, so its tracks are warm (ids, smoothing) at its first frame
MAX_IMAGES_PER_UNIT = 64  # images per unit of work: fewer parts to write, while every worker still gets several units
SETTINGS = "_batch.json"  # the options the results in a folder were made with ("_": Parquet readers skip it)
DONE_KEY = b"ferkit.done"  # a part's footer: the inputs and chunks whose rows it holds
WARM_KEY = b"ferkit.warm"  # a chunk part's footer: its warm-up frames' faces [frame, x, y, w, h, track id], for stitching
REPLACES_KEY = b"ferkit.replaces"  # a part's footer: the parts it replaces (deleted once it is written)
COMPACT_ROWS = 1_000_000  # `compact`: rows a merged part holds at most (unless one part alone holds more)
STITCH_IOU = 0.5  # a chunk's track continues an earlier one whose box in a warm-up frame overlaps its own this much


def run_batch(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    config: RecognizerConfig | None = None,
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    chunk_seconds: float = 60.0,
    cpus: int | None = None,
    progress: bool = False,
    warn: Callable[[str], None] = print,
    compact_rows: int | None = None,
) -> dict:
    """Recognise every face in images, videos, folders, glob patterns and list files (.txt, .csv,
    .parquet of paths) into Parquet parts under `out_dir`: one row per face, one per input that
    failed. Inputs (and video chunks) already in `out_dir` are skipped, so a rerun finishes a killed
    job. Ray: the cluster at `address` (auto, ray://host:10001), else one started here on `cpus`
    cores (default: all); `workers` actors (default: one per `threads` CPUs of the cluster) each
    run one recognizer with `threads` ONNX Runtime threads. With `compact_rows`, the parts are then
    merged into parts of about that many rows (`compact`). Returns a summary."""
    config = config or RecognizerConfig()
    recognizer = EmotionRecognizer(config)  # a bad model or option fails here, before Ray starts
    model = model_identity(recognizer)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    check_settings(out_dir, {**asdict(config), "chunk_seconds": chunk_seconds, "model_version": model[1]})
    for leftover in out_dir.glob(".part-*.tmp"):  # a part a killed run did not finish writing
        leftover.unlink()
    inputs = expand(sources, warn)
    done = finished(out_dir)
    images, chunks, videos, failed, skipped = plan(inputs, config.detect_every, chunk_seconds, done)
    rows_schema = schema(recognizer.labels)
    if failed:
        errors = [error_row(path, message, model) for path, message in failed]
        write_part(out_dir, pa.Table.from_pylist(errors, schema=rows_schema), [path for path, _ in failed])
    for keys in videos.values():  # a job killed between a video's last chunk and its stitch
        stitch_if_done(out_dir, keys, done)
    summary = {"inputs": len(inputs), "skipped": skipped, "images": len(images), "chunks": len(chunks), "faces": 0,
               "errors": len(failed), "work_seconds": 0.0}
    with Meter("batch", len(images) + len(chunks), "items", enabled=progress) as meter:
        if images or chunks:
            connect(address, cpus)
            workers = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
            per = max(1, min(MAX_IMAGES_PER_UNIT, math.ceil(len(images) / (4 * workers))))
            units = chunks + [{"kind": "images", "paths": images[i : i + per]} for i in range(0, len(images), per)]
            # No more actors than units: Ray Data fails a job when it ends while an actor it did not need is still starting.
            workers = min(workers, len(units))
            ray.data.DataContext.get_current().enable_progress_bars = False  # the Meter is the bar
            logging.getLogger("ray.data").setLevel(logging.ERROR)  # its plan and timings, and the notice of no bars
            results = ray.data.from_items([{"unit": json.dumps(u)} for u in units], override_num_blocks=len(units)).map_batches(
                Worker, fn_constructor_args=(config, threads), batch_size=1, batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads)
            for result in results.iter_rows():
                keys, table = json.loads(result["keys"]), pa.ipc.open_stream(result["rows"]).read_all()
                joined = result["video"] and len(videos[result["video"]]) > 1  # a video of one chunk has its ids already
                name = write_part(out_dir, table, keys, {WARM_KEY: result["warm"]} if joined else {})
                done.update(dict.fromkeys(keys, name))
                if result["video"]:
                    stitch_if_done(out_dir, videos[result["video"]], done)
                failures = table.column("error").drop_null().length() if table.num_rows else 0
                summary["faces"] += table.num_rows - failures
                summary["errors"] += failures
                summary["work_seconds"] += result["seconds"]
                meter.describe(f"{summary['faces']} faces")
                meter.advance(len(keys))
    if compact_rows:
        summary["parts"] = compact(out_dir, compact_rows)[1]
    return {**summary, "seconds": meter.seconds, "rate": meter.rate}


class Worker:
    """A Ray actor: one recognizer, loaded once and reused for every unit of work it is handed."""

    def __init__(self, config: RecognizerConfig, threads: int) -> None:
        cv2.setNumThreads(threads)  # OpenCV's detectors too use the `threads` CPUs Ray gives the actor, not every core of its node
        self.recognizer = EmotionRecognizer(config, threads=threads)
        self.model = model_identity(self.recognizer)
        self.schema = schema(self.recognizer.labels)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out: dict[str, list] = {"keys": [], "rows": [], "video": [], "warm": [], "seconds": []}
        for unit in map(json.loads, batch.column("unit").to_pylist()):
            started = time.perf_counter()
            rows, warm = (self.images(unit["paths"]), []) if unit["kind"] == "images" else self.chunk(unit)
            out["keys"].append(json.dumps(unit_keys(unit)))
            out["rows"].append(to_bytes(pa.Table.from_pylist(rows, schema=self.schema)))
            out["video"].append(unit.get("path"))
            out["warm"].append(json.dumps(warm))
            out["seconds"].append(time.perf_counter() - started)
        return pa.table(out)

    def images(self, paths: list[str]) -> list[dict]:
        rows = []
        for path in paths:
            try:
                for frame, faces in recognize_source(Images([path]), self.recognizer):
                    rows += [error_row(path, frame.error, self.model)] if frame.image is None else face_rows(path, faces, self.model)
            except Exception as e:  # one input of millions must not end the job: its row says what failed
                rows.append(error_row(path, failure(e), self.model))
        return rows

    def chunk(self, unit: dict) -> tuple[list[dict], list[list[int]]]:
        """A video's frames from `start` to `stop`, followed from `warm` on (the same detection
        frames and, after the warm-up, the same tracks and smoothing as `ferkit video`). The
        warm-up frames' rows belong to the chunk before: only their boxes and track ids are kept,
        for `stitch` to tell which earlier track each of this chunk's tracks continues."""
        path, start, rows, warm = unit["path"], unit["start"], [], []
        try:
            video = Video(path, unit["warm"], unit["stop"])
            for frame, faces in recognize_source(video, self.recognizer.stream()):
                if frame.index >= start:
                    rows += face_rows(path, faces, self.model, frame.index, frame.time, start)
                else:
                    warm += [[frame.index, *f.box, f.track_id] for f in faces]
            if not video.complete:
                rows.append(error_row(path, f"{path}: the video broke off at frame {video.read}", self.model, start))
        except Exception as e:  # as for images: the chunk's row says what failed
            rows.append(error_row(path, failure(e), self.model, start))
        return rows, warm


def expand(sources: Sequence[str | Path], warn: Callable[[str], None] = print) -> list[Path]:
    """Every input the sources name, absolute and each once: files as given, the images and videos
    in folders and glob matches, and the paths in list files (relative ones from the list's
    folder). A listed file that is missing becomes an error row, not the end of the job."""
    found: dict[Path, None] = {}
    for source in map(Path, sources):
        if source.suffix.lower() in LIST_SUFFIXES and source.is_file():
            for entry in (source.parent / e for e in read_list(source)):
                if entry.is_dir() or glob.has_magic(str(entry)):
                    found.update((absolute(p), None) for p, _ in find_images([entry], warn, MEDIA))
                else:
                    found[absolute(entry)] = None
        else:
            found.update((absolute(p), None) for p, _ in find_images([source], warn, MEDIA))
    return list(found)


def absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def read_list(path: Path) -> list[str]:
    """The paths a list file names: one a line in .txt (blank lines and # comments skipped); the
    `path` column, or else the first, of a .csv (with a header row) or a .parquet."""
    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
            return [str(p) for p in table.column("path" if "path" in table.column_names else 0).to_pylist() if p]
        if path.suffix.lower() == ".csv":
            with path.open(newline="") as f:
                header, *rows = list(csv.reader(f)) or [[]]
            column = header.index("path") if "path" in header else 0
            return [row[column] for row in rows if len(row) > column and row[column]]
        lines = (line.strip() for line in path.read_text().splitlines())
        return [line for line in lines if line and not line.startswith("#")]
    except (pa.ArrowException, UnicodeDecodeError, csv.Error) as e:
        raise SourceError(f"{path}: not a readable list of paths ({e})") from None


def plan(inputs: list[Path], detect_every: int, chunk_seconds: float,
         done: dict[str, str]) -> tuple[list[str], list[dict], dict[str, list[str]], list[tuple[str, str]], int]:
    """What is left to do: images, video chunks, every video's chunk keys (done or not), the
    videos that cannot be opened (with why), and how many images and chunks were done before."""
    images, chunks, videos, failed, skipped = [], [], {}, [], 0
    for path in map(str, inputs):
        if path in done:
            skipped += 1
        elif Path(path).suffix.lower() not in VIDEO_SUFFIXES:
            images.append(path)
        else:
            try:
                video = Video(path)
                video.close()
            except VideoError as e:
                failed.append((path, str(e)))
                continue
            parts = video_chunks(path, video.fps, video.total, detect_every, chunk_seconds)
            videos[path] = [unit_keys(c)[0] for c in parts]
            left = [c for c in parts if unit_keys(c)[0] not in done]
            chunks, skipped = chunks + left, skipped + len(parts) - len(left)
    return images, chunks, videos, failed, skipped


def video_chunks(path: str, fps: float, total: int | None, detect_every: int, seconds: float) -> list[dict]:
    """A video's time chunks, `seconds` long, in whole detection periods (so that each chunk's
    detector searches the very frames `ferkit video` searches); each starts WARM_SECONDS early,
    also in whole periods. A video of unknown length is one chunk; the last runs to the end."""
    if total is None:
        return [{"kind": "chunk", "path": path, "start": 0, "stop": None, "warm": 0}]
    size = detect_every * max(1, round(seconds * fps / detect_every))
    warm = detect_every * math.ceil(WARM_SECONDS * fps / detect_every)
    return [{"kind": "chunk", "path": path, "start": s, "stop": s + size if s + size < total else None, "warm": max(0, s - warm)}
            for s in range(0, total, size)]


def unit_keys(unit: dict) -> list[str]:
    """What a unit completes: its images' paths, or its video's path and first frame."""
    return unit["paths"] if unit["kind"] == "images" else [f"{unit['path']}#{unit['start']}"]


def schema(labels: Sequence[str]) -> pa.Schema:
    """The rows' columns (README, "ferkit batch"): a face, or an input that failed (`error` set)."""
    ints = [(name, pa.int32()) for name in ("face", "x", "y", "w", "h")]
    return pa.schema([("source", pa.string()), ("frame", pa.int64()), ("time", pa.float64()), ("chunk", pa.int64()),
                      ("track_id", pa.int64()), *ints, ("score", pa.float64()), ("label", pa.string()),
                      ("confidence", pa.float64()), *[(k, pa.float64()) for k in labels],
                      ("model", pa.string()), ("model_version", pa.string()), ("error", pa.string())])


def face_rows(source: str, faces: list[Face], model: tuple[str, str], frame: int | None = None,
              time: float | None = None, chunk: int | None = None) -> list[dict]:
    return [{"source": source, "frame": frame, "time": time, "chunk": chunk, "track_id": f.track_id, "face": i,
             **dict(zip("xywh", f.box)), "score": f.score, "label": f.label, "confidence": f.confidence,
             **f.probabilities, "model": model[0], "model_version": model[1]} for i, f in enumerate(faces)]


def error_row(source: str, error: str, model: tuple[str, str], chunk: int | None = None) -> dict:
    return {"source": source, "chunk": chunk, "model": model[0], "model_version": model[1], "error": error}


def failure(e: Exception) -> str:
    """An error row's text: a `FerkitError` says what to fix; anything else names its type too."""
    return str(e) if isinstance(e, FerkitError) else f"{type(e).__name__}: {e}"


def model_identity(recognizer: EmotionRecognizer) -> tuple[str, str]:
    """The model's name and version: its file name(s) and the first 12 hex digits of their SHA-256,
    so every row says which weights made it."""
    digest = hashlib.sha256()
    for path in recognizer.classifier.paths:
        digest.update(path.read_bytes())
    return "+".join(p.stem for p in recognizer.classifier.paths), digest.hexdigest()[:12]


def to_bytes(table: pa.Table) -> bytes:
    """A table as Arrow IPC bytes: how a worker's rows travel back to be written here."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def write_part(out_dir: Path, table: pa.Table, keys: list[str], footer: dict[bytes, str] | None = None) -> str:
    """Rows as a Parquet part, its footer naming what it completes (and anything in `footer`);
    written under a temporary name and renamed, so a part is there whole or not at all. Returns its name."""
    name = f"part-{uuid.uuid4().hex}.parquet"
    temporary = out_dir / f".{name}.tmp"
    pq.write_table(table.replace_schema_metadata({DONE_KEY: json.dumps(keys), **(footer or {})}), temporary)
    os.replace(temporary, out_dir / name)
    return name


def finished(out_dir: Path) -> dict[str, str]:
    """The inputs and video chunks whose rows are already in `out_dir`, each with its part's name.
    Parts that a later part replaces (a killed job that had not deleted them yet) are deleted first."""
    footers = {part.name: pq.read_schema(part).metadata for part in out_dir.glob("part-*.parquet")}
    for replaced in {name for footer in footers.values() for name in json.loads(footer.get(REPLACES_KEY, b"[]"))}:
        (out_dir / replaced).unlink(missing_ok=True)
        footers.pop(replaced, None)
    return {key: name for name, footer in footers.items() for key in json.loads(footer[DONE_KEY])}


def stitch_if_done(out_dir: Path, keys: list[str], done: dict[str, str]) -> None:
    """Once every chunk of a video is done, replace its chunks' parts by one holding video-wide
    track ids: written first, naming the parts it replaces, which are then deleted (a rerun
    deletes them if a kill came between). `done` is updated to the new part."""
    names = list(dict.fromkeys(done.get(key) for key in keys))
    if len(names) < 2 or None in names:
        return
    name = write_part(out_dir, stitch([pq.read_table(out_dir / n) for n in names]), keys, {REPLACES_KEY: json.dumps(names)})
    for replaced in names:
        (out_dir / replaced).unlink()
    done.update(dict.fromkeys(keys, name))


def stitch(parts: list[pa.Table]) -> pa.Table:
    """One video's chunk parts (in order) as one table whose track ids run through the whole video. A chunk's
    track continues the earlier track whose boxes overlap its own in the most warm-up frames
    (IoU >= STITCH_IOU; each continued once); the others are new. Ids are numbered in order of
    first appearance, as `ferkit video` numbers them, so a track holds the same rows as there."""
    seen: defaultdict[int, list[tuple[tuple[int, int, int, int], int]]] = defaultdict(list)  # frame -> (box, video-wide id)
    tables, next_id = [], 1
    for part in parts:
        votes = Counter((local, earlier) for frame, *box, local in json.loads(part.schema.metadata.get(WARM_KEY, b"[]"))
                        for other, earlier in seen[frame] if iou(tuple(box), other) >= STITCH_IOU)
        ids: dict[int, int] = {}
        for (local, earlier), _ in votes.most_common():
            if local not in ids and earlier not in ids.values():
                ids[local] = earlier
        tracks = []
        for row in part.select(["frame", "x", "y", "w", "h", "track_id"]).to_pylist():
            local = row["track_id"]
            if local is not None and local not in ids:
                ids[local], next_id = next_id, next_id + 1
            tracks.append(ids.get(local))
            if local is not None:
                seen[row["frame"]].append(((row["x"], row["y"], row["w"], row["h"]), ids[local]))
        column = part.schema.get_field_index("track_id")
        tables.append(part.set_column(column, "track_id", pa.array(tracks, pa.int64())).replace_schema_metadata(None))
    return pa.concat_tables(tables)


def compact(out_dir: str | Path, rows: int = COMPACT_ROWS) -> tuple[int, int]:
    """Merge the parts under `out_dir` into parts of about `rows` rows, each naming in its footer
    the inputs of the parts it merges (so reruns still skip them) and the parts it replaces (so a
    kill between writing it and deleting them loses nothing and counts nothing twice). Chunk parts
    of videos not yet joined are left alone. Not while a job writes to `out_dir`. Returns the
    number of parts before and after."""
    out_dir = Path(out_dir)
    finished(out_dir)  # ends a replacement a kill cut short
    parts = sorted(out_dir.glob("part-*.parquet"))
    footers = {part: pq.read_metadata(part) for part in parts}
    merge = [part for part in parts if WARM_KEY not in footers[part].metadata]
    groups, group, size = [], [], 0
    for part in merge:
        if group and size + footers[part].num_rows > rows:
            groups.append(group)
            group, size = [], 0
        group, size = group + [part], size + footers[part].num_rows
    groups.append(group)
    for group in (g for g in groups if len(g) > 1):
        tables = [pq.read_table(part) for part in group]
        keys = [key for table in tables for key in json.loads(table.schema.metadata[DONE_KEY])]
        write_part(out_dir, pa.concat_tables([t.replace_schema_metadata(None) for t in tables]), keys,
                   {REPLACES_KEY: json.dumps([part.name for part in group])})
        for part in group:
            part.unlink()
    return len(parts), len(list(out_dir.glob("part-*.parquet")))


def check_settings(out_dir: Path, settings: dict) -> None:
    """Keep one folder's results made with one set of options: a rerun with others would mix
    them (and cut videos into other chunks, so rows would repeat)."""
    path, settings = out_dir / SETTINGS, json.loads(json.dumps(settings, default=str))
    if not path.is_file():
        path.write_text(json.dumps(settings, indent=2) + "\n")
        return
    before = json.loads(path.read_text())
    changed = [k for k in settings if before.get(k) != settings[k]]
    if changed:
        raise OptionError(f"{out_dir} holds results made with other options ({', '.join(changed)}); "
                          "rerun with those options or choose another --out")


def connect(address: str | None, cpus: int | None) -> None:
    """Join the Ray cluster at `address`, or start Ray here on `cpus` cores (default: all), never
    joining a cluster that `ray start` left running; a Ray this process already started (a
    notebook, the tests) is used as it is."""
    if ray.is_initialized():
        return
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
    except ConnectionError as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {e}") from None

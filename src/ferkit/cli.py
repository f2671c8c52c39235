"""The `ferkit` command: one verb per job. Expected failures print one line and exit with code 2."""

from __future__ import annotations

import functools
import inspect
import json
import os
from collections import Counter
from contextlib import contextmanager
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Callable, Collection, Iterator, Optional, get_type_hints

import cv2
import typer
from rich.console import Console
from rich.table import Table

from .classify import ASSETS
from .errors import DataError, FerkitError, OptionError, VideoError
from .predict import predict as predict_images
from .recognize import STREAM_DETECT_SIZE, EmotionRecognizer, RecognizerConfig
from .runs import TrainConfig
from .video import process_video
from .webcam import run as run_window

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Facial expression recognition: 7 emotions from faces.")
err = Console(stderr=True)
out = Console()


def config_options(config: type, names: Collection[str] | None = None, **defaults: object) -> Callable[[Callable], Callable]:
    """Give a verb one option per field of a config dataclass (or the fields `names` lists) and call
    it with the config they make, as `config=`: each option is declared once, on the config, with
    its default there and its help, bounds (`min`, `max`), `flag` and command-line `type` in the
    field's metadata. `defaults` change a default for this verb."""
    hints = get_type_hints(config)
    offered = [f for f in fields(config) if names is None or f.name in names]

    def wrap(verb: Callable) -> Callable:
        verb_hints, params = get_type_hints(verb), []
        for p in inspect.signature(verb).parameters.values():
            if p.name != "config":
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=verb_hints[p.name]))
                continue
            for f in offered:  # the config's options stand where the verb declares `config`
                meta = dict(f.metadata)
                flag, kind = meta.pop("flag", None), meta.pop("type", hints[f.name])
                default = defaults.get(f.name, ... if f.default is MISSING else f.default)
                option = typer.Option(default, *([flag] if flag else []), **meta)
                params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))

        @functools.wraps(verb)
        def command(**values: object) -> object:
            chosen = {f.name: plain(values.pop(f.name)) for f in offered}
            return verb(config=config(**{k: v for k, v in chosen.items() if v != ()}), **values)  # none given: the default

        command.__signature__ = inspect.Signature(params)  # what Typer reads the options from
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return wrap


def plain(value: object) -> object:
    """An option's value as configs hold it: paths as strings, repeated options as tuples."""
    if isinstance(value, (list, tuple)):
        return tuple(plain(v) for v in value)
    return str(value) if isinstance(value, Path) else value


@contextmanager
def clean_errors() -> Iterator[None]:
    """Turn the errors a user can cause (bad files, bad options, a file system that says no) into one
    line and exit code 2; any other exception is a bug and keeps its traceback. OpenCV and FFmpeg
    are told to keep their own warnings to themselves, so that line is all the user sees."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when OpenCV first opens a video
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    except (FerkitError, OSError) as e:
        err.print(f"[red]error:[/red] {os_error(e) if isinstance(e, OSError) else e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def os_error(e: OSError) -> str:
    """One line for a failed file operation (no permission, a full disk). mkdir's "File exists" (or
    "Not a directory") means a file stands where a folder must go: name that file."""
    if not e.strerror or not e.filename:
        return str(e)
    if isinstance(e, (FileExistsError, NotADirectoryError)):
        blocker = next((p for p in (Path(e.filename), *Path(e.filename).parents) if p.is_file()), None)
        if blocker is not None:
            return f"{blocker} is a file, so nothing can be written under it"
    return f"{e.filename}: {e.strerror}"


@app.command()
@config_options(TrainConfig)
def train(
    config: TrainConfig,
    resume: bool = typer.Option(False, "--resume", help="Continue the run RUNS_DIR/NAME from its last checkpoint."),
) -> None:
    """Train a model on FER2013's Training split, choosing the checkpoint on PublicTest."""
    from .train import train as run  # torch: only the training verbs need it

    with clean_errors():
        best = run(config, resume=resume)
    out.print(f"best checkpoint: {best}")


@app.command()
def evaluate(
    data: Path = typer.Option(..., help="fer2013.npz, fer2013.csv or an image folder."),
    model: Optional[list[Path]] = typer.Option(None, help="ONNX model(s), a shipped one by name (fer2013, ferplus) or one .pt checkpoint; several ONNX = ensemble. Default: fer2013."),
    split: str = typer.Option("PrivateTest", help="Training, PublicTest or PrivateTest."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the report as JSON here."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Write report.json, report.md and PNG plots here."),
    tta: bool = typer.Option(False, help="Test-time augmentation: mirror and shifted crops, averaged."),
    ferplus: Optional[Path] = typer.Option(None, help="fer2013new.csv: score against FER+ majority labels."),
) -> None:
    """Score a model on an official split: accuracy, per-class metrics, confusion matrix."""
    from .evaluate import evaluate as run, write_reports  # scikit-learn, and torch for a .pt: only when evaluating

    with clean_errors():
        report = run(data, model, split=split, tta=tta, ferplus=ferplus)
    table = Table(title=f"{split}: accuracy {report['accuracy']:.2%}, macro-F1 {report['macro_f1']:.4f}")
    for column in ("emotion", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "emotion" else "right")
    for name, m in report["per_class"].items():
        table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    out.print(table)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n")
    if out_dir:
        for path in write_reports(report, out_dir):
            out.print(f"wrote {path}")


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="best.pt (or last.pt) of a training run."),
    output: Path = typer.Option(Path("ferkit.onnx"), "--out", help="ONNX file; its card goes beside it as .json."),
    data: Optional[Path] = typer.Option(None, help="Data to check ONNX Runtime against torch on, and score the model on (PrivateTest)."),
    ferplus: Optional[Path] = typer.Option(None, help="fer2013new.csv: score on FER+ majority labels (default for a model trained on them)."),
) -> None:
    """Export a checkpoint to ONNX with a JSON model card."""
    from .export import export as run  # torch

    with clean_errors():
        card = run(checkpoint, output, data=data, ferplus=ferplus)
    out.print(f"wrote {output} and {output.with_suffix('.json')}")
    if "onnx_check" in card:
        c = card["onnx_check"]
        out.print(f"ONNX vs torch on {c['split']}: top-1 agreement {c['top1_agreement']:.2%}, max probability difference {c['max_prob_diff']:.2e}")
        m = card["metrics"]
        out.print(f"{c['split']} ({m['labels']} labels): accuracy {m[c['split'] + '_accuracy']:.2%}, with TTA {m[c['split'] + '_tta_accuracy']:.2%}")


STREAM_ONLY = ("detect_size", "detect_every")  # options for the frames of a video or camera alone
STILL = tuple(f.name for f in fields(RecognizerConfig) if f.name not in STREAM_ONLY)
ShowAll = typer.Option(False, "--all", help="Draw bars of all 7 emotions beside each face.")


@app.command()
@config_options(RecognizerConfig, names=STILL)
def predict(
    sources: Optional[list[Path]] = typer.Argument(None, help="Images, folders (recursive) or glob patterns. Default: the bundled sample photo."),
    output: Optional[Path] = typer.Option(None, "--out", help="Write results to a .jsonl or .csv file (default: JSON lines on stdout)."),
    save: Optional[Path] = typer.Option(None, help="Folder for annotated copies of the images."),
    show_all: bool = ShowAll,
    *,
    config: RecognizerConfig,
) -> None:
    """Recognise the emotion of every face in images or folders of images."""
    with clean_errors():
        recognizer = EmotionRecognizer(config)
        summary = predict_images(sources or [ASSETS / "sample.jpg"], recognizer, output, save, show_all, progress=err.is_terminal,
                                 warn=lambda message: err.print(f"[yellow]skipped:[/yellow] {message}", highlight=False, soft_wrap=True))
    counts = ", ".join(f"{k} {v}" for k, v in Counter(summary["labels"]).most_common())
    failed = summary["unreadable"]
    err.print(f"{plural(summary['images'], 'image')}, {plural(summary['faces'], 'face')}" + (f" ({counts})" if counts else "")
              + (f", {failed} unreadable" if failed else "") + f" in {summary['seconds']:.1f} s, {summary['rate']:.1f} images/s")
    if failed == summary["images"]:
        err.print(f"[red]error:[/red] {'no image could be read' if failed else 'no images found'}")
        raise typer.Exit(2)


@app.command()
@config_options(RecognizerConfig, detect_size=STREAM_DETECT_SIZE)
def video(
    source: Path = typer.Argument(..., help="Video file."),
    output: Optional[Path] = typer.Option(None, "--out", help="Annotated video (.mp4)."),
    results: Optional[Path] = typer.Option(None, "--csv", help="Per-frame, per-track results (.csv, or .jsonl)."),
    show_all: bool = ShowAll,
    *,
    config: RecognizerConfig,
) -> None:
    """Recognise emotions in every frame of a video, tracking each face."""
    with clean_errors():
        recognizer = EmotionRecognizer(config)
        summary = process_video(source, recognizer, output, results, show_all, progress=err.is_terminal)
    labels = ", ".join(f"{k} {v}" for k, v in sorted(summary["labels"].items(), key=lambda kv: -kv[1]))
    err.print(f"{plural(summary['frames'], 'frame')}, {plural(summary['faces'], 'face')} in {plural(summary['tracks'], 'track')}"
              + (f" ({labels})" if labels else "") + f", {summary['fps']:.1f} FPS")
    if not summary["complete"]:
        err.print(f"[yellow]warning:[/yellow] the video broke off after {summary['frames']} of {summary['expected_frames']} frames; results cover those")
    if output:
        err.print(f"wrote {output} (H.264; audio: {summary['audio']})", soft_wrap=True)
    if results:
        err.print(f"wrote {results}")


@app.command()
@config_options(RecognizerConfig, detect_size=STREAM_DETECT_SIZE)
def webcam(
    camera: int = typer.Option(0, help="Camera index."),
    source: Optional[Path] = typer.Option(None, help="A video file to use as the camera instead."),
    loop: bool = typer.Option(False, help="With --source: start the file again at its end."),
    shots: Path = typer.Option(Path("screenshots"), help="Folder for screenshots (key S)."),
    show_all: bool = typer.Option(False, "--all", help="Start with all-emotion bars shown (key A)."),
    *,
    config: RecognizerConfig,
) -> None:
    """Live window: emotions of the faces in front of the camera. Keys: Q/ESC, S, A, SPACE."""
    with clean_errors():
        if source is not None and not source.is_file():
            raise VideoError(f"{source}: no such file")
        recognizer = EmotionRecognizer(config)
        code = run_window(str(source) if source else camera, recognizer, shots, show_all, loop=loop, log=lambda s: print(s, flush=True))
    raise typer.Exit(code)


@app.command()
@config_options(RecognizerConfig, names=STILL)
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port."),
    max_upload_mb: float = typer.Option(10.0, help="Largest upload accepted (413 beyond)."),
    max_megapixels: float = typer.Option(25.0, help="Largest image accepted, in megapixels (413 beyond)."),
    upload_timeout: float = typer.Option(30.0, min=0.1, help="Seconds a request body may take to arrive (408 beyond)."),
    max_uploads: int = typer.Option(16, min=1, help="Requests holding an upload at once; the rest wait, then get 503."),
    allowed_host: Optional[list[str]] = typer.Option(
        None, help="A host name clients reach the server by (repeatable); requests naming another get 400. "
        "Loopback names and --host itself are always allowed; '*' allows any."),
    *,
    config: RecognizerConfig,
) -> None:
    """Web app (live camera in the browser, image upload) and REST API at http://HOST:PORT/."""
    import uvicorn  # the web stack is imported by the verbs that serve, not by every start of the CLI

    from .server import ANY_ADDRESS, Limits, create_app, trusted_hosts

    with clean_errors():
        recognizer = EmotionRecognizer(config)
        limits = Limits(int(max_upload_mb * 1024 * 1024), int(max_megapixels * 1_000_000), upload_timeout, max_uploads)
    err.print(f"ferkit web app on http://{host}:{port}/  (API docs: /docs)")
    if host in ANY_ADDRESS and not allowed_host:
        err.print("[yellow]note:[/yellow] only requests to a loopback name are answered; add --allowed-host NAME for each name or address clients use")
    # Idle keep-alive connections close after 5 s; past 256 connections new requests get 503.
    uvicorn.run(create_app(recognizer, limits, trusted_hosts(host, allowed_host or [])), host=host, port=port,
                log_level="warning", timeout_keep_alive=5, limit_concurrency=256)


@app.command()
@config_options(RecognizerConfig)
def batch(
    sources: list[Path] = typer.Argument(..., help="Images, videos, folders (recursive), glob patterns or list files (.txt, .csv, .parquet of paths)."),
    output: Path = typer.Option(..., "--out", help="Folder for the Parquet results; a rerun with the same options resumes there."),
    address: Optional[str] = typer.Option(None, help="Ray cluster: auto, or ray://HOST:10001 (default: Ray on this machine's cores)."),
    workers: Optional[int] = typer.Option(None, min=1, help="Recognizers at work at once (default: one per --threads CPUs)."),
    threads: int = typer.Option(1, min=1, help="ONNX Runtime threads of each worker."),
    chunk_seconds: float = typer.Option(60.0, min=1.0, help="Videos are cut into chunks this long, recognised in parallel."),
    compact: Optional[int] = typer.Option(None, min=1, metavar="ROWS", help="Then merge the parts into parts of about ROWS rows (resumable still)."),
    *,
    config: RecognizerConfig,
) -> None:
    """Recognise faces in many images and long videos on Ray, to Parquet; a rerun resumes."""
    with clean_errors():
        try:
            from .batch import run_batch  # Ray and pyarrow: the `batch` extra, imported only by this verb
        except ModuleNotFoundError as e:
            raise OptionError(f"ferkit batch needs {e.name}: pip install 'ferkit[batch]'") from None
        summary = run_batch(sources, output, config, address=address, workers=workers, threads=threads, chunk_seconds=chunk_seconds,
                            compact_rows=compact, progress=err.is_terminal, warn=lambda message: err.print(f"[yellow]skipped:[/yellow] {message}", highlight=False, soft_wrap=True))
    done = summary["images"] + summary["chunks"]
    err.print(f"{plural(summary['inputs'], 'input')}: {plural(summary['images'], 'image')} and {plural(summary['chunks'], 'video chunk')} done now"
              + (f", {summary['skipped']} done before" if summary["skipped"] else "")
              + f"; {plural(summary['faces'], 'face')}, {plural(summary['errors'], 'error row')}"
              + (f" in {summary['seconds']:.1f} s, {summary['rate']:.1f} items/s" if done else ""))
    err.print(f"results in {output}/part-*.parquet" + (f" ({plural(summary['parts'], 'part')})" if compact else ""), soft_wrap=True)


@app.command()
@config_options(RecognizerConfig, names=("model",))
def benchmark(
    what: str = typer.Argument(..., help="models, pipeline, detect, landmarks, quantize, server, soak, memory or batch."),
    models: Optional[list[str]] = typer.Option(None, "--models", help="models: which registered models (default: all)."),
    video: Path = typer.Option(Path(os.environ.get("FERKIT_DATA", "../shared/data")) / "face_talking_854x480.mp4",
                               show_default=False, help="pipeline, memory, detect: the video the 640x480 test clips or frames come from (default: face_talking_854x480.mp4 in $FERKIT_DATA)."),
    frames: int = typer.Option(300, help="pipeline, memory, batch: frames per test clip; detect: video frames (at most the video's)."),
    scenes: int = typer.Option(200, help="detect, batch: composed 640x480 scenes of PrivateTest faces."),
    split: str = typer.Option("PrivateTest", help="detect: whose faces make the scenes (choose settings on PublicTest, report PrivateTest)."),
    seed: int = typer.Option(0, help="detect: which scenes are drawn."),
    data: Path = typer.Option(Path(os.environ.get("FERKIT_DATA", "../shared/data")) / "fer2013.npz",
                              show_default=False, help="memory: the data `evaluate` scores (PrivateTest); detect, batch: PrivateTest's faces; landmarks: Training's; quantize: calibration on Training, agreement on PublicTest (default: fer2013.npz in $FERKIT_DATA)."),
    ferplus: Optional[Path] = typer.Option(None, help="detect: fer2013new.csv; the images FER+ calls no face (FER2013's black squares, icons, signs) are drawn into scenes but not counted (default: fer2013new.csv beside --data, where it is)."),
    peer: Optional[str] = typer.Option(None, help="pipeline: a Python with the `fer` package (benchmarks/peer_setup.sh) to time it too."),
    *,
    config: RecognizerConfig,
    clients: int = typer.Option(50, help="server, soak: concurrent well-behaved clients."),
    seconds: float = typer.Option(30.0, help="server, soak: duration."),
    upload_timeout: float = typer.Option(30.0, help="soak: the server's --upload-timeout (the slow clients are cut off after it)."),
    bf16: str = typer.Option("auto", help="models: bf16 autocast in the training steps: auto, on or off."),
    device: str = typer.Option("auto", help="models: where to time training steps: auto (a GPU if present), cpu or cuda."),
    batch: Optional[list[int]] = typer.Option(None, "--batch", help="models: training batch size(s) to time (default 64)."),
    compile: bool = typer.Option(False, "--compile", help="models: time the training steps through torch.compile."),
    workers: Optional[list[int]] = typer.Option(None, "--workers", help="batch: worker counts to time on Ray on this machine (default 1 and 2)."),
    nodes: int = typer.Option(2, min=0, help="batch: one-CPU nodes of the local cluster whose scaling is timed (0: none)."),
    calibration: int = typer.Option(1024, min=1, help="quantize: random Training faces the int8 copies are calibrated on."),
) -> None:
    """Print speed tables: model training/inference, pipeline FPS per stage, detection and framing on
    faces at known places, the FER2013 landmark template, int8 copies, REST API under load and in a
    soak beside slow and malicious clients; peak memory per verb; `ferkit batch` on Ray against one process."""
    from . import benchmark as bench  # torch (models) and httpx (server): only when benchmarking

    with clean_errors():
        if what == "models":
            table = bench.models_table(models, bf16=bf16, device=device, batches=batch or [64], compile=compile)
        elif what == "pipeline":
            table = bench.pipeline_table(need_video(video), frames, config.model, peer=peer)
        elif what == "detect":
            beside = data.parent / "fer2013new.csv"
            table = bench.detect_tables(need_data(data), need_video(video), scenes, frames, config.model, seed, split,
                                        ferplus or (beside if beside.is_file() else None))
        elif what == "landmarks":
            table = bench.landmarks_table(need_data(data))
        elif what == "quantize":
            table = bench.quantize_table(config.model[0] if config.model else None, data, calibration)
        elif what == "server":
            table = bench.server_table(clients, seconds)
        elif what == "memory":
            table = bench.memory_table(need_data(data), need_video(video), frames)
        elif what == "soak":
            table = bench.soak_table(clients, seconds, upload_timeout=upload_timeout)
        elif what == "batch":
            table = bench.batch_table(need_data(data), need_video(video), scenes, frames, config.model, workers=workers or [1, 2], nodes=nodes)
        else:
            raise OptionError(f"unknown benchmark {what!r}; choose models, pipeline, detect, landmarks, quantize, server, soak, memory or batch")
    Console(width=160).print(table)


def need_data(data: Path) -> Path:
    """The data a benchmark reads, or a one-line error naming the option that gives it."""
    if not data.is_file():
        raise DataError(f"{data}: no such file; pass --data or set FERKIT_DATA")
    return data


def need_video(video: Path) -> Path:
    """The video a benchmark reads, or a one-line error naming the option that gives it."""
    if not video.is_file():
        raise VideoError(f"{video}: no such video; pass --video or set FERKIT_DATA")
    return video


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


if __name__ == "__main__":
    app()

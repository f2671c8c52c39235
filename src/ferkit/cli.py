"""The `ferkit` command: one verb per job. Expected failures print one line and exit with code 2."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import cv2
import typer
from rich.console import Console
from rich.table import Table

from .recognize import DETECT_EVERY

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Facial expression recognition: 7 emotions from faces.")
err = Console(stderr=True)
out = Console()


@contextmanager
def clean_errors() -> Iterator[None]:
    """Turn the errors a user can cause (bad files, bad options, a file system that says no) into one
    line and exit code 2. OpenCV and FFmpeg are told to keep their own warnings to themselves, so
    that line is all the user sees."""
    from .data import DataError
    from .recognize import ImageError, ModelError
    from .video import VideoError

    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when OpenCV first opens a video
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    except (DataError, ModelError, ImageError, VideoError, OSError, ValueError) as e:
        err.print(f"[red]error:[/red] {os_error(e) if isinstance(e, OSError) else e}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def os_error(e: OSError) -> str:
    """One line for a failed file operation. mkdir's "File exists" (or "Not a directory") means a
    file stands where a folder must go: name that file."""
    if not e.strerror or not e.filename:  # raised by ferkit with its own message
        return str(e)
    if isinstance(e, (FileExistsError, NotADirectoryError)):
        blocker = next((p for p in (Path(e.filename), *Path(e.filename).parents) if p.is_file()), None)
        if blocker is not None:
            return f"{blocker} is a file, so nothing can be written under it"
    return f"{e.filename}: {e.strerror}"


@app.command()
def train(
    data: Path = typer.Option(..., help="fer2013.npz, fer2013.csv or an image folder (train/<emotion>/...)."),
    model: str = typer.Option("resnet_fer", help="Architecture from the registry (see `ferkit benchmark`)."),
    name: str = typer.Option("", help="Run name: the run lives in RUNS_DIR/NAME (default: the model name)."),
    runs_dir: Path = typer.Option(Path("runs"), help="Folder for runs."),
    epochs: int = typer.Option(60, min=1),
    batch_size: int = typer.Option(64, min=1),
    optimizer: str = typer.Option("sgd", help="sgd or adamw."),
    lr: float = typer.Option(0.05, help="Peak learning rate (after warm-up; cosine decay to 0)."),
    weight_decay: float = typer.Option(5e-4),
    warmup_epochs: float = typer.Option(1.0),
    label_smoothing: float = typer.Option(0.1),
    balance: bool = typer.Option(False, help="Class-balanced loss weights (inverse square root of class frequency)."),
    mixup: float = typer.Option(0.0, help="Mixup alpha; 0 turns it off."),
    erasing: float = typer.Option(0.5, help="Probability of random erasing."),
    rotation: float = typer.Option(15.0, help="Max rotation, degrees."),
    shift: float = typer.Option(0.1, help="Max shift, fraction of the size."),
    zoom: float = typer.Option(0.15, help="Max zoom in or out, fraction."),
    brightness: float = typer.Option(0.25, help="Max brightness/contrast change."),
    target_acc: Optional[float] = typer.Option(None, help="Stop once PublicTest accuracy reaches this fraction."),
    patience: Optional[int] = typer.Option(None, help="Stop after this many epochs without PublicTest improvement."),
    subset: Optional[int] = typer.Option(None, help="Train on a stratified subset of this many images."),
    ferplus: Optional[Path] = typer.Option(None, help="fer2013new.csv: train on FER+ majority labels."),
    soft_labels: bool = typer.Option(False, help="With --ferplus: train on the vote distributions."),
    pretrained: Optional[Path] = typer.Option(None, help="Weights to start from: a checkpoint (matching names and shapes), an exported .onnx file of the same --model, or a shipped model by name (fer2013, ferplus)."),
    ema: float = typer.Option(0.0, min=0.0, max=0.99999, help="Score and save an exponential moving average of the weights with this decay per step (e.g. 0.999); 0 turns it off."),
    teacher: Optional[list[Path]] = typer.Option(None, help="A trained checkpoint (best.pt) to distil from, or fer2013new.csv to learn FER+'s ten annotators' votes beside the FER2013 labels; repeat it for several teachers."),
    distill: float = typer.Option(0.5, min=0.0, max=1.0, help="With --teacher: weight of the teachers' probabilities in the target (the label has the rest)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    bf16: str = typer.Option("auto", help="auto (where the hardware has bf16), on or off."),
    resume: bool = typer.Option(False, help="Continue the run RUNS_DIR/NAME from its last checkpoint."),
) -> None:
    """Train a model on FER2013's Training split, choosing the checkpoint on PublicTest."""
    from .train import TrainConfig, train as run

    cfg = TrainConfig(
        data=str(data), model=model, name=name, runs_dir=str(runs_dir), epochs=epochs, batch_size=batch_size,
        optimizer=optimizer, lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing, balance=balance, mixup=mixup, erasing=erasing, rotation=rotation,
        shift=shift, zoom=zoom, brightness=brightness, target_acc=target_acc, patience=patience, subset=subset,
        ferplus=str(ferplus) if ferplus else None, soft_labels=soft_labels,
        pretrained=str(pretrained) if pretrained else None, ema=ema, teachers=tuple(str(t) for t in teacher or ()), distill=distill, seed=seed, device=device, bf16=bf16,
    )
    with clean_errors():
        best = run(cfg, resume=resume)
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
    from .evaluate import evaluate as run, write_reports

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
    from .export import export as run

    with clean_errors():
        card = run(checkpoint, output, data=data, ferplus=ferplus)
    out.print(f"wrote {output} and {output.with_suffix('.json')}")
    if "onnx_check" in card:
        c = card["onnx_check"]
        out.print(f"ONNX vs torch on {c['split']}: top-1 agreement {c['top1_agreement']:.2%}, max probability difference {c['max_prob_diff']:.2e}")
        m = card["metrics"]
        out.print(f"{c['split']} ({m['labels']} labels): accuracy {m[c['split'] + '_accuracy']:.2%}, with TTA {m[c['split'] + '_tta_accuracy']:.2%}")


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def find_images(sources: list[Path], warn: Callable[[str], None]) -> list[tuple[Path, Path]]:
    """Files as given, and the images inside folders (recursively, sorted), each with the path its
    annotated copy keeps (relative to the folder given, so same-named files in subfolders don't clash).
    A folder that cannot be listed is passed to `warn`; anything named like an image that is not a
    plain file (a FIFO, say) is kept, for the reader to report."""

    def unreadable(e: OSError) -> None:
        warn(f"{e.filename}: cannot read the folder ({e.strerror})")

    found = []
    for source in sources:
        if source.is_dir():
            inside = [Path(folder) / name for folder, _, names in os.walk(source, onerror=unreadable) for name in names]
            found += [(p, p.relative_to(source)) for p in sorted(inside) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif source.exists():
            found.append((source, Path(source.name)))
        else:
            raise FileNotFoundError(f"{source}: no such file or folder")
    return found


def recognizer_options(
    model: Optional[list[Path]], detector: str, min_face: int, min_score: Optional[float], margin: float, tta: bool,
    detect_size: Optional[int] = None,
) -> dict:
    return {"model": list(model) if model else None, "detector": detector, "min_face": min_face,
            "min_score": min_score, "margin": margin, "tta": tta, "detect_size": detect_size}


ModelOpt = typer.Option(
    None, "--model", help="ONNX model(s), or a shipped one by name: fer2013 (the default) or ferplus; several = averaged ensemble."
)
DetectorOpt = typer.Option("haar", help="Face detector: haar (fastest) or centerface (finds more faces).")
MinFaceOpt = typer.Option(40, help="Smallest face to detect, pixels.")
MinScoreOpt = typer.Option(None, help="Lowest detector score to keep (default: the detector's own).")
StreamDetectSizeOpt = typer.Option(320, help="Search for faces in frames shrunk to at most this many pixels wide or high (speed).")
DetectEveryOpt = typer.Option(
    DETECT_EVERY, min=1, help="Search the whole frame for faces every Nth frame; known faces are followed between (1: search every frame)."
)
MarginOpt = typer.Option(0.0, help="Grow each face box by this fraction per side before cropping.")
TtaOpt = typer.Option(False, help="Test-time augmentation (mirror and shifted crops): slower, a little more accurate.")


@app.command()
def predict(
    sources: Optional[list[Path]] = typer.Argument(None, help="Images or folders (recursive). Default: the bundled sample photo."),
    output: Optional[Path] = typer.Option(None, "--out", help="Write results to a .jsonl or .csv file (default: JSON lines on stdout)."),
    save: Optional[Path] = typer.Option(None, help="Folder for annotated copies of the images."),
    show_all: bool = typer.Option(False, "--all", help="Draw bars of all 7 emotions beside each face."),
    model: Optional[list[Path]] = ModelOpt,
    detector: str = DetectorOpt,
    min_face: int = MinFaceOpt,
    min_score: Optional[float] = MinScoreOpt,
    margin: float = MarginOpt,
    tta: bool = TtaOpt,
) -> None:
    """Recognise the emotion of every face in images or folders of images."""
    from collections import Counter

    from rich.progress import track

    from .annotate import draw
    from .recognize import ASSETS, EmotionRecognizer, ImageError, read_image
    from .report import ResultWriter, same_file

    with clean_errors():
        paths = find_images(sources or [ASSETS / "sample.jpg"], lambda message: err.print(f"[yellow]skipped:[/yellow] {message}", highlight=False, soft_wrap=True))
        clash = next((p for p, _ in paths if output is not None and same_file(output, p)), None)
        if clash is not None:
            raise ValueError(f"{output}: that is the input image {clash}; writing results there would destroy it")
        recognizer = EmotionRecognizer(**recognizer_options(model, detector, min_face, min_score, margin, tta))
        labels, failed = Counter(), 0
        with ResultWriter(output, recognizer.labels) as writer:
            for path, relative in track(paths, description="images", console=err, disable=len(paths) < 2 or not err.is_terminal):
                try:
                    image = read_image(path)
                    faces = recognizer.predict(image)
                except ImageError as e:
                    err.print(f"[yellow]skipped:[/yellow] {e}", highlight=False, soft_wrap=True)
                    writer.write([str(path)], error=str(e))
                    failed += 1
                    continue
                labels.update(f.label for f in faces)
                writer.write([str(path)], faces)
                if save:
                    target = save / relative.with_name(relative.stem + "_ferkit.jpg")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    cv2_write(target, draw(image, faces, show_all))
    counts = ", ".join(f"{k} {v}" for k, v in labels.most_common())
    faces = sum(labels.values())
    err.print(f"{plural(len(paths), 'image')}, {plural(faces, 'face')}" + (f" ({counts})" if counts else "") + (f", {failed} unreadable" if failed else ""))
    if failed == len(paths):
        err.print(f"[red]error:[/red] {'no image could be read' if paths else 'no images found'}")
        raise typer.Exit(2)


@app.command()
def video(
    source: Path = typer.Argument(..., help="Video file."),
    output: Optional[Path] = typer.Option(None, "--out", help="Annotated video (.mp4)."),
    results: Optional[Path] = typer.Option(None, "--csv", help="Per-frame, per-track results (.csv, or .jsonl)."),
    show_all: bool = typer.Option(False, "--all", help="Draw bars of all 7 emotions beside each face."),
    model: Optional[list[Path]] = ModelOpt,
    detector: str = DetectorOpt,
    min_face: int = MinFaceOpt,
    min_score: Optional[float] = MinScoreOpt,
    margin: float = MarginOpt,
    tta: bool = TtaOpt,
    detect_every: int = DetectEveryOpt,
    detect_size: int = StreamDetectSizeOpt,
) -> None:
    """Recognise emotions in every frame of a video, tracking each face."""
    from .recognize import EmotionRecognizer
    from .video import process_video

    with clean_errors():
        recognizer = EmotionRecognizer(**recognizer_options(model, detector, min_face, min_score, margin, tta, detect_size))
        summary = process_video(source, recognizer, output, results, show_all, progress=err.is_terminal, detect_every=detect_every)
    labels = ", ".join(f"{k} {v}" for k, v in sorted(summary["labels"].items(), key=lambda kv: -kv[1]))
    err.print(f"{plural(summary['frames'], 'frame')}, {plural(summary['faces'], 'face')} in {plural(summary['tracks'], 'track')}"
              + (f" ({labels})" if labels else "") + f", {summary['fps']:.1f} FPS")
    if not summary["complete"]:
        err.print(f"[yellow]warning:[/yellow] the video broke off after {summary['frames']} of {summary['expected_frames']} frames; results cover those")
    for path in (output, results):
        if path:
            err.print(f"wrote {path}")


@app.command()
def webcam(
    camera: int = typer.Option(0, help="Camera index."),
    source: Optional[Path] = typer.Option(None, help="A video file to use as the camera instead."),
    loop: bool = typer.Option(False, help="With --source: start the file again at its end."),
    shots: Path = typer.Option(Path("screenshots"), help="Folder for screenshots (key S)."),
    show_all: bool = typer.Option(False, "--all", help="Start with all-emotion bars shown (key A)."),
    model: Optional[list[Path]] = ModelOpt,
    detector: str = DetectorOpt,
    min_face: int = MinFaceOpt,
    min_score: Optional[float] = MinScoreOpt,
    margin: float = MarginOpt,
    tta: bool = TtaOpt,
    detect_every: int = DetectEveryOpt,
    detect_size: int = StreamDetectSizeOpt,
) -> None:
    """Live window: emotions of the faces in front of the camera. Keys: Q/ESC, S, A, SPACE."""
    from .recognize import EmotionRecognizer
    from .webcam import run

    with clean_errors():
        if source is not None and not source.is_file():
            raise FileNotFoundError(f"{source}: no such file")
        recognizer = EmotionRecognizer(**recognizer_options(model, detector, min_face, min_score, margin, tta, detect_size))
        code = run(str(source) if source else camera, recognizer, shots, show_all, loop=loop, detect_every=detect_every,
                   log=lambda s: print(s, flush=True))
    raise typer.Exit(code)


@app.command()
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
    model: Optional[list[Path]] = ModelOpt,
    detector: str = DetectorOpt,
    min_face: int = MinFaceOpt,
    min_score: Optional[float] = MinScoreOpt,
    margin: float = MarginOpt,
    tta: bool = TtaOpt,
) -> None:
    """Web app (live camera in the browser, image upload) and REST API at http://HOST:PORT/."""
    import uvicorn

    from .recognize import EmotionRecognizer
    from .server import ANY_ADDRESS, Limits, create_app, trusted_hosts

    with clean_errors():
        recognizer = EmotionRecognizer(**recognizer_options(model, detector, min_face, min_score, margin, tta))
        limits = Limits(int(max_upload_mb * 1024 * 1024), int(max_megapixels * 1_000_000), upload_timeout, max_uploads)
    err.print(f"ferkit web app on http://{host}:{port}/  (API docs: /docs)")
    if host in ANY_ADDRESS and not allowed_host:
        err.print("[yellow]note:[/yellow] only requests to a loopback name are answered; add --allowed-host NAME for each name or address clients use")
    # Idle keep-alive connections close after 5 s; past 256 connections new requests get 503.
    uvicorn.run(create_app(recognizer, limits, trusted_hosts(host, allowed_host or [])), host=host, port=port,
                log_level="warning", timeout_keep_alive=5, limit_concurrency=256)


@app.command()
def benchmark(
    what: str = typer.Argument(..., help="models, pipeline, server or soak."),
    models: Optional[list[str]] = typer.Option(None, "--models", help="models: which registered models (default: all)."),
    video: Path = typer.Option(Path(os.environ.get("FERKIT_DATA", "../shared/data")) / "face_talking_854x480.mp4",
                               help="pipeline: the video the 640x480 test clips are made from."),
    frames: int = typer.Option(300, help="pipeline: frames per test clip."),
    peer: Optional[str] = typer.Option(None, help="pipeline: a Python with the `fer` package (benchmarks/peer_setup.sh) to time it too."),
    model: Optional[list[Path]] = ModelOpt,
    clients: int = typer.Option(50, help="server, soak: concurrent well-behaved clients."),
    seconds: float = typer.Option(30.0, help="server, soak: duration."),
    upload_timeout: float = typer.Option(30.0, help="soak: the server's --upload-timeout (the slow clients are cut off after it)."),
    bf16: str = typer.Option("auto", help="models: bf16 autocast in the training steps: auto, on or off."),
) -> None:
    """Print speed tables: model training/inference, pipeline FPS per stage, REST API under load, and
    a soak of the REST API beside slow and malicious clients."""
    from . import benchmark as bench

    with clean_errors():
        if what == "models":
            table = bench.models_table(models, bf16=bf16)
        elif what == "pipeline":
            if not video.is_file():
                raise FileNotFoundError(f"{video}: no such video; pass --video or set FERKIT_DATA")
            table = bench.pipeline_table(video, frames, list(model) if model else None, peer=peer)
        elif what == "server":
            table = bench.server_table(clients, seconds)
        elif what == "soak":
            table = bench.soak_table(clients, seconds, upload_timeout=upload_timeout)
        else:
            raise ValueError(f"unknown benchmark {what!r}; choose models, pipeline, server or soak")
    Console(width=160).print(table)


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def cv2_write(path: Path, image) -> None:
    ok, data = cv2.imencode(path.suffix, image)
    if not ok:
        raise ValueError(f"{path}: cannot encode the annotated image")
    path.write_bytes(data.tobytes())


if __name__ == "__main__":
    app()

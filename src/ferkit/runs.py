"""A training run's record: its config (`TrainConfig`, the one source of `ferkit train`'s options),
its log, the runs it continues, and the command that reproduces it. No torch here: the CLI
builds its options from `TrainConfig`, and export and evaluate read runs without training.

A run lives in `runs/<name>/`: `config.json`, `log.csv` (one row per epoch), `last.pt` and `best.pt`.
"""

from __future__ import annotations

import csv
import os
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from .classify import model_path

LOG_FIELDS = ("epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


@dataclass
class TrainConfig:
    """Everything a run is trained with. Each field is one `ferkit train` option (its help, bounds
    and flag in the metadata) and one flag of `train_command`; `runs_dir` is where, not how."""

    data: str = field(metadata={"type": Path, "help": "fer2013.npz, fer2013.csv or an image folder (train/<emotion>/...)."})
    model: str = field(default="resnet_fer_w48", metadata={"help": "Architecture from the registry (see `ferkit benchmark models`); the default is the shipped model's."})
    name: str = field(default="", metadata={"help": "Run name: the run lives in RUNS_DIR/NAME (default: the model name)."})
    runs_dir: str = field(default="runs", metadata={"type": Path, "help": "Folder for runs."})
    epochs: int = field(default=60, metadata={"min": 1})
    batch_size: int = field(default=64, metadata={"min": 1})
    optimizer: str = field(default="sgd", metadata={"help": "sgd or adamw."})
    lr: float = field(default=0.05, metadata={"help": "Peak learning rate (after warm-up; cosine decay to 0)."})
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    balance: bool = field(default=False, metadata={"flag": "--balance", "help": "Class-balanced loss weights (inverse square root of class frequency)."})
    mixup: float = field(default=0.0, metadata={"help": "Mixup alpha; 0 turns it off."})
    erasing: float = field(default=0.5, metadata={"help": "Probability of random erasing."})
    rotation: float = field(default=15.0, metadata={"help": "Max rotation, degrees."})
    shift: float = field(default=0.1, metadata={"help": "Max shift, fraction of the size."})
    zoom: float = field(default=0.15, metadata={"help": "Max zoom in or out, fraction."})
    brightness: float = field(default=0.25, metadata={"help": "Max brightness/contrast change."})
    low_res: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0, "help": "Probability of shrinking a face to 16-40 px and enlarging it back, as small faces in photos reach the model; 0: never."})
    target_acc: float | None = field(default=None, metadata={"help": "Stop once PublicTest accuracy reaches this fraction."})
    patience: int | None = field(default=None, metadata={"help": "Stop after this many epochs without PublicTest improvement."})
    subset: int | None = field(default=None, metadata={"help": "Train on a stratified subset of this many images."})
    ferplus: str | None = field(default=None, metadata={"type": Optional[Path], "help": "fer2013new.csv: train on FER+ majority labels."})
    soft_labels: bool = field(default=False, metadata={"flag": "--soft-labels", "help": "With --ferplus: train on the vote distributions."})
    pretrained: str | None = field(default=None, metadata={"type": Optional[Path], "help": "Weights to start from: a checkpoint (matching names and shapes), an exported .onnx file of the same --model, or a shipped model by name (fer2013, ferplus)."})
    ema: float = field(default=0.0, metadata={"min": 0.0, "max": 0.99999, "help": "Score and save an exponential moving average of the weights with this decay per step (e.g. 0.999); 0 turns it off."})
    time_budget: float | None = field(default=None, metadata={"min": 1.0, "help": "Train for this many seconds of wall-clock time instead of --epochs: warm-up, then cosine decay by the clock, so the run ends fully decayed when the time is spent (a GPU lease, say)."})
    compile: bool = field(default=False, metadata={"flag": "--compile", "help": "torch.compile the model: faster steps on a GPU after a minute of compiling."})
    teachers: tuple[str, ...] = field(default=(), metadata={"flag": "--teacher", "type": Optional[list[Path]], "help": "A trained checkpoint (best.pt) to distil from, or fer2013new.csv to learn FER+'s ten annotators' votes beside the FER2013 labels; repeat it for several teachers."})
    distill: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0, "help": "With --teacher: weight of the teachers' probabilities in the target (the label has the rest)."})
    seed: int = 0
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda."})
    bf16: str = field(default="auto", metadata={"help": "auto (where the hardware has bf16), on or off."})

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_dir) / (self.name or self.model)


def read_config(run_dir: Path) -> TrainConfig:
    """A run's saved config (fields a newer ferkit no longer has are left out; JSON's lists as the tuples they were)."""
    saved = json.loads((run_dir / "config.json").read_text())
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known})


def write_log(path: Path, rows: list[dict]) -> None:
    """Write the whole log, atomically: a kill leaves the old log or the new one, never half a row.
    Training writes it from the rows its checkpoint holds, so the two always agree."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def log_until(path: Path, epochs_done: int) -> list[dict]:
    """The log rows up to a checkpoint that does not hold its log (one saved before checkpoints did)."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if int(r["epoch"]) <= epochs_done]


def read_log(path: Path) -> list[dict[str, float]]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def checkpoint_log(checkpoint: str | Path) -> Path | None:
    """The log of the run a checkpoint came from: its run folder's log.csv, or `<name>.log.csv` beside
    a checkpoint kept outside its run (as ../shared/models keeps the GPU-trained ones)."""
    path = Path(checkpoint)
    return next((log for log in (path.parent / "log.csv", path.with_suffix(".log.csv")) if log.is_file()), None)


def train_command(config: dict) -> str:
    """The `ferkit train` command line that reproduces a run's config (defaults left out), with the
    flags `TrainConfig` declares for `ferkit train`."""
    parts = ["ferkit train"]
    for f in fields(TrainConfig):
        value = config.get(f.name, f.default)
        if f.name == "runs_dir" or value == f.default:
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        if f.name == "pretrained":
            value = run_path(value)
        if f.name == "teachers":
            parts.extend(f"{flag} {run_path(t)}" for t in value)
        elif isinstance(value, bool):
            parts.append(flag if value else f"--no-{f.name.replace('_', '-')}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def run_path(checkpoint: str) -> str:
    """A ferkit run's checkpoint as it lies in the default runs folder (`runs/<name>/best.pt`);
    any other file as given."""
    run = Path(checkpoint).parent
    return f"runs/{run.name}/{Path(checkpoint).name}" if (run / "config.json").is_file() else checkpoint


def parent_run(config: dict) -> Path | None:
    """The ferkit run whose checkpoint a run was started `--pretrained` from, if it was one."""
    run = Path(config["pretrained"]).parent if config.get("pretrained") else None
    return run if run is not None and (run / "config.json").is_file() else None


def lineage(checkpoint: str | Path, config: dict) -> list[dict]:
    """The training runs behind a checkpoint, oldest first: a run started `--pretrained` from another
    ferkit run's checkpoint continues that run, so reproducing it takes both commands. A run started
    from an exported model (a shipped one, say) continues the stages its card lists."""
    log = checkpoint_log(checkpoint)
    stages = []
    while True:
        rows = read_log(log) if log else []
        stages.insert(0, {"command": train_command(config), "epochs_run": len(rows),
                          "hours": round(sum(r["seconds"] for r in rows) / 3600, 2),
                          "log": [{k: round(v, 4) for k, v in r.items()} for r in rows]})
        parent = parent_run(config)
        if parent is None:
            break
        log, config = checkpoint_log(parent / "best.pt"), json.loads((parent / "config.json").read_text())
    start = model_path(config["pretrained"]) if config.get("pretrained") else None
    card = start.with_suffix(".json") if start is not None and start.suffix == ".onnx" else None
    if card is not None and card.is_file():
        earlier = json.loads(card.read_text())
        stages[0]["started_from"] = {"model": start.name, "sha256": earlier.get("sha256")}
        stages = earlier.get("training", {}).get("stages", []) + stages
    return stages

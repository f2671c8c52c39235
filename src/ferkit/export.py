"""Export a training checkpoint to ONNX with a JSON model card, and prove ONNX Runtime agrees with torch."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from .data import EMOTIONS, IMAGE_SIZE, MEAN, STD, load
from .evaluate import label_source, metrics, predict, read_log
from .models import count_parameters, create_model, load_state
from .recognize import EmotionClassifier, ModelError, model_path, softmax
from .report import same_file
from .train import TrainConfig, pick_device, predict_logits


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint was trained as, with its weights, in eval mode."""
    state = load_state(path)
    if "model" not in state or "config" not in state:
        raise ModelError(f"{path}: not a ferkit training checkpoint")
    model = create_model(state["config"]["model"], len(EMOTIONS))
    model.load_state_dict(state["model"])
    return model.eval(), state


def train_command(config: dict) -> str:
    """The `ferkit train` command line that reproduces a run's config (defaults left out)."""
    parts = ["ferkit train"]
    for f in fields(TrainConfig):
        value = config.get(f.name, f.default)
        if f.name == "runs_dir" or value == f.default:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name == "pretrained":
            value = run_path(value)
        if f.name == "teachers":
            parts.extend(f"--teacher {run_path(t)}" for t in value)
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
    run = Path(checkpoint).parent
    stages = []
    while True:
        log = run / "log.csv"
        rows = read_log(log) if log.is_file() else []
        stages.insert(0, {"command": train_command(config), "epochs_run": len(rows),
                          "hours": round(sum(r["seconds"] for r in rows) / 3600, 2),
                          "log": [{k: round(v, 4) for k, v in r.items()} for r in rows]})
        parent = parent_run(config)
        if parent is None:
            break
        run, config = parent, json.loads((parent / "config.json").read_text())
    start = model_path(config["pretrained"]) if config.get("pretrained") else None
    card = start.with_suffix(".json") if start is not None and start.suffix == ".onnx" else None
    if card is not None and card.is_file():
        earlier = json.loads(card.read_text())
        stages[0]["started_from"] = {"model": start.name, "sha256": earlier.get("sha256")}
        stages = earlier.get("training", {}).get("stages", []) + stages
    return stages


def hardware() -> str:
    import os
    import platform

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    gpu = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export(
    checkpoint: str | Path, out: str | Path, data: str | Path | None = None, split: str = "PrivateTest",
    ferplus: str | Path | None = None,
) -> dict:
    """Write `out` (.onnx) and its card (`out` with .json); with `data`, compare ONNX and torch on `split`
    and score the ONNX file there (on FER+ majority labels for a model trained on them)."""
    out = Path(out)
    if same_file(out, Path(checkpoint)):
        raise ModelError(f"{out}: that is the checkpoint; writing there would destroy it")
    out.parent.mkdir(parents=True, exist_ok=True)
    model, state = load_checkpoint(checkpoint)
    dummy = torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE)
    torch.onnx.export(
        model,
        (dummy,),
        str(out),
        input_names=["faces"],
        output_names=["logits"],
        dynamic_axes={"faces": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    config = state["config"]
    card = {
        "name": out.stem,
        "architecture": config["model"],
        "parameters": count_parameters(model),
        "labels": list(EMOTIONS),
        "input": {"name": "faces", "shape": [None, 1, IMAGE_SIZE, IMAGE_SIZE], "color": "gray",
                  "normalisation": f"(pixel / 255 - {MEAN}) / {STD}", "mean": MEAN, "std": STD},
        "output": "logits (apply softmax for probabilities)",
        "epochs_trained": state["epoch"],
        "metrics": {"PublicTest_accuracy": round(float(state["val_acc"]), 4)} if "val_acc" in state else {},
        "training_command": train_command(config),
        "training_data": Path(config["data"]).name + (f" + FER+ {Path(config['ferplus']).name}" if config.get("ferplus") else ""),
    }
    stages = lineage(checkpoint, config)
    if any(stage["log"] for stage in stages):
        card["training"] = {"hours": round(sum(stage["hours"] for stage in stages), 2), "hardware": hardware(), "stages": stages}
    if data is not None:
        ferplus = scoring_labels(config, ferplus)
        part = load(data, ferplus=ferplus).split(split)
        classifier = EmotionClassifier(out)
        card["onnx_check"] = compare(model, classifier, part.pixels, split)
        card["metrics"]["labels"] = label_source(ferplus)
        for tta in (False, True):
            report = metrics(part.labels, predict(classifier, part.pixels, tta))
            key = f"{split}{'_tta' if tta else ''}"
            card["metrics"][f"{key}_accuracy"] = round(report["accuracy"], 4)
            card["metrics"][f"{key}_macro_f1"] = round(report["macro_f1"], 4)
            if not tta:
                card["metrics"][f"{split}_per_class"] = {
                    k: {m: round(v, 4) if isinstance(v, float) else v for m, v in d.items()} for k, d in report["per_class"].items()
                }
                card["metrics"][f"{split}_confusion"] = report["confusion"]
    card["sha256"] = sha256(out)
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def scoring_labels(config: dict, ferplus: str | Path | None) -> str | Path | None:
    """The FER+ file to score against: the one given, else the one a FER+ run was trained on (a FER+
    model scored on FER2013's own labels would be judged on a task it was not taught)."""
    if ferplus is not None or not config.get("ferplus"):
        return ferplus
    if not Path(config["ferplus"]).is_file():
        raise FileNotFoundError(f"{config['ferplus']}: this model was trained on FER+ labels; pass --ferplus fer2013new.csv to score it")
    return config["ferplus"]


def compare(model: torch.nn.Module, classifier: EmotionClassifier, faces: np.ndarray, split: str) -> dict:
    """Top-1 agreement and largest probability difference between torch and ONNX Runtime on a split."""
    torch_probs = softmax(predict_logits(model.to(memory_format=torch.channels_last), faces, pick_device("cpu")).astype(np.float64))
    onnx_probs = classifier.predict_proba(faces)
    return {
        "split": split,
        "images": len(faces),
        "top1_agreement": float((torch_probs.argmax(1) == onnx_probs.argmax(1)).mean()),
        "max_prob_diff": float(np.abs(torch_probs - onnx_probs).max()),
    }

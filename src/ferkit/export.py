"""Export a training checkpoint to ONNX with a JSON model card, and prove ONNX Runtime agrees with torch."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from .checkpoints import hardware, load_checkpoint, pick_device, predict_logits
from .classify import EmotionClassifier, softmax
from .data import EMOTIONS, IMAGE_SIZE, MEAN, STD, load
from .errors import DataError, ModelError
from .evaluate import label_source, metrics, predict
from .models import count_parameters
from .results import same_file
from .runs import lineage, train_command


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
    config = state["config"]
    if data is not None:  # before anything is written: a refusal leaves no card-less file
        ferplus = scoring_labels(config, ferplus)
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
    if "provenance" in state:  # where, how long and on what schedule the checkpoint was trained
        card["provenance"] = state["provenance"]
    stages = lineage(checkpoint, config)
    if any(stage["log"] for stage in stages):
        made_on = state.get("provenance", {}).get("hardware") or hardware(pick_device("cpu"))
        card["training"] = {"hours": round(sum(stage["hours"] for stage in stages), 2), "hardware": made_on, "stages": stages}
    if data is not None:
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
        raise DataError(f"{config['ferplus']}: this model was trained on FER+ labels; pass --ferplus fer2013new.csv to score it")
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

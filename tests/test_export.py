from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import SMALL_SPLITS, ferkit
from ferkit.data import EMOTIONS
from ferkit.errors import DataError
from ferkit.evaluate import evaluate
from ferkit.export import export
from ferkit.runs import TrainConfig
from ferkit.train import train


def test_onnx_agrees_with_torch_on_private_test(tiny_onnx: Path) -> None:
    card = json.loads(tiny_onnx.with_suffix(".json").read_text())
    check = card["onnx_check"]
    assert check["split"] == "PrivateTest" and check["images"] == SMALL_SPLITS["PrivateTest"]
    assert check["top1_agreement"] == 1.0 and check["max_prob_diff"] < 1e-4


def test_card_describes_the_file(tiny_onnx: Path) -> None:
    card = json.loads(tiny_onnx.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert card["labels"] == list(EMOTIONS) and card["input"]["shape"] == [None, 1, 48, 48]
    assert card["architecture"] == "tiny_cnn" and card["training_command"].startswith("ferkit train ")
    assert "--model tiny_cnn" in card["training_command"] and "--subset 1000" in card["training_command"]
    # Any batch size goes through the exported graph.
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        (out,) = session.run(None, {"faces": np.zeros((n, 1, 48, 48), np.float32)})
        assert out.shape == (n, 7)


def train_tiny(data: Path, runs: Path, name: str, **options: object) -> Path:
    """One epoch of tiny_cnn on 1,000 images, in this process (the CLI's own train and export runs
    are the `tiny_run` and `tiny_onnx` fixtures): its best checkpoint."""
    return train(TrainConfig(data=str(data), model="tiny_cnn", epochs=1, subset=1000, runs_dir=str(runs), name=name, **options))


def test_card_lists_every_run_behind_a_warm_restart(tiny_run: Path, small_data: Path, tmp_path: Path) -> None:
    """A run started --pretrained from another run continues it: the card gives both commands and both times
    (and the teacher it distilled from, by where a ferkit run lies)."""
    best = str(tiny_run / "best.pt")
    again = train_tiny(small_data, tiny_run.parent, "tiny_again", lr=0.01, pretrained=best, teachers=(best,), distill=0.4)
    out = tiny_run.parent / "tiny_again" / "again.onnx"
    export(again, out)
    training = json.loads(out.with_suffix(".json").read_text())["training"]
    first, second = training["stages"]
    assert "--pretrained" not in first["command"] and "--pretrained runs/tiny/best.pt" in second["command"]
    assert "--teacher runs/tiny/best.pt --distill 0.4" in second["command"] and "--teacher" not in first["command"]
    assert first["epochs_run"] == second["epochs_run"] == 1
    assert training["hours"] == round(first["hours"] + second["hours"], 2)
    assert first["log"][0]["seconds"] > 0 and second["log"][0]["seconds"] > 0

    # A third stage started from an exported file outside any run (as from a shipped model) continues
    # the stages its card lists.
    shipped = tmp_path / "assets" / "shipped.onnx"
    shipped.parent.mkdir()
    shutil.copy(out, shipped)
    shutil.copy(out.with_suffix(".json"), shipped.with_suffix(".json"))
    third = train_tiny(small_data, tiny_run.parent, "tiny_third", lr=0.01, pretrained=str(shipped))
    third_out = tiny_run.parent / "tiny_third" / "third.onnx"
    export(third, third_out)
    stages = json.loads(third_out.with_suffix(".json").read_text())["training"]["stages"]
    assert [s["command"] for s in stages[:2]] == [first["command"], second["command"]]
    assert f"--pretrained {shipped}" in stages[2]["command"]
    assert stages[2]["started_from"] == {"model": "shipped.onnx", "sha256": json.loads(out.with_suffix(".json").read_text())["sha256"]}


def test_ferplus_model_is_scored_on_ferplus_labels(tiny_run: Path, small_data: Path, small_ferplus: Path, tmp_path: Path) -> None:
    """A model taught FER+ labels is scored on them: with the file its run read, or one given where that is gone."""
    checkpoint = train_tiny(small_data, tiny_run.parent, "tiny_plus", ferplus=str(small_ferplus), soft_labels=True)
    out = tmp_path / "plus.onnx"
    card = export(checkpoint, out, data=small_data)
    report = evaluate(small_data, [out], ferplus=small_ferplus)
    assert card["metrics"]["labels"] == "FER+ majority" and "--soft-labels" in card["training_command"]
    assert card["onnx_check"]["images"] == report["images"] < SMALL_SPLITS["PrivateTest"] and card["onnx_check"]["top1_agreement"] == 1.0
    assert card["metrics"]["PrivateTest_accuracy"] == round(report["accuracy"], 4)

    # The run's FER+ file has moved: a clear one-line error, and --ferplus names it.
    state = torch.load(checkpoint, weights_only=True)
    state["config"]["ferplus"] = str(tmp_path / "gone" / "fer2013new.csv")
    torch.save(state, tmp_path / "moved.pt")
    with pytest.raises(DataError, match="trained on FER\\+ labels; pass --ferplus"):  # the CLI's one line (test_cli)
        export(tmp_path / "moved.pt", tmp_path / "moved.onnx", data=small_data)
    assert not (tmp_path / "moved.onnx").exists()
    moved = export(tmp_path / "moved.pt", tmp_path / "moved.onnx", data=small_data, ferplus=small_ferplus)
    assert moved["metrics"]["PrivateTest_accuracy"] == card["metrics"]["PrivateTest_accuracy"]

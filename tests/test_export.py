from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from conftest import ferkit
from ferkit.data import EMOTIONS


def test_onnx_agrees_with_torch_on_all_of_private_test(tiny_onnx: Path) -> None:
    card = json.loads(tiny_onnx.with_suffix(".json").read_text())
    check = card["onnx_check"]
    assert check["split"] == "PrivateTest" and check["images"] == 3589
    assert check["top1_agreement"] == 1.0 and check["max_prob_diff"] < 1e-4


def test_card_describes_the_file(tiny_onnx: Path) -> None:
    card = json.loads(tiny_onnx.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(tiny_onnx.read_bytes()).hexdigest()
    assert card["labels"] == list(EMOTIONS) and card["input"]["shape"] == [None, 1, 48, 48]
    assert card["architecture"] == "tiny_cnn" and card["training_command"].startswith("ferkit train ")
    assert "--model tiny_cnn" in card["training_command"] and "--subset 2000" in card["training_command"]
    # Any batch size goes through the exported graph.
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        (out,) = session.run(None, {"faces": np.zeros((n, 1, 48, 48), np.float32)})
        assert out.shape == (n, 7)


def test_card_lists_every_run_behind_a_warm_restart(tiny_run: Path, fer_npz: Path) -> None:
    """A run started --pretrained from another run continues it: the card gives both commands and both times."""
    ferkit("train", "--data", fer_npz, "--model", "tiny_cnn", "--epochs", "1", "--subset", "2000", "--lr", "0.01",
           "--runs-dir", tiny_run.parent, "--name", "tiny_again", "--pretrained", tiny_run / "best.pt")
    out = tiny_run.parent / "tiny_again" / "again.onnx"
    ferkit("export", tiny_run.parent / "tiny_again" / "best.pt", "--out", out)
    training = json.loads(out.with_suffix(".json").read_text())["training"]
    first, second = training["stages"]
    assert "--pretrained" not in first["command"] and "--pretrained runs/tiny/best.pt" in second["command"]
    assert first["epochs_run"] == second["epochs_run"] == 1
    assert training["hours"] == round(first["hours"] + second["hours"], 2)
    assert first["log"][0]["seconds"] > 0 and second["log"][0]["seconds"] > 0

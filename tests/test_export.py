from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

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

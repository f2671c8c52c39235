from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ferkit.checkpoints import load_checkpoint, pick_device, predict_logits, save_atomic
from ferkit.errors import ModelError
from ferkit.models import create_model


def test_saved_checkpoint_loads_as_the_model_it_was(tmp_path: Path) -> None:
    model = create_model("tiny_cnn").eval()
    save_atomic({"model": model.state_dict(), "config": {"model": "tiny_cnn"}, "epoch": 1}, tmp_path / "best.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]  # the temporary file was renamed
    loaded, state = load_checkpoint(tmp_path / "best.pt")
    faces = np.random.default_rng(0).integers(0, 256, (5, 48, 48), dtype=np.uint8)
    cpu = pick_device("cpu")
    assert state["epoch"] == 1 and not loaded.training
    assert np.allclose(predict_logits(loaded, faces, cpu), predict_logits(model, faces, cpu), atol=1e-6)


def test_bad_checkpoints_are_model_errors(tmp_path: Path) -> None:
    (tmp_path / "broken.pt").write_bytes(b"garbage")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    for name, message in (("missing.pt", "no such checkpoint"), ("broken.pt", "not a readable checkpoint"),
                          ("other.pt", "not a ferkit training checkpoint")):
        with pytest.raises(ModelError, match=message):
            load_checkpoint(tmp_path / name)

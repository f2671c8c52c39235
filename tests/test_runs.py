from __future__ import annotations

import json
import shlex
from dataclasses import asdict, fields
from pathlib import Path

import pytest

from ferkit.cli import app
from ferkit.runs import LOG_FIELDS, TrainConfig, log_until, read_config, train_command, write_log

EVERY_OPTION = TrainConfig(
    data="d.npz", model="tiny_cnn", name="x", epochs=3, batch_size=32, optimizer="adamw", lr=0.01, weight_decay=0.001,
    warmup_epochs=0.5, label_smoothing=0.0, balance=True, mixup=0.2, erasing=0.25, rotation=10.0, shift=0.05, zoom=0.1,
    brightness=0.2, low_res=0.3, target_acc=0.7, patience=4, subset=2000, ferplus="new.csv", soft_labels=True, pretrained="start.onnx",
    ema=0.999, time_budget=120.0, compile=True, teachers=("a.pt", "b.pt"), distill=0.3, seed=3, device="cpu", bf16="off",
)


def test_every_train_option_reproduces_its_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """`train_command` writes back the options `ferkit train` parses: one declaration, in TrainConfig."""
    import ferkit.train

    assert all(getattr(EVERY_OPTION, f.name) != f.default for f in fields(TrainConfig) if f.name not in ("data", "runs_dir"))
    command = train_command(asdict(EVERY_OPTION))
    assert command.startswith("ferkit train --data d.npz --model tiny_cnn --name x --epochs 3 ")
    assert "--balance" in command and "--teacher a.pt --teacher b.pt" in command and "--runs-dir" not in command
    seen: list[TrainConfig] = []
    monkeypatch.setattr(ferkit.train, "train", lambda config, resume=False: seen.append(config) or Path("best.pt"))
    app(shlex.split(command)[1:], standalone_mode=False)
    assert seen == [EVERY_OPTION]
    assert train_command(asdict(TrainConfig(data="d.npz"))) == "ferkit train --data d.npz"


def test_config_and_log_of_a_run(tmp_path: Path) -> None:
    saved = {**asdict(TrainConfig(data="d.npz", epochs=5)), "gone": "an option an older ferkit had"}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert read_config(tmp_path) == TrainConfig(data="d.npz", epochs=5)
    log = tmp_path / "log.csv"
    write_log(log, [dict(zip(LOG_FIELDS, (epoch, 0.1, 1.0, 0.5, 1.1, 0.4, 60.0))) for epoch in (1, 2, 3)])
    # A checkpoint that does not hold its log, resumed from epoch 2: epoch 3's row goes.
    write_log(log, log_until(log, 2))
    assert [line.split(",")[0] for line in log.read_text().splitlines()] == ["epoch", "1", "2"]

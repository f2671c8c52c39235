from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import ferkit
from ferkit.checkpoints import predict_logits, to_input
from ferkit.classify import SHIPPED_MODELS, EmotionClassifier
from ferkit.data import FERData, load, load_ferplus, with_votes
from ferkit.errors import ModelError, RunError
from ferkit.models import create_model
from ferkit.runs import TrainConfig, train_command
from ferkit.train import LOW_RES_SIDES, augment, class_weights, learning_rate, low_res_maps, recalibrate_bn, refit_batchnorm, teacher_targets, train


def test_training_run_writes_config_log_and_checkpoints(tiny_run: Path) -> None:
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["model"] == "tiny_cnn" and config["subset"] == 1000
    log = (tiny_run / "log.csv").read_text().splitlines()
    assert log[0] == "epoch,lr,train_loss,train_acc,val_loss,val_acc,seconds" and len(log) == 2
    val_acc = float(log[1].split(",")[5])
    best = torch.load(tiny_run / "best.pt", weights_only=True)
    assert best["epoch"] == 1 and np.isclose(best["val_acc"], val_acc)
    # One epoch on 1,000 images already beats always guessing one class of the 7 (chance ~1/7).
    assert val_acc > 0.2


def test_augment_is_seeded_and_normalised(fer: FERData) -> None:
    cfg = TrainConfig(data="")
    faces = torch.from_numpy(fer.pixels[:32])
    a = augment(faces, cfg, torch.Generator().manual_seed(3))
    b = augment(faces, cfg, torch.Generator().manual_seed(3))
    c = augment(faces, cfg, torch.Generator().manual_seed(4))
    assert a.shape == (32, 1, 48, 48) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= -2 and a.max() <= 2  # (0..1 - 0.5) / 0.25
    # With every magnitude at zero only the flip is left: each face is itself or its mirror image.
    still = TrainConfig(data="", rotation=0, shift=0, zoom=0, brightness=0, erasing=0)
    x = augment(faces, still, torch.Generator().manual_seed(3))
    plain = (faces.float().unsqueeze(1) / 255 - 0.5) / 0.25
    same = (x - plain).abs().amax(dim=(1, 2, 3)) < 1e-4
    mirrored = (x - plain.flip(-1)).abs().amax(dim=(1, 2, 3)) < 1e-4
    assert (same | mirrored).all() and same.any() and mirrored.any()
    # --low-res: faces shrunk to 16-40 px and enlarged back keep their light and layout but lose
    # their finest detail (the mean step between neighbouring rows); at 0.5 about half are shrunk.
    def detail(t: torch.Tensor) -> torch.Tensor:
        return (t[..., 1:, :] - t[..., :-1, :]).abs().mean(dim=(1, 2, 3))

    shrunk = augment(faces, replace(still, low_res=1.0), torch.Generator().manual_seed(3))
    assert (detail(shrunk) < 0.9 * detail(x)).all() and (shrunk - x).abs().mean() < 0.2
    half = augment(faces, replace(still, low_res=0.5), torch.Generator().manual_seed(3))
    assert 6 <= ((half - x).abs().amax(dim=(1, 2, 3)) > 1e-4).sum() <= 26


def test_low_res_maps_shrink_and_enlarge_faces_as_interpolation_does(fer: FERData) -> None:
    """--low-res's one product per face is the face shrunk to its side by area and enlarged back bicubically."""
    faces = torch.from_numpy(fer.pixels[:8]).float().unsqueeze(1) / 255
    maps = low_res_maps(48, torch.device("cpu"))
    assert maps.shape == (LOW_RES_SIDES[1] - LOW_RES_SIDES[0] + 1, 48, 48)
    for side in (LOW_RES_SIDES[0], 27, LOW_RES_SIDES[1]):
        m = maps[side - LOW_RES_SIDES[0]]
        expected = F.interpolate(F.interpolate(faces, size=(side, side), mode="area"), size=(48, 48), mode="bicubic", align_corners=False)
        assert torch.allclose(m @ faces @ m.T, expected, atol=1e-5)
        assert not torch.allclose(m @ faces @ m.T, faces, atol=1e-2)  # detail is lost


def test_recalibrate_bn_measures_clean_faces(fer: FERData) -> None:
    """After recalibration a BatchNorm layer's running statistics are those of the clean faces given."""
    bn = torch.nn.BatchNorm2d(1).eval()
    bn.running_mean.fill_(5.0)  # as if trained on something else
    faces = torch.from_numpy(fer.pixels[:512])
    recalibrate_bn(bn, faces, batch=128)
    x = to_input(faces)
    assert torch.allclose(bn.running_mean, x.mean().view(1), atol=1e-4)
    assert torch.allclose(bn.running_var, x.var().view(1), rtol=1e-2)
    assert not bn.training and bn.momentum == 0.1  # mode and momentum are left as they were


def test_teacher_targets_are_the_teachers_mirror_averaged_probabilities(tiny_run: Path, fer: FERData) -> None:
    faces, cpu, best = fer.select(np.arange(256)), torch.device("cpu"), str(tiny_run / "best.pt")
    probs = teacher_targets((best,), faces, cpu)
    assert probs.shape == (256, 7) and torch.allclose(probs.sum(1), torch.ones(256), atol=1e-5)
    # A face and its mirror image get the same target; two copies of one teacher average to that teacher.
    mirrored = replace(faces, pixels=np.ascontiguousarray(faces.pixels[:, :, ::-1]))
    assert torch.allclose(probs, teacher_targets((best,), mirrored, cpu), atol=1e-5)
    assert torch.allclose(probs, teacher_targets((best, best), faces, cpu), atol=1e-6)
    # The targets are the trained model's opinion: its own top class on the unflipped face, nearly always.
    model = create_model("tiny_cnn")
    model.load_state_dict(torch.load(best, weights_only=True)["model"])
    own = predict_logits(model, faces.pixels, cpu).argmax(1)
    assert (probs.argmax(1).numpy() == own).mean() > 0.9 and probs.max(1).values.min() < 0.99


def test_ferplus_votes_teach_beside_fer2013_labels(fer: FERData, small_data: Path, small_ferplus: Path, ferplus_csv: Path, tiny_run: Path) -> None:
    """A FER+ file as a teacher: the ten annotators' vote distribution on each FER2013 row."""
    voted = with_votes(fer, ferplus_csv)
    assert np.array_equal(voted.labels, fer.labels) and len(voted) == len(fer)  # FER2013 labels and rows stay
    cpu, best = torch.device("cpu"), str(tiny_run / "best.pt")
    votes = teacher_targets((str(ferplus_csv),), voted, cpu)
    assert torch.allclose(votes.sum(1), torch.ones(len(fer)), atol=1e-5)
    # Row 0 of fer2013new.csv: neutral 4, sadness 1, anger 3, disgust 2 votes, in our label order.
    assert torch.allclose(votes[0], torch.tensor([0.3, 0.2, 0, 0, 0.1, 0, 0.4]), atol=1e-6)
    # Rows FER+ cannot use (no face, mostly contempt or unknown) keep their FER2013 label as the distribution.
    unusable = np.flatnonzero(~load_ferplus(ferplus_csv, len(fer))[2])
    assert len(unusable) > 100 and torch.equal(votes[unusable], torch.eye(7)[fer.labels[unusable]])
    # FER+ agrees with most FER2013 labels, not all: a teacher, not a copy of the labels.
    agree = (votes.argmax(1).numpy() == fer.labels).mean()
    assert 0.6 < agree < 0.9
    mixed = teacher_targets((str(ferplus_csv), best), voted.select(np.arange(64)), cpu)
    own = teacher_targets((best,), voted.select(np.arange(64)), cpu)
    assert torch.allclose(mixed, (votes[:64] + own) / 2, atol=1e-6)
    result = ferkit("train", "--data", small_data, "--ferplus", small_ferplus,
                    "--teacher", small_ferplus, "--model", "tiny_cnn", "--runs-dir", tiny_run.parent, "--name", "both", check=False)
    assert result.returncode == 2 and "leave out --ferplus" in result.stderr


def test_refit_batchnorm_keeps_the_model_and_gives_it_real_statistics(fer: FERData) -> None:
    """Weights read back from ONNX train like the model they came from once their BatchNorms are refitted."""
    faces = to_input(torch.from_numpy(fer.pixels[-256:]))

    def train_mode_agreement(model: torch.nn.Module, reference: torch.Tensor) -> float:
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()
        with torch.no_grad():
            out = model(faces)
        model.eval()
        return (out.argmax(1) == reference.argmax(1)).float().mean().item()

    model = create_model("resnet_fer_w48", pretrained=SHIPPED_MODELS["fer2013"]).eval()
    with torch.no_grad():
        before = model(faces)
    assert train_mode_agreement(create_model("resnet_fer_w48", pretrained=SHIPPED_MODELS["fer2013"]), before) < 0.8
    refit_batchnorm(model, torch.from_numpy(fer.pixels[:512]))
    with torch.no_grad():
        after = model(faces)
    assert torch.allclose(before, after, atol=1e-4)  # eval mode computes exactly what it did
    stem_conv, stem_bn = model.features[0][0], model.features[0][1]
    with torch.no_grad():
        z = stem_conv(to_input(torch.from_numpy(fer.pixels[:512])))
    assert torch.allclose(stem_bn.running_mean, z.mean((0, 2, 3)), atol=1e-4)
    assert torch.allclose(stem_bn.running_var, z.var((0, 2, 3)), rtol=1e-2)
    assert train_mode_agreement(model, before) > 0.95


def test_a_run_starts_from_the_shipped_model_by_name(small_data: Path, tmp_path: Path) -> None:
    """`--pretrained fer2013` starts from the shipped ONNX weights: with no learning they score as
    the shipped model does on the same PublicTest images."""
    # With no learning only the BatchNorm statistics move, and they are refitted before scoring: 256 faces do.
    # In this process: the CLI's train is `train(TrainConfig(...))` (tiny_run runs it as a command).
    warm = TrainConfig(data=str(small_data), pretrained="fer2013", epochs=1, subset=256, lr=0, runs_dir=str(tmp_path), name="warm")
    train(warm)
    val_acc = float((tmp_path / "warm" / "log.csv").read_text().splitlines()[1].split(",")[5])
    val = load(small_data).split("PublicTest").subset(500, 0)
    shipped = (EmotionClassifier("fer2013").predict_proba(val.pixels).argmax(1) == val.labels).mean()
    assert shipped > 0.6 and abs(val_acc - shipped) < 0.02
    with pytest.raises(ModelError, match="do not match VGG; pass the --model it was trained as"):
        train(replace(warm, model="tiny_cnn", subset=600, name="wrong"))


def test_schedule_and_class_weights() -> None:
    cfg = TrainConfig(data="", epochs=10, lr=0.1, warmup_epochs=1)
    lrs = [learning_rate(cfg, s, 100) for s in range(1000)]
    assert lrs[0] == pytest.approx(0.001) and lrs[99] == pytest.approx(0.1)
    assert all(x >= y for x, y in zip(lrs[100:], lrs[101:])) and lrs[-1] < 1e-4
    labels = np.array([0] * 100 + [1] * 4 + [3] * 400)
    w = class_weights(labels)
    assert w[1] > w[0] > w[3]
    assert float((w[labels]).mean()) == pytest.approx(1.0, rel=1e-5)


def test_time_budget_schedule_follows_the_clock() -> None:
    """With --time-budget the learning rate is a function of the seconds spent, not of the step."""
    cfg = TrainConfig(data="", lr=0.1, time_budget=100)
    lrs = [learning_rate(cfg, 0, 10, t) for t in np.linspace(0, 100, 1001)]
    assert lrs[0] < 1e-3 and lrs[30] == pytest.approx(0.1)  # warm-up over 3% of the budget
    assert all(x >= y for x, y in zip(lrs[30:], lrs[31:])) and lrs[-1] < 1e-12 and lrs[500] == pytest.approx(0.05, rel=0.05)
    assert learning_rate(cfg, 5000, 10, 50.0) == learning_rate(cfg, 0, 10, 50.0)


def test_time_budget_run_stops_decayed_and_resume_keeps_the_clock(fer_npz: Path, tmp_path: Path) -> None:
    """A run given 4 seconds stops when they are spent, mid-epoch, with the learning rate decayed to
    (nearly) zero; its checkpoint keeps the seconds spent, so a resume does not start the clock again."""
    # 4,000 faces: an epoch outlasts the budget, so the run stops inside one, as long runs do.
    cfg = TrainConfig(data=str(fer_npz), model="tiny_cnn", subset=4000, time_budget=4.0, runs_dir=str(tmp_path), name="tb")
    train(cfg)
    log = (tmp_path / "tb" / "log.csv").read_text().splitlines()
    last_lr = float(log[-1].split(",")[1])
    assert len(log) >= 2 and last_lr < 0.05 * 0.05  # 5% of the peak at most: the cosine ran to its end
    state = torch.load(tmp_path / "tb" / "last.pt", weights_only=True)
    assert 4.0 <= state["elapsed"] < 60
    train(cfg, resume=True)  # the budget is spent: nothing more to do
    assert (tmp_path / "tb" / "log.csv").read_text().splitlines() == log
    assert "--time-budget 4.0" in train_command(json.loads((tmp_path / "tb" / "config.json").read_text()))


def _train_cmd(data: Path, runs: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ferkit.cli", "train", "--data", str(data), "--model", "tiny_cnn", "--epochs", "2",
            "--subset", "1000", "--runs-dir", str(runs), "--name", name, *extra]


def test_sigkill_then_resume_continues_exactly(small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run killed mid-epoch resumes from its last checkpoint and ends where an unbroken run ends,
    its weight average (--ema) included. The kill lands on a `ferkit train` process; the unbroken run
    and the resumed one run in this process (the CLI's --resume is `train(resume=True)`)."""
    def config(name: str) -> TrainConfig:
        return TrainConfig(data=str(small_data), model="tiny_cnn", epochs=2, subset=1000, runs_dir=str(tmp_path), name=name, ema=0.99)

    train(config("whole"))
    proc = subprocess.Popen(_train_cmd(small_data, tmp_path, "killed", "--ema", "0.99"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "log.csv"
    deadline = time.time() + 240
    while time.time() < deadline and not (log.exists() and len(log.read_text().splitlines()) >= 2):
        time.sleep(0.05)
    first = float(log.read_text().splitlines()[1].split(",")[-1])  # epoch 1's seconds (runs.LOG_FIELDS ends with them)
    time.sleep(0.4 * first)  # into the second epoch, however fast this machine runs one
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)["epoch"]
    assert done == 1, "the kill must land in the second (last) epoch"

    capsys.readouterr()
    train(TrainConfig(data=str(small_data), runs_dir=str(tmp_path), name="killed"), resume=True)
    err = capsys.readouterr().err
    assert "resuming" in err and "epoch 2/2" in err
    assert "epoch 1/2 " not in err  # finished epochs are not trained again
    rows = (tmp_path / "killed" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"]
    whole = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)
    resumed = torch.load(tmp_path / "killed" / "last.pt", weights_only=True)
    for part in ("model", "ema"):
        assert all(torch.allclose(whole[part][k].float(), resumed[part][k].float(), atol=1e-5) for k in whole[part])


def test_existing_run_needs_resume_or_new_name(tiny_run: Path, small_data: Path) -> None:
    result = ferkit("train", "--data", small_data, "--runs-dir", tiny_run.parent, "--name", "tiny", check=False)
    assert result.returncode == 2 and "pass --resume" in result.stderr
    with pytest.raises(RunError, match="nothing to resume"):
        train(TrainConfig(data=str(small_data), runs_dir=str(tiny_run.parent), name="fresh"), resume=True)


def test_training_options_ferplus_soft_balance_mixup_adamw_ema_teacher_and_target_stop(
    small_data: Path, small_ferplus: Path, tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    train(TrainConfig(data=str(small_data), ferplus=str(small_ferplus), soft_labels=True, balance=True, mixup=0.2,
                      teachers=(str(tiny_run / "best.pt"),), distill=0.3, optimizer="adamw", lr=0.003, model="tiny_cnn",
                      epochs=3, subset=600, ema=0.9, target_acc=0.0, runs_dir=str(tmp_path), name="plus"))
    assert "reached target PublicTest accuracy 0.0: stopping" in capsys.readouterr().err
    assert len((tmp_path / "plus" / "log.csv").read_text().splitlines()) == 2  # stopped after epoch 1 of 3
    config = json.loads((tmp_path / "plus" / "config.json").read_text())
    assert config["ferplus"] and config["soft_labels"] and config["balance"] and config["optimizer"] == "adamw"
    assert config["teachers"] == [str(tiny_run / "best.pt")] and config["distill"] == 0.3
    # With --ema the checkpoint that ships holds the averaged weights, not the last trained ones.
    best = torch.load(tmp_path / "plus" / "best.pt", weights_only=True)["model"]
    last = torch.load(tmp_path / "plus" / "last.pt", weights_only=True)
    weights = [k for k in best if k.endswith("weight")]
    assert all(torch.equal(best[k], last["ema"]["module." + k]) for k in weights)
    assert not all(torch.equal(best[k], last["model"][k]) for k in weights)


def test_patience_stops_a_run_that_no_longer_improves(small_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # With a learning rate of 0 nothing changes, so epoch 2 cannot beat epoch 1.
    train(TrainConfig(data=str(small_data), model="tiny_cnn", epochs=5, subset=600, lr=0.0, patience=1, runs_dir=str(tmp_path), name="flat"))
    assert "no PublicTest improvement for 1 epochs: stopping" in capsys.readouterr().err
    assert len((tmp_path / "flat" / "log.csv").read_text().splitlines()) == 3

"""A corpus of bad inputs, made here rather than committed: crafted checkpoints, decompression bombs,
tiny and mislabelled images, malformed data files, slow and oversized HTTP bodies. Each case checks
its outcome: one clear line and exit code 2 (or a 4xx), no traceback, nothing lost, no code run."""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ferkit.cli import app


def cli(*args: object) -> tuple[int, str]:
    """Run the real command line in this process; return its exit code and what it printed to stderr."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stderr


def one_line_error(code: int, stderr: str, *words: str) -> None:
    """The contract for a user's mistake: exit code 2 and one `error:` line, the last, naming the problem."""
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in stderr, stderr
    assert sum("error" in line.lower() or "warn" in line.lower() for line in lines) == 1, stderr
    assert all(w in lines[-1] for w in words), lines[-1]


def faces_npz(path: Path, n_train: int = 96, n_val: int = 32, **arrays: np.ndarray) -> Path:
    """A small FER2013-shaped npz of random faces (training mechanics, not accuracy, are under test)."""
    rng = np.random.default_rng(0)
    n = n_train + n_val
    data = {"pixels": rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), "labels": np.arange(n) % 7,
            "usage": np.array([0] * n_train + [1] * n_val, dtype=np.int8)}
    np.savez(path, **{**data, **arrays})
    return path


# --- checkpoints: a pickle that would run code is refused and does not run ------------------------


class RunsCode:
    """Unpickling this object calls exec, which would create `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of tiny_cnn on 96 random faces: a real run folder with config, log and checkpoints."""
    root = tmp_path_factory.mktemp("run")
    npz = faces_npz(root / "faces.npz")
    code, stderr = cli("train", "--data", npz, "--model", "tiny_cnn", "--epochs", "1", "--batch-size", "16",
                       "--runs-dir", root, "--name", "small")
    assert code == 0, stderr
    return root / "small"


def test_checkpoint_that_would_run_code_is_refused_everywhere(small_run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    good = torch.load(small_run / "best.pt", weights_only=True)
    evil = tmp_path / "evil.pt"
    torch.save({**good, "extra": RunsCode(marker)}, evil)
    npz = small_run.parent / "faces.npz"
    for args in (("export", evil, "--out", tmp_path / "x.onnx"),
                 ("evaluate", "--model", evil, "--data", npz, "--split", "PublicTest"),
                 ("train", "--data", npz, "--model", "tiny_cnn", "--epochs", "1", "--runs-dir", tmp_path, "--name", "t",
                  "--teacher", evil),
                 ("train", "--data", npz, "--model", "tiny_cnn", "--epochs", "1", "--runs-dir", tmp_path, "--name", "p",
                  "--pretrained", evil)):
        one_line_error(*cli(*args), "evil.pt: refused", "exec", "could run code")
    # Resuming from a tampered last.pt is refused too, and the run's files are left as they were.
    before = {p.name: p.read_bytes() for p in small_run.iterdir()}
    torch.save({**torch.load(small_run / "last.pt", weights_only=True), "extra": RunsCode(marker)}, small_run / "last.pt")
    try:
        one_line_error(*cli("train", "--data", npz, "--runs-dir", small_run.parent, "--name", "small", "--resume"),
                       "last.pt: refused")
        assert {p.name: p.read_bytes() for p in small_run.iterdir() if p.name != "last.pt"} == \
               {k: v for k, v in before.items() if k != "last.pt"}
    finally:
        (small_run / "last.pt").write_bytes(before["last.pt"])
    assert not marker.exists()


def test_damaged_checkpoints_are_one_line(small_run: Path, tmp_path: Path) -> None:
    whole = (small_run / "best.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    for name, words in (("cut.pt", "not a readable checkpoint"), ("text.pt", "not a readable checkpoint"),
                        ("list.pt", "holds a list"), ("other.pt", "not a ferkit training checkpoint")):
        one_line_error(*cli("export", tmp_path / name, "--out", tmp_path / "x.onnx"), name, words)
    assert not (tmp_path / "x.onnx").exists()

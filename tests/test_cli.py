from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import typer

from conftest import ferkit
from ferkit.cli import clean_errors
from ferkit.data import FERData
from ferkit.errors import DataError, FerkitError, ImageError, ModelError, OptionError, RunError, SourceError, VideoError
from ferkit.scenes import compose_scene


def test_predict_default_runs_on_the_bundled_sample() -> None:
    result = ferkit("predict")
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert record["path"].endswith("sample.jpg") and len(record["faces"]) == 1
    assert record["faces"][0]["label"] == "happy"
    assert "1 image, 1 face (happy 1)" in result.stderr


def test_predict_folder_to_csv_with_annotated_copies(astronaut_bgr: np.ndarray, fer: FERData, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    cv2.imwrite(str(photos / "astronaut.jpg"), astronaut_bgr)
    scene, _ = compose_scene(fer.split("PrivateTest").pixels[:4])
    cv2.imwrite(str(photos / "sub" / "scene.png"), scene)
    cv2.imwrite(str(photos / "sub" / "empty.png"), np.full((200, 300, 3), 90, np.uint8))
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (photos / "notes.txt").write_text("not an image, not looked at")
    result = ferkit("predict", photos, "--out", tmp_path / "out.csv", "--save", tmp_path / "annotated", "--all")
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    by_path = {}
    for r in rows:
        by_path.setdefault(Path(r["path"]).name, []).append(r)
    assert set(by_path) == {"astronaut.jpg", "scene.png", "empty.png", "broken.jpg"}
    assert [r["label"] for r in by_path["astronaut.jpg"]] == ["happy"]
    assert len(by_path["scene.png"]) >= 1 and all(r["label"] for r in by_path["scene.png"])
    assert by_path["empty.png"][0]["label"] == "" and by_path["empty.png"][0]["error"] == ""
    assert "not a readable image" in by_path["broken.jpg"][0]["error"]
    assert "4 images" in result.stderr and "1 unreadable" in result.stderr
    assert "ETA" not in result.stderr  # no progress bar where stderr is not a terminal
    saved = sorted(str(p.relative_to(tmp_path / "annotated")) for p in (tmp_path / "annotated").rglob("*.jpg"))
    assert saved == ["astronaut_ferkit.jpg", "sub/empty_ferkit.jpg", "sub/scene_ferkit.jpg"]
    annotated = cv2.imread(str(tmp_path / "annotated" / "astronaut_ferkit.jpg"))
    assert annotated.shape == astronaut_bgr.shape and np.abs(annotated.astype(int) - astronaut_bgr).mean() > 1


def test_predict_jsonl_file_and_missing_path(tmp_path: Path) -> None:
    ferkit("predict", "--out", tmp_path / "r.jsonl")
    record = json.loads((tmp_path / "r.jsonl").read_text())
    face = record["faces"][0]
    assert set(face) == {"box", "score", "label", "confidence", "probabilities", "track_id"}
    assert abs(sum(face["probabilities"].values()) - 1) < 1e-4
    result = ferkit("predict", tmp_path / "nothing.jpg", check=False)
    assert result.returncode == 2 and "no such file or folder" in result.stderr and "Traceback" not in result.stderr


def test_only_expected_errors_become_one_line(capsys: pytest.CaptureFixture) -> None:
    """A FerkitError is the user's to fix: one line, exit 2. Anything else is a bug and keeps its traceback."""
    for kind in (DataError, ModelError, ImageError, VideoError, OptionError, RunError, SourceError):
        with pytest.raises(typer.Exit) as exit:
            with clean_errors():
                raise kind("fix me")
        assert exit.value.exit_code == 2 and issubclass(kind, FerkitError)
    assert capsys.readouterr().err.count("error: fix me") == 7
    with pytest.raises(ValueError, match="a bug"):
        with clean_errors():
            raise ValueError("a bug")


def test_predict_shows_progress_with_rate_and_time_left_on_a_terminal(astronaut_bgr: np.ndarray, tmp_path: Path) -> None:
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"photo{i:02}.jpg"), astronaut_bgr)
    terminal = dict(os.environ, TTY_COMPATIBLE="1", COLUMNS="120")  # rich draws as on a terminal
    result = subprocess.run([sys.executable, "-m", "ferkit.cli", "predict", tmp_path, "--out", tmp_path / "r.csv"],
                            capture_output=True, text=True, env=terminal)
    assert result.returncode == 0, result.stderr
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr)
    assert re.search(r"12/12 images, \d+\.\d images/s, ETA 0:00:00", plain), plain
    assert re.search(r"12 images, 12 faces \(happy 12\) in \d+\.\d s, \d+\.\d images/s", plain)


def test_help_of_every_command_fits_80_columns() -> None:
    """Every option's name is printed whole in an 80-column terminal (`--label-smoothi…` was not)."""
    import typer.main
    from typer.testing import CliRunner

    from ferkit.cli import app

    commands = typer.main.get_command(app).commands
    for name, command in commands.items():
        result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0 and "…" not in result.output, result.output
        assert max(map(len, result.output.splitlines())) <= 80
        for param in command.params:
            assert all(opt in result.output for opt in param.opts if opt.startswith("--")), (name, param.opts)

"""Checkpoints and the torch side of inference: load and save them, pick a device, get logits.

Training, evaluation, export and the benchmarks share these; nothing on the inference side
(ONNX Runtime) imports this module, so predicting never needs torch.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import torch

from .data import EMOTIONS, MEAN, STD
from .errors import ModelError, OptionError
from .models import create_model, load_state


def load_checkpoint(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild the model a checkpoint was trained as, with its weights, in eval mode."""
    state = load_state(path)
    if "model" not in state or "config" not in state:
        raise ModelError(f"{path}: not a ferkit training checkpoint")
    model = create_model(state["config"]["model"], len(EMOTIONS))
    model.load_state_dict(state["model"])
    return model.eval(), state


def pick_device(name: str) -> torch.device:
    """"auto" is CUDA where there is one, else the CPU; any other name as torch spells it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise OptionError(f"unknown device {name!r}; choose auto, cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"--device {name}: this machine has no CUDA GPU that torch {torch.__version__} can use; choose cpu or auto")
    return device


def hardware(device: torch.device) -> str:
    """This machine's CPU, cores and, when training on one, GPU: what a model card says it was trained on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return f"{cpu}, {os.cpu_count()} cores{gpu}"


def provenance(device: torch.device, seconds: float) -> dict:
    """Where and for how long a checkpoint was trained, kept in it: its card is written elsewhere, later."""
    return {"hardware": hardware(device), "torch": str(torch.__version__), "seconds": round(seconds, 1)}


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temporary file, then rename: a kill mid-write never leaves a broken checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def to_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 48, 48) -> normalised float (B, 1, 48, 48), no augmentation."""
    return ((pixels.float().unsqueeze(1) / 255.0) - MEAN) / STD


@torch.no_grad()
def predict_logits(model: torch.nn.Module, pixels: np.ndarray, device: torch.device, batch: int = 512) -> np.ndarray:
    """uint8 (N, 48, 48) faces -> (N, 7) logits, in eval mode and in batches."""
    model.eval()
    out = []
    for i in range(0, len(pixels), batch):
        x = to_input(torch.from_numpy(pixels[i : i + batch]).to(device))
        out.append(model(x.contiguous(memory_format=torch.channels_last)).float().cpu())
    return torch.cat(out).numpy()

"""Training throughput and ONNX Runtime inference latency of every registered model on this machine.

    python benchmarks/bench_models.py [--models resnet_fer seed_cnn] [--threads 2]

Training: img/s of full steps (augmentation, forward, backward, SGD) at batch 64, as `ferkit train`
runs them (channels_last; bf16 only where the CPU has bf16 units). Inference: ms per face through
ONNX Runtime at batch 1 and batch 32, median of repeated runs. Untrained weights: speed does not
depend on them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from ferkit.models import count_parameters, create_model, list_models
from ferkit.recognize import EmotionClassifier
from ferkit.train import TrainConfig, augment, pick_device, use_bf16


def train_speed(name: str, steps: int = 8, batch: int = 64) -> float:
    device = pick_device("auto")
    bf16 = use_bf16("auto", device)
    model = create_model(name).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    cfg, g = TrainConfig(data=""), torch.Generator(device=device).manual_seed(0)
    faces = torch.randint(0, 256, (batch, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).to(device)
    labels = torch.randint(0, 7, (batch,), device=device)
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(augment(faces, cfg, g).contiguous(memory_format=torch.channels_last)).float(), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def onnx_latency(model_path: Path, batch: int, threads: int | None, repeats: int = 50) -> float:
    classifier = EmotionClassifier(model_path, threads=threads)
    faces = np.random.default_rng(0).integers(0, 256, (batch, 48, 48), dtype=np.uint8)
    for _ in range(5):
        classifier.predict_proba(faces)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        classifier.predict_proba(faces)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000 / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list_models())
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    args = parser.parse_args()
    table = Table(title=f"ferkit models on this machine ({torch.get_num_threads()} torch threads)")
    for column in ("model", "params (M)", "train img/s", "ms/face batch 1", "ms/face batch 32"):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            path = Path(tmp) / f"{name}.onnx"
            model = create_model(name).eval()
            torch.onnx.export(model, (torch.zeros(1, 1, 48, 48),), str(path), input_names=["faces"],
                              dynamic_axes={"faces": {0: "batch"}}, opset_version=17, dynamo=False)
            table.add_row(name, f"{count_parameters(model) / 1e6:.2f}", f"{train_speed(name):.0f}",
                          f"{onnx_latency(path, 1, args.threads):.2f}", f"{onnx_latency(path, 32, args.threads):.3f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

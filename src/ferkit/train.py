"""Training: augmentation on whole batches, checkpoints every epoch, resume after a kill.

A run lives in `runs/<name>/`: `config.json`, `log.csv` (one row per epoch), `last.pt` (written
atomically after every epoch, what `--resume` continues from) and `best.pt` (highest PublicTest
accuracy, what `ferkit export` ships). Checkpoints are chosen on PublicTest only. Before each
PublicTest score the BatchNorm statistics are re-estimated on clean training faces, and with
`--ema` the weights scored and saved are an exponential moving average of the trained ones.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

from .checkpoints import pick_device, predict_logits, provenance, save_atomic, to_input
from .classify import model_path
from .data import EMOTIONS, MEAN, STD, FERData, load, with_votes
from .errors import DataError, OptionError, RunError
from .models import count_parameters, create_model, load_state
from .runs import LOG_FIELDS, TrainConfig, log_until, read_config, write_log

console = Console(stderr=True)
LOW_RES_SIDES = (16, 40)  # --low-res: the sides, pixels, faces are shrunk to (uniformly) before they are enlarged back to 48
WARMUP_FRACTION = 0.03  # with --time-budget: the share of the budget spent warming up the learning rate


def use_bf16(setting: str, device: torch.device) -> bool:
    """bf16 autocast only where the hardware has bf16 units: on an AVX2-only CPU it is ~10x slower."""
    if setting in ("on", "off"):
        return setting == "on"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@functools.cache
def low_res_maps(size: int, device: torch.device) -> torch.Tensor:
    """(sides, size, size): for each side s of LOW_RES_SIDES the matrix M for which M x M^T is the
    face x shrunk to s by area averaging and enlarged back bicubically (both are separable). With
    them `--low-res` is one batched product for every face at its own side, where a loop over the
    sides drawn read them back from the device at every step (the `--low-res` run of issue 15's GPU
    study went at about a fifth of its neighbours' speed); on the CPU the product is faster too."""
    maps = []
    for side in range(LOW_RES_SIDES[0], LOW_RES_SIDES[1] + 1):
        # Image i is 1 in column i, so its every row comes out as column i of M.
        columns = torch.eye(size, dtype=torch.float64)[:, None, None, :].expand(size, 1, size, size)
        small = F.interpolate(columns, size=(side, side), mode="area")
        maps.append(F.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)[:, 0, 0, :].T)
    return torch.stack(maps).float().to(device)


def augment(pixels: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """uint8 (B, 48, 48) faces -> normalised, augmented float (B, 1, 48, 48): flip, rotation,
    shift, zoom, optional low resolution (`low_res`), brightness/contrast and random erasing, drawn
    per image from generator `g`."""
    b, h, w = pixels.shape
    dev = pixels.device

    def uniform(scale: float) -> torch.Tensor:
        return (torch.rand(b, generator=g, device=dev) * 2 - 1) * scale

    x = pixels.float().unsqueeze(1) / 255.0
    flip = torch.rand(b, generator=g, device=dev) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    angle = uniform(math.radians(cfg.rotation))
    scale = 1 + uniform(cfg.zoom)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, uniform(cfg.shift * 2)], 1), torch.stack([sin, cos, uniform(cfg.shift * 2)], 1)], 1
    )
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.low_res > 0:  # a face drawn small in a photo reaches the model enlarged from fewer pixels
        sides = torch.randint(LOW_RES_SIDES[0], LOW_RES_SIDES[1] + 1, (b,), generator=g, device=dev)
        chosen = torch.rand(b, generator=g, device=dev) < cfg.low_res
        m = low_res_maps(h, dev)[sides - LOW_RES_SIDES[0]]
        small = (m @ x.squeeze(1) @ m.transpose(1, 2)).clamp(0, 1).unsqueeze(1)
        x = torch.where(chosen[:, None, None, None], small, x)
    mean = x.mean(dim=(2, 3), keepdim=True)
    contrast = 1 + uniform(cfg.brightness).view(b, 1, 1, 1)
    x = ((x - mean) * contrast + mean + uniform(cfg.brightness / 2).view(b, 1, 1, 1)).clamp(0, 1)
    x = (x - MEAN) / STD
    if cfg.erasing > 0:
        area = (0.02 + torch.rand(b, generator=g, device=dev) * 0.18) * h * w
        aspect = torch.exp(uniform(math.log(3)))
        eh = (area * aspect).sqrt().clamp(max=h)
        ew = (area / aspect).sqrt().clamp(max=w)
        top = torch.rand(b, generator=g, device=dev) * (h - eh)
        left = torch.rand(b, generator=g, device=dev) * (w - ew)
        rows = torch.arange(h, device=dev).view(1, h, 1)
        cols = torch.arange(w, device=dev).view(1, 1, w)
        box = (
            (rows >= top.view(b, 1, 1))
            & (rows < (top + eh).view(b, 1, 1))
            & (cols >= left.view(b, 1, 1))
            & (cols < (left + ew).view(b, 1, 1))
        )
        erase = (torch.rand(b, generator=g, device=dev) < cfg.erasing).view(b, 1, 1) & box
        x = x.masked_fill(erase.unsqueeze(1), 0.0)
    return x


@torch.no_grad()
def recalibrate_bn(model: torch.nn.Module, pixels: torch.Tensor, batch: int = 256) -> None:
    """Re-estimate BatchNorm running statistics on clean training faces.

    The running averages gathered during training describe augmented faces (erased patches,
    zoom, contrast changes) and misdescribe real ones: re-estimating them gained 0.8-1.1 points
    of PublicTest accuracy on our resnet_fer checkpoints, at no cost in inference.
    """
    batches = [to_input(pixels[i : i + batch]).contiguous(memory_format=torch.channels_last) for i in range(0, len(pixels), batch)]
    update_bn(batches, model)


@torch.no_grad()
def refit_batchnorm(model: torch.nn.Module, pixels: torch.Tensor, batch: int = 256) -> None:
    """Give every BatchNorm the statistics of its input on clean faces without changing what the
    model computes in eval mode.

    Weights read back from an exported ONNX file have BatchNorms that are a fixed scale and shift
    (see `models.load_onnx_weights`); in train mode such a layer would normalise by the batch's
    statistics and compute something new. Here
    each layer's eval-mode map z -> a*z + c is rewritten with the measured mean m and variance v
    of z (running stats m and v, scale a*sqrt(v+eps), shift a*m + c): identical in eval mode, and
    in train mode the batch statistics, close to m and v, give nearly the same map.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    sums = {bn: [0.0, 0.0, 0] for bn in norms}

    def record(bn: torch.nn.Module, inputs: tuple[torch.Tensor]) -> None:
        z = inputs[0].double().transpose(0, 1).flatten(1)
        acc = sums[bn]
        acc[0], acc[1], acc[2] = acc[0] + z.sum(1), acc[1] + (z * z).sum(1), acc[2] + z.shape[1]

    hooks = [bn.register_forward_pre_hook(record) for bn in norms]
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(pixels), batch):
            model(to_input(pixels[i : i + batch]).contiguous(memory_format=torch.channels_last))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    for bn, (total, squares, n) in sums.items():
        mean = total / n
        var = (squares / n - mean * mean).clamp(min=0)
        scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        shift = bn.bias.double() - scale * bn.running_mean.double()
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_(scale * (var + bn.eps).sqrt())
        bn.bias.copy_(scale * mean + shift)


@torch.no_grad()
def teacher_targets(paths: tuple[str, ...], data: FERData, device: torch.device) -> torch.Tensor:
    """Class probabilities of the teachers on the clean training faces, averaged: the soft targets
    of knowledge distillation. A teacher is a trained checkpoint (its probabilities averaged over
    the face and its mirror image) or a FER+ file (the ten annotators' votes, `data.soft`).

    They carry what a one-hot label cannot (this sad face looks half angry), and they are
    computed once, before training, so distillation costs no time per step.
    """
    probs = torch.zeros(len(data), len(EMOTIONS))
    flipped = np.ascontiguousarray(data.pixels[:, :, ::-1])
    for path in paths:
        if Path(path).suffix == ".csv":
            probs += torch.from_numpy(data.soft)
            continue
        state = load_state(path)
        teacher = create_model(state["config"]["model"], len(EMOTIONS)).to(device).to(memory_format=torch.channels_last)
        teacher.load_state_dict(state["model"])
        logits = (predict_logits(teacher, data.pixels, device) + predict_logits(teacher, flipped, device)) / 2
        probs += torch.softmax(torch.from_numpy(logits), 1)
    return probs / len(paths)


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse-square-root class frequencies, mean 1: lifts rare classes (disgust) without swamping the rest."""
    counts = np.bincount(labels, minlength=len(EMOTIONS)).astype(np.float64)
    w = 1 / np.sqrt(np.maximum(counts, 1))
    return torch.tensor(w / (w * counts).sum() * counts.sum(), dtype=torch.float32)


def learning_rate(cfg: TrainConfig, step: int, steps_per_epoch: int, elapsed: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to zero over the whole run: over its steps, or with
    `time_budget` over its wall-clock seconds (`elapsed`), so a run cut off by a lease that ends
    still ends fully decayed, whatever the machine's speed."""
    if cfg.time_budget:
        warm_s = WARMUP_FRACTION * cfg.time_budget
        if elapsed < warm_s:
            return cfg.lr * max(elapsed, 1e-3 * warm_s) / warm_s
        return 0.5 * cfg.lr * (1 + math.cos(math.pi * min(1.0, (elapsed - warm_s) / (cfg.time_budget - warm_s))))
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    total = cfg.epochs * steps_per_epoch
    if step < warm:
        return cfg.lr * (step + 1) / warm
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def load_splits(cfg: TrainConfig) -> tuple[FERData, FERData]:
    data = load(cfg.data, ferplus=cfg.ferplus)
    votes = [t for t in cfg.teachers if Path(t).suffix == ".csv"]
    if len(votes) > 1:
        raise DataError("give at most one FER+ file as --teacher")
    if votes:
        if cfg.ferplus:
            raise DataError("a FER+ file as --teacher teaches alongside FER2013 labels; leave out --ferplus")
        data = with_votes(data, votes[0])
    train, val = data.split("Training"), data.split("PublicTest")
    if cfg.subset:
        train = train.subset(cfg.subset, cfg.seed)
        val = val.subset(max(500, cfg.subset // 4), cfg.seed)
    return train, val


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (or AdamW), no weight decay on biases and BatchNorm; the fused
    kernels where the device has them (one launch per step for all parameters on a GPU)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = device.type == "cuda"
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, fused=fused)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, fused=fused)
    raise OptionError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adamw")


def train_step(
    forward: Callable[[torch.Tensor], torch.Tensor], opt: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor,
    cfg: TrainConfig, bf16: bool, weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimiser step on an augmented batch; returns the loss and logits as device tensors, so
    the step never waits for the GPU (issue 13 measured 6-16% of an H200's throughput lost to
    reading them every step)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = forward(x)
    loss = F.cross_entropy(logits.float(), target, weight=weight, label_smoothing=cfg.label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), logits.detach()


def compiled(model: torch.nn.Module, cfg: TrainConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The model's forward, through torch.compile with `--compile` (fused kernels: faster steps on a
    GPU after a compile of a minute or so); the module itself is what is saved and scored."""
    return torch.compile(model) if cfg.compile else model


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Train (or resume) a run; return the path of its best checkpoint."""
    run_dir = cfg.run_dir
    last = run_dir / "last.pt"
    if resume:
        if not last.exists():
            raise RunError(f"{last}: nothing to resume; start the run without --resume")
        cfg = replace(read_config(run_dir), runs_dir=cfg.runs_dir, name=cfg.name)  # the run may have moved
        state = load_state(last)
        console.print(f"resuming {run_dir} with its saved config")
    elif last.exists():
        raise RunError(f"{run_dir} already holds a run; pass --resume to continue it or --name for a new one")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    device = pick_device(cfg.device)
    bf16 = use_bf16(cfg.bf16, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest convolutions once
    torch.manual_seed(cfg.seed)
    train_data, val_data = load_splits(cfg)
    pretrained = model_path(cfg.pretrained) if cfg.pretrained else None
    model = create_model(cfg.model, len(EMOTIONS), pretrained).to(device).to(memory_format=torch.channels_last)
    bn_pick = torch.randperm(len(train_data), generator=torch.Generator().manual_seed(cfg.seed))[:8192]
    bn_pixels = torch.from_numpy(train_data.pixels[bn_pick.numpy()]).to(device)
    if pretrained is not None and pretrained.suffix == ".onnx" and not resume:
        refit_batchnorm(model, bn_pixels)
    opt = make_optimizer(model, cfg, device)
    forward = compiled(model, cfg)

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema)) if cfg.ema > 0 else None
    start_epoch, best_acc, best_epoch, elapsed, history = 0, -1.0, 0, 0.0, []
    if resume:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, best_acc, best_epoch = state["epoch"], state["best_acc"], state["best_epoch"]
        elapsed = state.get("elapsed", 0.0)
        # The checkpoint holds the log up to itself: a kill between the two cannot lose or add a row.
        history = state["log"] if "log" in state else log_until(run_dir / "log.csv", start_epoch)
    write_log(run_dir / "log.csv", history)

    pixels = torch.from_numpy(train_data.pixels).to(device)
    labels = torch.from_numpy(train_data.labels).to(device)
    soft = torch.from_numpy(train_data.soft).to(device) if cfg.soft_labels and train_data.soft is not None else None
    taught = teacher_targets(cfg.teachers, train_data, device).to(device) if cfg.teachers else None
    weight = class_weights(train_data.labels).to(device) if cfg.balance else None
    steps = len(train_data) // cfg.batch_size
    if steps == 0:
        raise DataError(f"{len(train_data)} training images are fewer than one batch of {cfg.batch_size}")
    until = f"for {cfg.time_budget:g} s" if cfg.time_budget else f"for {cfg.epochs} epochs"
    console.print(
        f"{cfg.model}: {count_parameters(model) / 1e6:.2f}M parameters, {len(train_data)} train / "
        f"{len(val_data)} PublicTest images, device {device}{' bf16' if bf16 else ''}, {until}, run {run_dir}"
    )

    epoch, clock = start_epoch, time.time() - elapsed  # with --time-budget, time spent before a resume counts
    while (time.time() - clock < cfg.time_budget) if cfg.time_budget else epoch < cfg.epochs:
        t0 = time.time()
        g = torch.Generator(device=device).manual_seed(cfg.seed * 100_003 + epoch)
        torch.manual_seed(cfg.seed * 100_003 + epoch)  # dropout: the same after a resume
        order = torch.randperm(len(train_data), generator=g, device=device)
        model.train()
        total_loss = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        with _progress() as progress:
            task = progress.add_task(f"epoch {epoch + 1}" + ("" if cfg.time_budget else f"/{cfg.epochs}"), total=steps, loss=0.0, acc=0.0)
            for i in range(steps):
                if cfg.time_budget and time.time() - clock >= cfg.time_budget:
                    break  # the budget is spent: score and save what this epoch has done so far
                idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
                x = augment(pixels[idx], cfg, g).contiguous(memory_format=torch.channels_last)
                y = labels[idx]
                target = soft[idx] if soft is not None else F.one_hot(y, len(EMOTIONS)).float()
                if taught is not None:
                    target = (1 - cfg.distill) * target + cfg.distill * taught[idx]
                if cfg.mixup > 0:
                    lam = float(np.random.default_rng(cfg.seed * 100_003 + epoch * steps + i).beta(cfg.mixup, cfg.mixup))
                    perm = torch.randperm(len(idx), generator=g, device=device)
                    x = lam * x + (1 - lam) * x[perm]
                    target = lam * target + (1 - lam) * target[perm]
                for group in opt.param_groups:
                    group["lr"] = learning_rate(cfg, epoch * steps + i, steps, time.time() - clock)
                loss, logits = train_step(forward, opt, x, target, cfg, bf16, weight)
                if ema is not None:
                    ema.update_parameters(model)
                total_loss += loss * len(idx)
                correct += (logits.argmax(1) == y).sum()
                seen += len(idx)
                if progress.live.is_started and (i % 25 == 0 or i == steps - 1):  # a terminal: read the GPU now and then
                    progress.update(task, completed=i + 1, loss=total_loss.item() / seen, acc=correct.item() / seen)
        if seen == 0:
            break

        scored = ema.module if ema is not None else model
        recalibrate_bn(scored, bn_pixels)
        logits = torch.from_numpy(predict_logits(scored, val_data.pixels, device))
        val_labels = torch.from_numpy(val_data.labels)
        val_loss = F.cross_entropy(logits, val_labels).item()
        val_acc = (logits.argmax(1) == val_labels).float().mean().item()
        epoch += 1
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch
            save_atomic({"model": scored.state_dict(), "config": asdict(cfg), "epoch": epoch, "val_acc": val_acc,
                         "provenance": provenance(device, time.time() - clock)}, run_dir / "best.pt")
        row = dict(zip(LOG_FIELDS, (epoch, opt.param_groups[0]["lr"], total_loss.item() / seen, correct.item() / seen, val_loss, val_acc, time.time() - t0)))
        history.append(row)
        save_atomic(
            {"model": model.state_dict(), "optimizer": opt.state_dict(), "config": asdict(cfg), "epoch": epoch,
             "best_acc": best_acc, "best_epoch": best_epoch, "ema": ema.state_dict() if ema is not None else None,
             "elapsed": time.time() - clock, "log": history},
            last,
        )
        write_log(run_dir / "log.csv", history)
        console.print(
            f"epoch {epoch}{'' if cfg.time_budget else f'/{cfg.epochs}'}  loss {row['train_loss']:.4f}  train acc {row['train_acc']:.4f}  "
            f"PublicTest acc {val_acc:.4f}  (best {best_acc:.4f} @ {best_epoch})  {row['seconds']:.1f}s"
        )
        if cfg.target_acc is not None and val_acc >= cfg.target_acc:
            console.print(f"reached target PublicTest accuracy {cfg.target_acc}: stopping")
            break
        if cfg.patience is not None and epoch - best_epoch >= cfg.patience:
            console.print(f"no PublicTest improvement for {cfg.patience} epochs: stopping")
            break
    return run_dir / "best.pt"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not sys.stderr.isatty(),
    )



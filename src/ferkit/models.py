"""Model registry: every architecture ferkit can train, behind one `create_model(name)`.

All models take a (N, 1, 48, 48) normalised grayscale batch and return (N, 7) logits.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from .errors import ModelError, OptionError

_REGISTRY: dict[str, Callable[[int], nn.Module]] = {}


def register(fn: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
    """Add an architecture to the registry under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(name: str, num_classes: int = 7, pretrained: str | Path | None = None) -> nn.Module:
    """Build a registered model; `pretrained` loads user-given weights where names and shapes match."""
    if name not in _REGISTRY:
        raise OptionError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    model = _REGISTRY[name](num_classes)
    if pretrained is not None:
        load_matching(model, pretrained)
    return model


def load_matching(model: nn.Module, path: str | Path) -> int:
    """Copy every tensor of a state dict whose name and shape match; return how many were copied.

    Transfer learning from ImageNet-style weights needs this: the classifier head differs, and a
    3-channel stem is folded into our 1-channel one by summing over its input channels. An
    exported `.onnx` file is read by `load_onnx_weights`.
    """
    if Path(path).suffix == ".onnx":
        return load_onnx_weights(model, path)
    state = load_state(path)
    state = state.get("model", state) if isinstance(state, dict) else state
    own = model.state_dict()
    copied = {}
    for key, value in state.items():
        if key not in own:
            continue
        if value.ndim == 4 and value.shape[1] == 3 and own[key].shape[1] == 1:
            value = value.sum(dim=1, keepdim=True)
        if value.shape == own[key].shape:
            copied[key] = value
    if not copied:
        raise ModelError(f"{path}: no tensor matches {type(model).__name__} by name and shape")
    model.load_state_dict(copied, strict=False)
    return len(copied)


def load_state(path: str | Path) -> dict:
    """What a checkpoint holds, read by torch's weights-only unpickler: tensors and plain values only,
    so a crafted file is refused instead of running the code a full unpickle would run."""
    if not Path(path).is_file():
        raise ModelError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found is None:
            raise ModelError(f"{path}: not a readable checkpoint (damaged pickle)") from None
        raise ModelError(f"{path}: refused: it holds the Python object {found.group(1)}, not only tensors and plain values, "
                         "and loading it could run code") from None
    except Exception as e:  # torch raises zip, pickle and runtime errors for damaged files
        raise ModelError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict):
        raise ModelError(f"{path}: not a checkpoint (it holds a {type(state).__name__}, not a dict)")
    return state


def load_onnx_weights(model: nn.Module, path: str | Path) -> int:
    """Copy the weights of a `ferkit export`ed ONNX file back into the architecture it came from.

    Training runs do not outlive their machine, but the shipped ONNX file does: this lets a new
    run start from it. Export folds each BatchNorm into the convolution before it, so here the
    convolution gets the folded filters, each rescaled to a fresh filter's norm, and the BatchNorm
    becomes a plain per-channel scale and shift that undoes the rescaling and adds the folded bias;
    the model then computes what the file computes (checked on random faces against ONNX Runtime).
    Training needs BatchNorms with real statistics: see `train.refit_batchnorm`.
    Returns the number of layers copied.
    """
    try:
        graph = onnx.load(str(path)).graph
    except Exception as e:  # protobuf raises several kinds of errors for damaged files
        raise ModelError(f"{path}: not a readable ONNX file ({type(e).__name__})") from None
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    layers = []  # (weight, bias) of every Conv and Gemm, in graph order
    for node in graph.node:
        if node.op_type in ("Conv", "Gemm"):
            w, b = (weights.get(name) for name in (list(node.input) + [""])[1:3])
            if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
                w = None if w is None else w.T
            layers.append((w, b))
    mods = list(model.modules())
    targets = [(m, mods[i + 1] if i + 1 < len(mods) and isinstance(mods[i + 1], nn.BatchNorm2d) else None)
               for i, m in enumerate(mods) if isinstance(m, (nn.Conv2d, nn.Linear))]
    shapes_match = len(layers) == len(targets) and all(
        w is not None and tuple(w.shape) == tuple(m.weight.shape) for (w, _), (m, _) in zip(layers, targets))
    if not shapes_match:
        raise ModelError(f"{path}: its layers do not match {type(model).__name__}; pass the --model it was trained as")
    with torch.no_grad():
        for (w, b), (module, bn) in zip(layers, targets):
            weight = torch.from_numpy(w.copy())
            bias = torch.zeros(module.weight.shape[0]) if b is None else torch.from_numpy(b.copy())
            if bn is not None:
                # The folded scale is arbitrary (BatchNorm undoes it); give each filter the norm of
                # torch's default initialisation, 1/sqrt(3), so learning rates act as in a fresh run.
                scale = weight.flatten(1).norm(dim=1).clamp(min=1e-12) * math.sqrt(3)
                weight = weight / scale.view(-1, *[1] * (weight.ndim - 1))
                bn.running_mean.zero_()
                bn.running_var.fill_(1 - bn.eps)
                bn.weight.copy_(scale)
                bn.bias.copy_(bias)
            elif module.bias is not None:
                module.bias.copy_(bias)
            elif b is not None and np.abs(b).max() > 0:
                raise ModelError(f"{path}: a layer has a bias that {type(model).__name__} has no place for")
            module.weight.copy_(weight)
    faces = torch.randn(4, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: faces.numpy()})[0]
    was_training = model.training
    with torch.no_grad():
        got = model.eval()(faces).numpy()
    model.train(was_training)
    if not np.allclose(got, expected, atol=1e-3 * max(1.0, float(np.abs(expected).max()))):
        raise ModelError(f"{path}: rebuilt as {type(model).__name__} it computes something else; pass the --model it was trained as")
    return len(layers)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class VGG(nn.Module):
    """Stacks of 3x3 conv-BN-ReLU pairs with max pooling: the classic FER2013 recipe."""

    def __init__(self, widths: tuple[int, ...], num_classes: int, hidden: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for width in widths:
            layers += [conv_bn(cin, width), conv_bn(width, width), nn.MaxPool2d(2)]
            cin = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(cin, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout, stride),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))


class ResNet(nn.Module):
    """A ResNet sized for 48x48 faces: a stride-1 stem, then stages of basic blocks that each halve the size."""

    def __init__(self, widths: tuple[int, ...], depths: tuple[int, ...], num_classes: int, dropout: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(1, widths[0])]
        cin = widths[0]
        for width, depth in zip(widths, depths):
            for j in range(depth):
                layers.append(BasicBlock(cin, width, 2 if j == 0 else 1))
                cin = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = max(8, channels // 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, squeezed, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(squeezed, channels, 1),
            nn.Hardsigmoid(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, expand: int, cout: int, stride: int, se: bool, act: type[nn.Module]) -> None:
        super().__init__()
        self.use_skip = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, expand, 1, bias=False),
            nn.BatchNorm2d(expand),
            act(inplace=True),
            nn.Conv2d(expand, expand, 3, stride, 1, groups=expand, bias=False),
            nn.BatchNorm2d(expand),
            act(inplace=True),
            SqueezeExcite(expand) if se else nn.Identity(),
            nn.Conv2d(expand, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_skip else y


class MobileNetV3(nn.Module):
    """MobileNetV3-Small's block layout with a stride-1 stem, so 48x48 faces keep enough resolution."""

    # (expansion, out channels, squeeze-excite, hardswish, stride), as in Howard et al. 2019, Table 2.
    CONFIG = [
        (16, 16, True, False, 2),
        (72, 24, False, False, 2),
        (88, 24, False, False, 1),
        (96, 40, True, True, 2),
        (240, 40, True, True, 1),
        (240, 40, True, True, 1),
        (120, 48, True, True, 1),
        (144, 48, True, True, 1),
        (288, 96, True, True, 2),
        (576, 96, True, True, 1),
        (576, 96, True, True, 1),
    ]

    def __init__(self, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())]
        cin = 16
        for expand, cout, se, hswish, stride in self.CONFIG:
            layers.append(InvertedResidual(cin, expand, cout, stride, se, nn.Hardswish if hswish else nn.ReLU))
            cin = cout
        layers.append(nn.Sequential(nn.Conv2d(cin, 576, 1, bias=False), nn.BatchNorm2d(576), nn.Hardswish()))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(576, 1024),
            nn.Hardswish(),
            nn.Dropout(dropout),
            nn.Linear(1024, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@register
def seed_cnn(num_classes: int = 7) -> nn.Module:
    """The seed project's 5-block CNN (~3.5M parameters); L2 comes from the optimiser's weight decay."""
    return VGG((32, 64, 128, 256, 384), num_classes, hidden=256, dropout=0.4)


@register
def mobilenetv3(num_classes: int = 7) -> nn.Module:
    """Small and fast (~1.5M parameters); accepts pretrained weights through `create_model(pretrained=...)`."""
    return MobileNetV3(num_classes)


@register
def resnet_fer(num_classes: int = 7) -> nn.Module:
    """ResNet-10-style network, 48->3 pixels in four stages: the most accuracy per CPU second we found."""
    return ResNet((32, 64, 128, 256), (1, 1, 1, 1), num_classes, dropout=0.3)


@register
def resnet_fer_w48(num_classes: int = 7) -> nn.Module:
    """resnet_fer at 1.5x the width (2.76M parameters): trained on a GPU, it transfers better to faces
    from other data sets than resnet_fer's long CPU chain (issue 13), at 2 ms a face on 2 CPU cores."""
    return ResNet((48, 96, 192, 384), (1, 1, 1, 1), num_classes, dropout=0.3)


@register
def vgg_fer(num_classes: int = 7) -> nn.Module:
    """The VGG class of the best published FER2013 single models (5.22M parameters): a teacher, or a --model file."""
    return VGG((64, 128, 256, 512), num_classes, hidden=1024, dropout=0.4)


@register
def resnet18_fer(num_classes: int = 7) -> nn.Module:
    """ResNet-18's depth and widths on 48x48 faces (11.2M parameters): a teacher, or a --model file."""
    return ResNet((64, 128, 256, 512), (2, 2, 2, 2), num_classes, dropout=0.3)


@register
def tiny_cnn(num_classes: int = 7) -> nn.Module:
    """A very small VGG for smoke tests and quick experiments on a laptop."""
    return VGG((16, 32, 64), num_classes, hidden=64, dropout=0.2)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

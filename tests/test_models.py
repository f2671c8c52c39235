from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ferkit.data import FERData, normalize
from ferkit.errors import ModelError, OptionError
from ferkit.models import count_parameters, create_model, list_models
from ferkit.classify import SHIPPED_MODELS


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_faces_to_seven_logits(name: str) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 48, 48))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


def shipped_architecture(name: str) -> str:
    """The registry name a shipped model was trained as, from its card."""
    return json.loads(SHIPPED_MODELS[name].with_suffix(".json").read_text())["architecture"]


def test_registry_has_the_issue_models() -> None:
    assert {"seed_cnn", "mobilenetv3", "resnet_fer", "resnet_fer_w48", "vgg_fer", "resnet18_fer", "tiny_cnn"} <= set(list_models())
    assert 3.2e6 < count_parameters(create_model("seed_cnn")) < 3.8e6
    # The sizes ../shared/models/README.md gives for the GPU-trained architectures.
    assert [count_parameters(create_model(n)) for n in ("resnet_fer_w48", "vgg_fer", "resnet18_fer")] == [2_760_823, 5_218_631, 11_175_495]
    with pytest.raises(OptionError, match="unknown model 'vgg99'"):
        create_model("vgg99")


def test_pretrained_weights_load_by_name_and_shape(tmp_path: Path) -> None:
    source = create_model("mobilenetv3", num_classes=1000)
    state = source.state_dict()
    stem = "features.0.0.weight"
    state[stem] = torch.randn(16, 3, 3, 3)  # an RGB stem, as ImageNet weights have
    torch.save(state, tmp_path / "imagenet.pt")
    model = create_model("mobilenetv3", pretrained=tmp_path / "imagenet.pt")
    assert torch.allclose(model.state_dict()[stem], state[stem].sum(1, keepdim=True))
    block = "features.5.block.3.weight"
    assert torch.equal(model.state_dict()[block], state[block])
    # The 1000-class head does not fit 7 classes, so it keeps its own initialisation.
    assert model.state_dict()["classifier.5.weight"].shape == (7, 1024)

    torch.save({"unrelated": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="no tensor matches"):
        create_model("mobilenetv3", pretrained=tmp_path / "other.pt")


def _lfw_faces() -> np.ndarray:
    """Real faces: scikit-image's LFW subset (25x25 crops), enlarged to 48x48 uint8."""
    import cv2
    from skimage import data

    faces = (data.lfw_subset()[:100] * 255).astype(np.uint8)
    return np.stack([cv2.resize(f, (48, 48), interpolation=cv2.INTER_CUBIC) for f in faces])


@pytest.mark.parametrize("name", sorted(SHIPPED_MODELS))
def test_shipped_onnx_weights_load_back_into_torch(name: str) -> None:
    """A model rebuilt from the shipped ONNX file gives the file's logits on real faces."""
    import onnxruntime as ort

    model = create_model(shipped_architecture(name), pretrained=SHIPPED_MODELS[name]).eval()
    x = normalize(_lfw_faces())
    session = ort.InferenceSession(str(SHIPPED_MODELS[name]), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() < 1e-3 and (got.argmax(1) == expected.argmax(1)).all()
    # Each filter before a BatchNorm has the norm of a fresh initialisation; the scale moved to the BatchNorm.
    stem = model.features[0]
    width = stem[0].weight.shape[0]
    assert torch.allclose(stem[0].weight.flatten(1).norm(dim=1), torch.full((width,), 3 ** -0.5), atol=1e-5)
    assert not torch.allclose(stem[1].weight, torch.ones(width))


def test_onnx_weights_refuse_the_wrong_architecture_and_damaged_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="do not match MobileNetV3; pass the --model it was trained as"):
        create_model("mobilenetv3", pretrained=SHIPPED_MODELS["fer2013"])
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07not a model at all")
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        create_model("resnet_fer", pretrained=tmp_path / "broken.onnx")


GPU_MODELS = Path(os.environ.get("FERKIT_DATA", "../shared/data")).parent / "models"  # ../shared/models beside the data


@pytest.mark.parametrize("name", ["resnet_fer_w48", "vgg_fer", "resnet18_fer", "resnet_fer_w48-ferplus"])
def test_gpu_trained_checkpoints_load_as_they_are(name: str, fer: FERData) -> None:
    """The checkpoints trained on an H200 (../shared/models) load into the registered architectures
    as they are (fp16 weights included) and recognise PublicTest faces far above chance (FER+ ones
    too: FER2013's labels are its labels' nearest neighbour)."""
    from ferkit.checkpoints import load_checkpoint, pick_device, predict_logits

    path = GPU_MODELS / f"{name}.pt"
    if not path.is_file():
        pytest.skip(f"{path} not found: the GPU-trained checkpoints live in ../shared/models beside FERKIT_DATA")
    model, state = load_checkpoint(path)
    assert state["config"]["model"] == name.removesuffix("-ferplus")
    val = fer.split("PublicTest").subset(400, 0)
    accuracy = (predict_logits(model, val.pixels, pick_device("cpu")).argmax(1) == val.labels).mean()
    assert accuracy > 0.55

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ferkit.data import normalize
from ferkit.errors import ModelError, OptionError
from ferkit.models import count_parameters, create_model, list_models
from ferkit.classify import SHIPPED_MODELS


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_faces_to_seven_logits(name: str) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 48, 48))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


def test_registry_has_the_issue_models() -> None:
    assert {"seed_cnn", "mobilenetv3", "resnet_fer", "tiny_cnn"} <= set(list_models())
    assert 3.2e6 < count_parameters(create_model("seed_cnn")) < 3.8e6
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

    model = create_model("resnet_fer", pretrained=SHIPPED_MODELS[name]).eval()
    x = normalize(_lfw_faces())
    session = ort.InferenceSession(str(SHIPPED_MODELS[name]), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        got = model(torch.from_numpy(x)).numpy()
    assert np.abs(got - expected).max() < 1e-3 and (got.argmax(1) == expected.argmax(1)).all()
    # Each filter before a BatchNorm has the norm of a fresh initialisation; the scale moved to the BatchNorm.
    stem = model.features[0]
    assert torch.allclose(stem[0].weight.flatten(1).norm(dim=1), torch.full((32,), 3 ** -0.5), atol=1e-5)
    assert not torch.allclose(stem[1].weight, torch.ones(32))


def test_onnx_weights_refuse_the_wrong_architecture_and_damaged_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="do not match MobileNetV3; pass the --model it was trained as"):
        create_model("mobilenetv3", pretrained=SHIPPED_MODELS["fer2013"])
    (tmp_path / "broken.onnx").write_bytes(b"\x08\x07not a model at all")
    with pytest.raises(ModelError, match="not a readable ONNX file"):
        create_model("resnet_fer", pretrained=tmp_path / "broken.onnx")

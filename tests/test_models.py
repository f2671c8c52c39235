from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ferkit.models import count_parameters, create_model, list_models


@pytest.mark.parametrize("name", list_models())
def test_every_model_maps_faces_to_seven_logits(name: str) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        out = model(torch.randn(3, 1, 48, 48))
    assert out.shape == (3, 7) and torch.isfinite(out).all()


def test_registry_has_the_issue_models() -> None:
    assert {"seed_cnn", "mobilenetv3", "resnet_fer", "tiny_cnn"} <= set(list_models())
    assert 3.2e6 < count_parameters(create_model("seed_cnn")) < 3.8e6
    with pytest.raises(ValueError, match="unknown model 'vgg99'"):
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
    with pytest.raises(ValueError, match="no tensor matches"):
        create_model("mobilenetv3", pretrained=tmp_path / "other.pt")

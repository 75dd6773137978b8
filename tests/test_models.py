"""Model factory: CLIP prompt classifiers, torchvision classifiers, weights sources."""

import pytest
import torch

from sei_core.models import ModelError, build_model

PROMPTS = ["A photo of a cat.", "A photo of a dog.", "A photo of something else."]


@pytest.mark.parametrize("name,size", [("SEI-Tiny-RN", 32), ("SEI-Tiny-ViT", 32), ("resnet18", 32),
                                       ("vit_b_16", 32)])
def test_models_give_one_logit_per_prompt(name, size):
    torch.manual_seed(0)
    model = build_model(name, PROMPTS, image_size=size)
    out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 3) and torch.isfinite(out).all()


def test_clip_logits_are_scaled_cosine_similarities():
    torch.manual_seed(0)
    model = build_model("SEI-Tiny-RN", PROMPTS, image_size=32)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
        scale = model.clip.logit_scale.exp()
    assert (logits.abs() <= scale + 1e-4).all()  # |cos| <= 1


def test_local_clip_checkpoint_is_loaded(tmp_path):
    torch.manual_seed(1)
    a = build_model("SEI-Tiny-RN", PROMPTS, image_size=32)
    torch.save(a.clip.state_dict(), tmp_path / "ckpt.pt")
    torch.manual_seed(2)
    b = build_model("SEI-Tiny-RN", PROMPTS, image_size=32, weights=str(tmp_path / "ckpt.pt"))
    for (k, va), vb in zip(a.clip.state_dict().items(), b.clip.state_dict().values()):
        assert torch.equal(va, vb), k


def test_local_torchvision_weights_are_loaded_except_the_new_head(tmp_path):
    import torchvision

    torch.manual_seed(1)
    net = torchvision.models.resnet18(weights=None)
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet18", PROMPTS, image_size=32, weights=str(tmp_path / "r18.pth"))
    assert torch.equal(model.net.conv1.weight, net.conv1.weight)
    assert model.net.fc.out_features == 3


def test_pretrained_tag_offline_fails_fast_and_says_what_to_do():
    with pytest.raises(ModelError, match="--weights /path/to"):
        build_model("RN50", PROMPTS, weights="openai", image_size=64)


@pytest.mark.parametrize("name,weights,match", [
    ("no-such-model", None, "unknown model"),
    ("SEI-Tiny-RN", "bogus-tag", "neither a file nor a pretrained tag"),
    ("resnet18", "missing.pth", "not found"),
])
def test_bad_model_or_weights(name, weights, match):
    with pytest.raises(ModelError, match=match):
        build_model(name, PROMPTS, weights=weights, image_size=32)


@pytest.mark.parametrize("name,size,match", [("SEI-Tiny-RN", 16, "multiple of 32"),
                                             ("SEI-Tiny-ViT", 30, "divisible by 4"),
                                             ("vit_b_16", 40, "divisible by 16")])
def test_image_sizes_the_model_cannot_take_are_refused_in_words(name, size, match):
    with pytest.raises(ModelError, match=match):
        build_model(name, PROMPTS, image_size=size)

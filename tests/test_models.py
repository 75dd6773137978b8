"""Model factory: CLIP prompt classifiers, torchvision classifiers, weights sources."""

import pytest
import torch

from sei_core.models import ModelError, build_model, on_device

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


@pytest.mark.parametrize("name", ["SEI-Tiny-RN", "resnet18"])
def test_a_channels_last_checkpoint_resumes_into_a_fresh_model(name, tmp_path):
    """On a GPU the model trains in the channels-last memory format (``on_device``): its
    checkpoint must load into a freshly built model on any device and give the same logits."""
    torch.manual_seed(0)
    trained = build_model(name, PROMPTS, image_size=32).to(memory_format=torch.channels_last).eval()
    torch.save(trained.state_dict(), tmp_path / "ckpt.pt")
    fresh = on_device(build_model(name, PROMPTS, image_size=32), "cpu").eval()
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt"))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(fresh(x), trained(x), atol=1e-5)
    assert all(p.is_contiguous() for p in fresh.parameters())  # on a CPU the format is left alone


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


def test_a_pretrained_tag_is_loaded_from_the_weights_folder(tmp_path, monkeypatch):
    import hashlib

    import torchvision

    from sei_core import models

    monkeypatch.setenv("SEI_WEIGHTS_DIR", str(tmp_path / "w"))
    target = models.weights_target("resnet18", "IMAGENET1K_V1")
    assert target == tmp_path / "w" / "resnet18" / "IMAGENET1K_V1.pth"
    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None)
    target.parent.mkdir(parents=True)
    torch.save(net.state_dict(), target)  # what `sei weights resnet18 --fetch IMAGENET1K_V1` would put there
    model = build_model("resnet18", PROMPTS, image_size=32, weights="IMAGENET1K_V1")
    assert torch.equal(model.net.layer1[0].conv1.weight, net.layer1[0].conv1.weight)
    info = model.weights_info
    assert info["source"] == "tag" and info["tag"] == "IMAGENET1K_V1" and info["file"] == str(target)
    assert info["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()[:16]


def test_a_local_checkpoint_is_recorded_and_random_init_says_so(tmp_path):
    torch.manual_seed(1)
    a = build_model("SEI-Tiny-ViT", PROMPTS, image_size=32)
    assert a.weights_info == {"source": "random"}
    torch.save(a.clip.state_dict(), tmp_path / "tiny_vit.pt")
    b = build_model("SEI-Tiny-ViT", PROMPTS, image_size=32, weights=str(tmp_path / "tiny_vit.pt"))
    assert b.weights_info["source"] == "file" and b.weights_info["tag"] is None
    assert torch.equal(a.clip.logit_scale, b.clip.logit_scale)
    for (k, va), vb in zip(a.clip.state_dict().items(), b.clip.state_dict().values()):
        assert torch.equal(va, vb), k


def test_missing_weights_offline_name_the_file_to_copy_and_the_way_out(tmp_path, monkeypatch, capsys):
    from sei_core import cli, models

    monkeypatch.setenv("SEI_WEIGHTS_DIR", str(tmp_path / "w"))
    target = tmp_path / "w" / "RN50" / "openai.bin"
    with pytest.raises(ModelError) as e:
        build_model("RN50", PROMPTS, weights="openai", image_size=224)
    msg = str(e.value)
    assert str(target) in msg and models.weights_source("RN50", "openai") in msg and "--weights none" in msg
    assert not target.exists() and not list((tmp_path / "w" / "RN50").glob("*.part"))
    assert cli.main(["weights", "RN50"]) == 0
    out = capsys.readouterr().out
    assert f"weights folder: {tmp_path / 'w'}" in out and str(target) in out and "not cached" in out
    assert cli.main(["weights", "RN50", "--fetch", "openai"]) == 1
    assert str(target) in capsys.readouterr().err
    assert cli.main(["weights", "SEI-Tiny-RN"]) == 0
    assert "no pretrained tags" in capsys.readouterr().out


def test_sei_weights_lists_the_cached_files(tmp_path, monkeypatch, capsys):
    from sei_core import cli

    monkeypatch.setenv("SEI_WEIGHTS_DIR", str(tmp_path / "w"))
    f = tmp_path / "w" / "resnet18" / "IMAGENET1K_V1.pth"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x" * 1000)
    assert cli.main(["weights"]) == 0
    assert str(f) in capsys.readouterr().out
    assert cli.main(["weights", "resnet18"]) == 0
    assert "IMAGENET1K_V1" in capsys.readouterr().out

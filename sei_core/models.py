"""Classifiers that SEI trains: CLIP-style prompt classifiers and plain torchvision ones.

A CLIP-style classifier scores an image against one text prompt per class (plus the
auxiliary prompt): ``logits = s · cos(f_img, f_txt_k)`` with a learnable scale ``s``
(CLIP's ``logit_scale``). Models come from open_clip by name — every name open_clip knows,
plus the small ``SEI-Tiny-*`` configs shipped here that train in minutes on a CPU — with
weights from nowhere (random init), a local checkpoint file, or an open_clip pretrained tag.
Plain classifiers are torchvision's ResNet-18/50 and ViT-B/16 with a fresh ``K+1`` head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

CONFIG_DIR = Path(__file__).with_name("model_configs")
TORCHVISION_MODELS = ("resnet18", "resnet50", "vit_b_16")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: CLIP clamps its learnable temperature so that the scale never exceeds 100.
MAX_LOGIT_SCALE = 100.0


class ModelError(Exception):
    """A model or its weights cannot be built; the message says why and what to do."""


def _open_clip():
    import open_clip

    if CONFIG_DIR not in open_clip.factory._MODEL_CONFIG_PATHS:
        open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def available_models() -> list[str]:
    """Every model name accepted by :func:`build_model`."""
    return sorted(_open_clip().list_models()) + list(TORCHVISION_MODELS)


def is_clip(name: str) -> bool:
    return name not in TORCHVISION_MODELS


class PromptClassifier(nn.Module):
    """CLIP image tower scored against the text features of fixed class prompts."""

    def __init__(self, clip: nn.Module, tokens: torch.Tensor, mean, std):
        super().__init__()
        self.clip = clip
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], shape ``(B, 3, S, S)`` → logits ``(B, K+1)``."""
        img = self.clip.encode_image((images - self.mean) / self.std, normalize=True)
        txt = self.clip.encode_text(self.tokens, normalize=True)
        scale = self.clip.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        return scale * img @ txt.t()


class ImageClassifier(nn.Module):
    """A torchvision backbone with ImageNet normalisation built in."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - self.mean) / self.std)


def build_model(
    name: str,
    prompts: Sequence[str],
    *,
    weights: str | None = None,
    image_size: int = 224,
) -> nn.Module:
    """Build a classifier with ``len(prompts)`` outputs (the K classes and the auxiliary one).

    Parameters
    ----------
    name : an open_clip model name (e.g. ``ViT-B-16``, ``RN50``, ``SEI-Tiny-ViT``) or one of
        ``resnet18``, ``resnet50``, ``vit_b_16``.
    prompts : the class prompts followed by the auxiliary prompt (plain classifiers only
        use their number).
    weights : None for random initialisation, a local checkpoint file, or an open_clip
        pretrained tag such as ``openai`` (needs the internet or a filled cache).
    image_size : training resolution; the model is built for it.
    """
    if name in TORCHVISION_MODELS:
        return _torchvision_model(name, len(prompts), weights, image_size)
    return _clip_model(name, prompts, weights, image_size)


def _clip_model(name: str, prompts: Sequence[str], weights: str | None, image_size: int) -> nn.Module:
    oc = _open_clip()
    if name not in oc.list_models():
        raise ModelError(f"unknown model {name!r}. Choose an open_clip model (e.g. ViT-B-16, RN50), "
                         f"SEI-Tiny-ViT / SEI-Tiny-RN for a CPU, or one of {list(TORCHVISION_MODELS)}")
    _check_image_size(name, (oc.get_model_config(name) or {}).get("vision_cfg", {}), image_size)
    pretrained = None
    if weights:
        if Path(weights).expanduser().is_file():
            pretrained = str(Path(weights).expanduser())
        else:
            tags = oc.list_pretrained_tags_by_model(name)
            if weights not in tags:
                hint = f"its tags are {tags}" if tags else "open_clip has no pretrained tags for it"
                raise ModelError(f"weights {weights!r} are neither a file nor a pretrained tag of {name}: {hint}")
            pretrained = weights
    try:
        clip = oc.create_model(name, pretrained=pretrained, force_image_size=image_size,
                               require_pretrained=bool(pretrained))
        tokenizer = oc.get_tokenizer(name)
    except Exception as e:  # open_clip raises many kinds (hub, IO, key mismatch)
        if pretrained and pretrained == weights and not Path(weights).exists():
            raise ModelError(
                f"could not get pretrained weights {weights!r} for {name} ({type(e).__name__}: {e}). "
                "Without internet, download the checkpoint on another machine and pass the file: "
                "--weights /path/to/open_clip_model.bin") from e
        raise ModelError(f"could not build {name} with weights {weights!r}: {type(e).__name__}: {e}") from e
    cfg = getattr(clip.visual, "preprocess_cfg", {}) or {}
    mean = tuple(cfg.get("mean", IMAGENET_MEAN)) if pretrained else IMAGENET_MEAN
    std = tuple(cfg.get("std", IMAGENET_STD)) if pretrained else IMAGENET_STD
    return PromptClassifier(clip, tokenizer(list(prompts)), mean, std)


def _check_image_size(name: str, vision_cfg: dict, image_size: int) -> None:
    """Refuse sizes the image tower cannot take, before PyTorch fails with shape errors."""
    if isinstance(vision_cfg.get("layers"), (list, tuple)):  # CLIP's ResNet: 32× downsampling
        if image_size < 32 or image_size % 32:
            raise ModelError(f"{name} needs an image size that is a multiple of 32 (32, 64, 224 …), "
                             f"not {image_size}")
    patch = vision_cfg.get("patch_size")
    if isinstance(patch, int) and image_size % patch:
        raise ModelError(f"{name} cuts images into {patch}-pixel patches: choose an image size divisible "
                         f"by {patch}, not {image_size}")


def _torchvision_model(name: str, n_outputs: int, weights: str | None, image_size: int) -> nn.Module:
    import torchvision

    kwargs = {"image_size": image_size} if name == "vit_b_16" else {}
    if name == "vit_b_16" and image_size % 16:
        raise ModelError(f"vit_b_16 needs an image size divisible by 16, not {image_size}")
    net = getattr(torchvision.models, name)(weights=None, **kwargs)
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelError(f"weights file {weights!r} not found; torchvision models take a local "
                             "state-dict file (.pth), e.g. from torchvision's weight URLs downloaded elsewhere")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ModelError(f"cannot read {path} as a PyTorch state dict: {e}") from e
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        own = net.state_dict()
        usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if len(usable) < len(own) // 2:
            raise ModelError(f"{path} does not fit {name}: only {len(usable)} of {len(own)} tensors match")
        net.load_state_dict(usable, strict=False)
    if name.startswith("resnet"):
        net.fc = nn.Linear(net.fc.in_features, n_outputs)
    else:
        net.heads.head = nn.Linear(net.heads.head.in_features, n_outputs)
    return ImageClassifier(net)

"""Classifiers that SEI trains: CLIP-style prompt classifiers and plain torchvision ones.

A CLIP-style classifier scores an image against one text prompt per class (plus the
auxiliary prompt): ``logits = s · cos(f_img, f_txt_k)`` with a learnable scale ``s``
(CLIP's ``logit_scale``). Models come from open_clip by name — every name open_clip knows,
plus the small ``SEI-Tiny-*`` configs shipped here that train in minutes on a CPU — with
weights from nowhere (random init), a local checkpoint file, or a pretrained tag.
Plain classifiers are torchvision's ResNet-18/50 and ViT-B/16 with a fresh ``K+1`` head.

Pretrained weights live in one folder the user can see, :func:`weights_dir`
(``~/.cache/sei-review/weights``, or ``$SEI_WEIGHTS_DIR``), one file per model and tag:
``<dir>/RN50/openai.bin``. :func:`fetch_weights` downloads a tag there; offline,
:func:`weights_source` and :func:`weights_target` say which file to copy where. A model
built by :func:`build_model` carries ``weights_info``: what was loaded (source, tag, file,
sha256 prefix), which training writes into the run's config and status.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .errors import WEIGHTS_FILE, WEIGHTS_NONE, Fix, SeiError

CONFIG_DIR = Path(__file__).with_name("model_configs")
TORCHVISION_MODELS = ("resnet18", "resnet50", "vit_b_16")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: CLIP clamps its learnable temperature so that the scale never exceeds 100.
MAX_LOGIT_SCALE = 100.0


class ModelError(SeiError):
    """A model or its weights cannot be built; the fix says what to do."""


def _open_clip():
    """open_clip, with this package's ``SEI-Tiny-*`` configs registered once."""
    import open_clip

    if "SEI-Tiny-RN" not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def available_models() -> list[str]:
    """Every model name accepted by :func:`build_model`."""
    return sorted(_open_clip().list_models()) + list(TORCHVISION_MODELS)


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


# -- pretrained weights ------------------------------------------------------------------

WEIGHTS_ENV = "SEI_WEIGHTS_DIR"


def weights_dir() -> Path:
    """The folder of downloaded pretrained weights: ``$SEI_WEIGHTS_DIR``, else
    ``~/.cache/sei-review/weights``. One file per model and tag: ``<dir>/<model>/<tag>.<ext>``."""
    env = os.environ.get(WEIGHTS_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sei-review" / "weights"


def known_weights(name: str) -> list[str]:
    """The pretrained tags of model ``name``: open_clip's (``openai`` …) for a CLIP model,
    torchvision's weight names (``IMAGENET1K_V1`` …) for a torchvision one; [] if none."""
    if name in TORCHVISION_MODELS:
        import torchvision

        return [w.name for w in torchvision.models.get_model_weights(name)]
    oc = _open_clip()
    return list(oc.list_pretrained_tags_by_model(name)) if name in oc.list_models() else []


def weights_source(name: str, tag: str) -> str:
    """The address the weights ``tag`` of ``name`` are downloaded from."""
    _check_tag(name, tag)
    if name in TORCHVISION_MODELS:
        import torchvision

        return torchvision.models.get_model_weights(name)[tag].url
    cfg = _open_clip().get_pretrained_cfg(name, tag)
    if cfg.get("hf_hub"):  # "org/repo/" (open_clip's default file name) or "org/repo/file"
        repo, filename = os.path.split(cfg["hf_hub"])
        return f"https://huggingface.co/{repo}/resolve/main/{filename or 'open_clip_pytorch_model.bin'}"
    return cfg["url"]


def weights_target(name: str, tag: str) -> Path:
    """Where the weights ``tag`` of ``name`` are kept (and where to copy them by hand)."""
    suffix = Path(weights_source(name, tag).split("?")[0]).suffix or ".bin"
    return weights_dir() / name / f"{tag}{suffix}"


def weights_file(name: str, tag: str) -> Path | None:
    """The cached file of weights ``tag`` of ``name``, or None if it is not there yet."""
    folder = weights_dir() / name
    found = sorted(p for p in folder.glob(f"{tag}.*") if p.is_file() and not p.name.endswith(".part"))
    return found[0] if found else None


def fetch_weights(name: str, tag: str) -> Path:
    """Download the weights ``tag`` of ``name`` into :func:`weights_dir` (once) and return the file.

    Raises :class:`ModelError` that names the file to copy, and where, when the download fails
    (no internet)."""
    _check_tag(name, tag)
    have = weights_file(name, tag)
    if have is not None:
        return have
    target = weights_target(name, tag)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        if name in TORCHVISION_MODELS:
            import torch.hub

            torch.hub.download_url_to_file(weights_source(name, tag), str(part), progress=True)
        else:
            oc = _open_clip()
            got = oc.download_pretrained(oc.get_pretrained_cfg(name, tag), cache_dir=str(weights_dir() / ".hub"))
            if not got:
                raise RuntimeError("open_clip returned no file")
            shutil.copyfile(got, part)
        part.replace(target)
    except Exception as e:  # hub, HTTP and IO errors of several libraries
        part.unlink(missing_ok=True)
        raise ModelError(
            f"could not download the {tag!r} weights of {name} ({type(e).__name__}: {str(e)[:200]})",
            f"without internet, download {weights_source(name, tag)} on another machine and copy it to "
            f"{target} (or " + WEIGHTS_FILE + "); or " + WEIGHTS_NONE) from e
    return target


def sha256_prefix(path: str | Path, n: int = 16) -> str:
    """The first ``n`` hex digits of a file's SHA-256 (to record which weights a run used)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def _check_tag(name: str, tag: str) -> None:
    tags = known_weights(name)
    if tag not in tags:
        hint = f"its tags are {tags}" if tags else "there are no pretrained tags for it"
        raise ModelError(f"{tag!r} is not a pretrained tag of {name}: {hint}")


def _resolve_weights(name: str, weights: str | None) -> tuple[Path | None, str | None]:
    """(file to load, tag it stands for) for a ``weights`` argument; fetches a tag if needed."""
    if not weights:
        return None, None
    path = Path(weights).expanduser()
    if path.is_file():
        from . import access

        return access.check(path, "the weights file"), None
    if weights in known_weights(name):
        return fetch_weights(name, weights), weights
    if name in TORCHVISION_MODELS or path.suffix or os.sep in weights:
        raise ModelError(f"weights file {weights!r} not found (and it is no pretrained tag of {name}: "
                         f"{known_weights(name)})",
                         Fix("give an existing file, a tag, or --weights none",
                             "give an existing file, choose a pretrained tag, or choose Weights “none”"))
    tags = known_weights(name)
    hint = f"its tags are {tags}" if tags else "there are no pretrained tags for it"
    raise ModelError(f"weights {weights!r} are neither a file nor a pretrained tag of {name}: {hint}",
                     "give an existing file or a tag, or " + WEIGHTS_NONE)


def on_device(model: "torch.nn.Module", device) -> "torch.nn.Module":
    """``model`` moved to ``device``; on a CUDA device in the channels-last memory format,
    which the GPU's convolution kernels run fastest in (RN50 at 224 px, bf16, H100: 1,464 →
    2,055 training images/s, docs/gpu.md). Weights and checkpoints are unchanged."""
    import torch

    device = torch.device(device)
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


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
    name : an open_clip model name (e.g. ``RN50``, ``ViT-B-16``, ``SEI-Tiny-RN``) or one of
        ``resnet18``, ``resnet50``, ``vit_b_16``.
    prompts : the class prompts followed by the auxiliary prompt (plain classifiers only
        use their number).
    weights : None for random initialisation, a local checkpoint file (a state dict of the
        model; for CLIP models an open_clip checkpoint), or a pretrained tag such as
        ``openai`` (from :func:`weights_dir`, downloaded there if missing).
    image_size : training resolution; the model is built for it.

    The returned module's ``weights_info`` says what was loaded: ``{"source": "random"}`` or
    ``{"source": "file"|"tag", "tag": …, "file": …, "sha256": first 16 hex digits}``.
    """
    if name not in TORCHVISION_MODELS and name not in _open_clip().list_models():
        raise ModelError(f"unknown model {name!r}. Choose an open_clip model (e.g. RN50, ViT-B-16), "
                         f"SEI-Tiny-RN / SEI-Tiny-ViT for a CPU, or one of {list(TORCHVISION_MODELS)}")
    path, tag = _resolve_weights(name, weights)
    if name in TORCHVISION_MODELS:
        model = _torchvision_model(name, len(prompts), path, image_size)
    else:
        model = _clip_model(name, prompts, path, tag, image_size)
    model.weights_info = ({"source": "random"} if path is None else
                          {"source": "tag" if tag else "file", "tag": tag, "file": str(path),
                           "sha256": sha256_prefix(path)})
    return model


def _clip_model(name: str, prompts: Sequence[str], path: Path | None, tag: str | None,
                image_size: int) -> nn.Module:
    oc = _open_clip()
    _check_image_size(name, (oc.get_model_config(name) or {}).get("vision_cfg", {}), image_size)
    cfg = oc.get_pretrained_cfg(name, tag) if tag else {}
    try:
        clip = oc.create_model(name, force_image_size=image_size, force_quick_gelu=bool(cfg.get("quick_gelu")))
        if path is not None:
            oc.load_checkpoint(clip, str(path))
        tokenizer = oc.get_tokenizer(name)
    except Exception as e:  # open_clip raises many kinds (IO, unpickling, key mismatch)
        raise ModelError(f"could not build {name} with weights {str(path)!r}: {type(e).__name__}: "
                         f"{str(e)[:300]}") from e
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
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


def _torchvision_model(name: str, n_outputs: int, path: Path | None, image_size: int) -> nn.Module:
    import torchvision

    kwargs = {"image_size": image_size} if name == "vit_b_16" else {}
    if name == "vit_b_16" and image_size % 16:
        raise ModelError(f"vit_b_16 needs an image size divisible by 16, not {image_size}")
    net = getattr(torchvision.models, name)(weights=None, **kwargs)
    if path is not None:
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

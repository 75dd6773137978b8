"""What to train: the run configuration, the named presets, and the choice for this machine.

Configuration is data: :class:`TrainConfig` holds every setting of a run (it is written to
the run's ``config.json`` and read back to resume), and :data:`PRESETS` is the one table
of named settings that the command line (``--preset``), the app's Train page and the
benchmarks start from. :func:`choose_preset` decides which preset fits the device found
here and says why:

- on a CUDA or Apple MPS GPU, ``paper``: the paper's model, CLIP with a ResNet-50 image
  tower (open_clip ``RN50``) fine-tuned from OpenAI's weights at 224 px, 150 epochs;
- on a CPU, ``cpu``: the small ``SEI-Tiny-RN`` CLIP from random weights at 32 px, which
  trains a thousand images in minutes (chosen by measurement, see docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from . import dataset as ds_mod
from .errors import DEVICE_CPU
from .runs import RunError

PAPER_EPOCHS = 150
PAPER_MILESTONES = (75, 115)


@dataclass
class TrainConfig:
    """Everything a run needs. Field defaults are the paper's optimiser and schedule (SGD,
    momentum 0.9, weight decay 1e-4, batch 128, lr 1e-3, 150 epochs, 224 px) and its model
    architecture (``RN50``); ``weights`` defaults to None, a random initialisation — the
    ``paper`` preset adds OpenAI's weights."""

    data: str
    split: str = "train"
    model: str = "RN50"
    #: None: random initialisation; a local checkpoint file; or a pretrained tag of the
    #: model (``openai`` …, see ``sei weights MODEL``)
    weights: str | None = None
    image_size: int = 224
    epochs: int = PAPER_EPOCHS
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    #: epochs after which lr is multiplied by ``gamma``; None scales the paper's 75/115 of 150
    milestones: list[int] | None = None
    gamma: float = 0.1
    seed: int = 0
    device: str = "auto"
    workers: int = 4
    amp: bool = True
    runs: int = 2
    record: str = "train"  # "train": the training forward pass; "eval": an extra clean pass
    keep_probs: int = 5
    augment: str = "paper"  # "paper": random resized crop + flips; "flip"; "none"
    template: str | None = None
    aux_prompt: str | None = None
    per_class_prompts: dict = field(default_factory=dict)
    skip_unreadable: bool = False
    max_pixels: int = ds_mod.DEFAULT_MAX_PIXELS
    #: folder of the decoded-image cache; None keeps it in the run's ``cache/``. Runs on the
    #: same images (benchmark cells) can share one folder and decode only once.
    cache_dir: str | None = None
    #: the class list, in output order; None: the sorted labels found in the data. A
    #: benchmark fixes it so that every noisy copy of a data set has the same classes.
    classes: list[str] | None = None
    #: host memory the decoded images may take in RAM ("512M", "4G"); None: half the memory
    #: available at start, shared by the processes of this machine. Larger caches are read
    #: through a memory map (see sei_core.feed).
    memory_budget: str | None = None
    #: processes (GPUs) on this machine; > 1 makes ``sei train``/``sei resume`` start torchrun
    nproc_per_node: int = 1
    #: the label file's columns of image path and label (part of the data set's identity:
    #: review writes decisions back to this label column)
    path_column: str = ds_mod.PATH_COL
    label_column: str = ds_mod.LABEL_COL
    #: folders the label file's images are in (absolute, searched in order; empty: the label
    #: file's folder), and the extension added to path cells that name an image without one
    #: (None: as given, then .jpg, .jpeg, .png …; see sei_core.dataset.extensions_tried)
    image_dirs: list[str] = field(default_factory=list)
    image_ext: str | None = None
    #: a retrain from a review (:mod:`sei_core.retrain`): the ``path,label`` file in the run
    #: folder of the samples to train on, taken from ``data`` by path cell with these labels
    #: (relabels applied, discarded images left out); None: all of ``data`` as it is
    training_table: str | None = None
    #: the label file review decisions on this run are written to (a retrain's: the parent
    #: run's, so that every round of review shares one decision log); None: as for any run
    review_file: str | None = None
    #: where a retrained run came from (parent run, label file version, decisions, relabels,
    #: discards); None for a run trained on a data set as it is
    lineage: dict | None = None

    def data_options(self) -> dict:
        """The keyword arguments of :func:`sei_core.dataset.load` that say how the data set is
        read: columns and image folders of a label file (part of the data set's identity)."""
        return dict(path_column=self.path_column, label_column=self.label_column,
                    image_dirs=list(self.image_dirs or []), image_ext=self.image_ext or None)

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return sorted(int(m) for m in self.milestones)
        return [max(1, round(self.epochs * m / PAPER_EPOCHS)) for m in PAPER_MILESTONES]

    def resolve_prompts(self, base: ds_mod.Prompts) -> ds_mod.Prompts:
        """The prompts to train with: this config's template, auxiliary prompt and per-class
        prompts where set, the data's own (``prompts.json`` or the defaults, ``base``) otherwise."""
        return ds_mod.Prompts(template=self.template or base.template,
                              aux_prompt=self.aux_prompt or base.aux_prompt,
                              per_class={**base.per_class, **(self.per_class_prompts or {})},
                              names=dict(base.names))

    def validate(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append("epochs must be at least 1")
        if self.batch_size < 2:
            problems.append("batch size must be at least 2")
        if self.image_size < 8:
            problems.append("image size must be at least 8 pixels")
        if self.lr <= 0:
            problems.append("learning rate must be positive")
        if self.runs < 1:
            problems.append("runs must be 1 (single) or more (complementary)")
        if self.record not in ("train", "eval"):
            problems.append("record must be 'train' or 'eval'")
        if self.augment not in ("paper", "flip", "none"):
            problems.append("augment must be 'paper', 'flip' or 'none'")
        if self.nproc_per_node < 1:
            problems.append("nproc-per-node must be at least 1")
        from . import feed as feed_mod  # imports torch: only when a config is checked

        try:
            feed_mod.memory_budget(self.memory_budget)
        except ValueError as e:
            problems.append(str(e))
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Preset:
    """A named set of :class:`TrainConfig` overrides, with the words a menu shows."""

    name: str
    title: str  # one line, for menus
    description: str  # what it trains and when to use it
    settings: dict

    def summary(self) -> str:
        s = self.settings
        weights = f"{s['weights']} weights" if s.get("weights") else "random weights"
        return (f"{s['model']} from {weights} at {s['image_size']} px, {s['epochs']} epochs, "
                f"batch {s['batch_size']}, lr {s['lr']:g}")


#: The one table of named settings (CLI ``--preset``, the app's Train page, benchmarks).
PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("paper", "Paper (CLIP RN50 from OpenAI's weights, 224 px; needs a GPU)",
           "the paper's setting: CLIP with a ResNet-50 image tower fine-tuned from OpenAI's weights",
           dict(model="RN50", weights="openai", image_size=224, epochs=PAPER_EPOCHS, batch_size=128, lr=1e-3)),
    Preset("cpu", "CPU (small model at 32 px; minutes per thousand images)",
           "a small CLIP (SEI-Tiny-RN) from random weights at 32 px, which trains on a CPU in minutes "
           "per thousand images",
           dict(model="SEI-Tiny-RN", weights=None, image_size=32, epochs=20, batch_size=64, lr=0.02)),
    Preset("cpu-demo", "Demo (the bundled sample data in about 2.5 CPU-minutes)",
           "the settings of `sei demo` for the 400-image sample data",
           dict(model="SEI-Tiny-RN", weights=None, image_size=32, epochs=30, batch_size=32, lr=0.02)),
)}


def preset_settings(name: str) -> dict:
    """A copy of preset ``name``'s :class:`TrainConfig` overrides."""
    try:
        return dict(PRESETS[name].settings)
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


def under_torchrun() -> bool:
    """True in a process started by ``torchrun`` with more than one process in the job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def device_choices() -> list[str]:
    """The devices this machine can train on, as ``--device`` and the Train page accept them:
    ``auto`` (what :func:`pick_device` picks), ``cpu``, then each CUDA GPU and Apple MPS that
    PyTorch sees."""
    import torch

    out = ["auto", "cpu"]
    if torch.cuda.is_available():
        out += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out.append("mps")
    return out


def pick_device(requested: str = "auto"):
    """The ``torch.device`` to train on: CUDA if present, then Apple MPS, then the CPU; or
    exactly what was asked for (an error if it is a CUDA device PyTorch cannot see)."""
    import torch

    if requested != "auto":
        dev = torch.device(requested)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RunError("device 'cuda' was requested but PyTorch sees no CUDA GPU", DEVICE_CPU)
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Choice:
    """The preset chosen for a device, and the sentences that explain it."""

    preset: str
    device: str  # "cuda", "mps" or "cpu"
    reason: str

    def message(self) -> str:
        p = PRESETS[self.preset]
        other = "cpu" if self.preset == "paper" else "paper"
        return (f"{self.reason}, so training with the '{self.preset}' preset: {p.summary()}. "
                f"Override with --preset {other} ({PRESETS[other].summary()}) or any option "
                f"(--model, --weights, --image-size, --epochs …).")


def choose_preset(device: str = "auto") -> Choice:
    """The preset for ``device`` (``auto``: the device PyTorch finds here): the paper's on a
    CUDA or MPS GPU, the small CPU one otherwise."""
    dev = pick_device(device).type
    if dev == "cuda":
        import torch

        name = torch.cuda.get_device_name(pick_device(device))
        return Choice("paper", dev, f"found a CUDA GPU ({name})")
    if dev == "mps":
        return Choice("paper", dev, "found an Apple GPU (MPS)")
    why = "found no GPU" if device == "auto" else f"--device {device} is a CPU"
    return Choice("cpu", dev, why)

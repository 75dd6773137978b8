"""How far a run's flags can be trusted, class by class.

A flag says "the model disagrees with this label". That means something only where the model
has learnt the class: where it agrees with few of a class's labels (a rare class, a weak model,
few epochs), it disagrees with right labels as often as with wrong ones, and its flags for that
class say more about the model than about the labels. :func:`class_reliability` measures that
per class from what every run already has (the given labels and the model's suggested label);
:func:`what_would_help` turns a run's settings into the changes that would help;
:func:`reliability_note` is the sentence the Explore and Review pages show. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: A class whose labels the model agrees with less often than this is "unreliable".
MIN_AGREEMENT = 0.5
#: A class with fewer images than this is named as needing more images.
FEW_IMAGES = 100


@dataclass(frozen=True)
class ClassReliability:
    """One class: how many images carry its label, the share of them whose label the model's
    suggestion agrees with, how many are flagged, and whether its flags can be relied on."""

    name: str
    images: int
    agreement: float  # NaN where no image of the class was scored
    flagged: int
    reliable: bool


def class_reliability(labels: np.ndarray, suggested: np.ndarray, flagged: np.ndarray, classes: Sequence[str],
                      scored: np.ndarray | None = None, min_agreement: float = MIN_AGREEMENT
                      ) -> list[ClassReliability]:
    """Per given class ``c``: ``agreement_c = |{i : y_i = c, ŝ_i = c}| / |{i : y_i = c}|`` over the
    scored samples (``ŝ`` the suggested label), and ``reliable_c = agreement_c ≥ min_agreement``.

    O(N) with two ``bincount`` calls. ``labels``, ``suggested`` are ``(N,)`` class indices
    (``suggested`` -1 or ≥ K where there is none); ``flagged`` and ``scored`` ``(N,)`` booleans
    (``scored`` default: every sample with a label in ``[0, K)``). A class with no scored
    image has agreement NaN and is reported reliable (there is nothing to flag).
    """
    k = len(classes)
    labels = np.asarray(labels)
    suggested = np.asarray(suggested)
    flagged = np.asarray(flagged, dtype=bool)
    use = (labels >= 0) & (labels < k)
    if scored is not None:
        use &= np.asarray(scored, dtype=bool)
    lab = labels[use]
    n = np.bincount(lab, minlength=k)
    agree = np.bincount(lab[suggested[use] == lab], minlength=k)
    nflag = np.bincount(lab[flagged[use]], minlength=k)
    out = []
    for c in range(k):
        a = agree[c] / n[c] if n[c] else float("nan")
        out.append(ClassReliability(str(classes[c]), int(n[c]), float(a), int(nflag[c]),
                                    bool(not n[c] or a >= min_agreement)))
    return out


def what_would_help(config: Mapping, weak: Sequence[ClassReliability], device: str | None = None,
                    names: Mapping[str, str] | None = None) -> list[str]:
    """The changes to a run's settings (``config.json``) likely to make the model learn the
    ``weak`` classes, in the order worth trying: more images of a class with fewer than
    :data:`FEW_IMAGES`, pretrained weights (the run started from random ones), a GPU (the run
    trained on a CPU; ``device`` as recorded, if known), more epochs (fewer than the paper's 150).
    Classes are called by their display names (:func:`class_names`)."""
    names = class_names(config, names)
    out = []
    small = [names.get(r.name, r.name) for r in weak if r.images < FEW_IMAGES]
    if small:
        out.append("more images of " + ", ".join(small))
    weights = config.get("weights_loaded", {}).get("source") if isinstance(config.get("weights_loaded"), Mapping) \
        else None
    if not config.get("weights") or weights == "random":
        out.append("pretrained weights (the model here started from random ones)")
    if (device or config.get("device", "auto")) in ("cpu",) or int(config.get("image_size", 224)) < 224:
        out.append("a GPU, with the paper's setting (a larger model at full image size)")
    if int(config.get("epochs", 150)) < 150:
        out.append(f"more epochs (this run trained {int(config['epochs'])})")
    return out


def class_names(config: Mapping, names: Mapping[str, str] | None = None) -> dict[str, str]:
    """Display name per class code: those the run was trained with (``class_names`` of its
    config, e.g. ``nv`` → ``melanocytic nevus``), overridden by ``names`` (saved since)."""
    return {**(config.get("class_names") or {}), **(names or {})}


def reliability_note(rel: Sequence[ClassReliability], config: Mapping, device: str | None = None,
                     names: Mapping[str, str] | None = None) -> str | None:
    """The sentence for the pages (Markdown): which classes' flags are unreliable and what would
    help; None when every class is reliable. A class is called by its display name in bold,
    its code beside it (``**melanocytic nevus** (nv: 12% of 40)``; :func:`class_names`)."""
    weak = [r for r in rel if not r.reliable]
    if not weak:
        return None
    shown = class_names(config, names)
    parts = [f"**{shown.get(r.name, r.name)}** ("
             + (f"{r.name}: " if shown.get(r.name, r.name) != r.name else "")
             + f"{100 * r.agreement:.0f}% of {r.images:,})" for r in weak]
    text = ("The model agrees with fewer than half of the labels of " + ", ".join(parts)
            + ": it has not yet learnt to recognise " + ("this class" if len(weak) == 1 else "these classes")
            + ", so its flags there are **unreliable** — a flag says more about the model than about the label.")
    helps = what_would_help(config, weak, device, names)
    if helps:
        text += " What would help: " + "; ".join(helps) + "."
    return text

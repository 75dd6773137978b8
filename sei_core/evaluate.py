"""Held-out evaluation: how well a run's final model classifies images it never trained on.

:func:`evaluate` reads a test label file (any dialect and columns the product reads),
refuses it if a test image is also one of the run's training images (:func:`find_leaks`: the
same path, or a different path to the same file content), decodes the test images at the
run's resolution, predicts them with the run's final model and writes the scores into
``<run>/evaluation.json`` (:data:`EVALUATION_FILE`).

The run's final model is that of each complementary run (``run<i>/checkpoint.pt``, the state
after its last epoch); their class probabilities — the auxiliary output left out,
renormalised over the ``K`` classes — are averaged. A run whose checkpoints were removed
(``sei bench`` without ``--keep-checkpoints``) cannot be evaluated.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import dataset as ds_mod
from .decode import decode_images
from .files import atomic_write_json
from .labels import LABEL_COL, PATH_COL, source_kind
from .metrics import classification_report
from .errors import Fix, SeiError, resume_fix
from .runs import Run, RunError, State, now

EVALUATION_FILE = "evaluation.json"
#: Leaks listed by name in a refusal (the count says how many there are in all).
SHOWN_LEAKS = 10


class EvaluationError(SeiError, ValueError):
    """The evaluation cannot be done as asked; the fix says what to do."""


# ------------------------------------------------------------------------------ leaks


def _content_keys(ds: ds_mod.LabeledImages, wanted: np.ndarray) -> dict[int, str]:
    """BLAKE2b of the bytes of the samples ``wanted`` (files, or the array rows of an .npz)."""
    keys = {}
    for i in np.flatnonzero(wanted):
        h = hashlib.blake2b(digest_size=20)
        if ds.array is not None:
            h.update(np.ascontiguousarray(ds.array[i]).tobytes())
        else:
            try:
                with open(ds.file_of(int(i)), "rb") as f:
                    while block := f.read(1 << 20):
                        h.update(block)
            except OSError:
                continue
        keys[int(i)] = h.hexdigest()
    return keys


def _sizes(ds: ds_mod.LabeledImages) -> np.ndarray:
    """Byte size of every sample (-1 where the file cannot be read)."""
    if ds.array is not None:
        return np.full(len(ds), int(np.prod(ds.array.shape[1:])), dtype=np.int64)
    out = np.full(len(ds), -1, dtype=np.int64)
    for i in range(len(ds)):
        try:
            out[i] = os.stat(ds.file_of(i)).st_size
        except OSError:
            pass
    return out


def _abspaths(ds: ds_mod.LabeledImages) -> list[str | None]:
    if ds.kind == "npz":
        return [None] * len(ds)
    return [os.path.normpath(os.path.abspath(ds.file_of(i))) for i in range(len(ds))]


def find_leaks(train: ds_mod.LabeledImages, test: ds_mod.LabeledImages) -> list[tuple[int, int, str]]:
    """Test images that are also training images: ``(test index, train index, how)`` with
    ``how`` ``"same path"`` or ``"same content"``, in test order.

    Content is compared only where it can be equal: files are first grouped by byte size
    (one ``stat`` each), and only the files whose size occurs on both sides are hashed, so a
    million training images cost a million ``stat`` calls and a few hashes, not a million
    file reads.
    """
    leaks: dict[int, tuple[int, str]] = {}
    train_paths = _abspaths(train)
    at = {p: i for i, p in enumerate(train_paths) if p is not None}
    for j, p in enumerate(_abspaths(test)):
        if p is not None and p in at:
            leaks[j] = (at[p], "same path")
    s_train, s_test = _sizes(train), _sizes(test)
    common = np.intersect1d(s_train[s_train >= 0], s_test[s_test >= 0])
    if len(common):
        test_wanted = np.isin(s_test, common)
        test_wanted[list(leaks)] = False
        if test_wanted.any():
            train_wanted = np.isin(s_train, np.unique(s_test[test_wanted]))
            by_key: dict[str, int] = {}
            for i, key in _content_keys(train, train_wanted).items():
                by_key.setdefault(key, i)
            for j, key in _content_keys(test, test_wanted).items():
                if key in by_key:
                    leaks[j] = (by_key[key], "same content")
    return [(j, i, how) for j, (i, how) in sorted(leaks.items())]


def leak_message(leaks: list[tuple[int, int, str]], train: ds_mod.LabeledImages,
                 test: ds_mod.LabeledImages) -> str:
    """The refusal for :func:`find_leaks`'s findings, naming the first :data:`SHOWN_LEAKS`."""
    shown = "; ".join(f"{test.where(j)} is {'the training image' if how == 'same path' else 'the same file as training image'} "
                      f"{train.ids[i]!r}" for j, i, how in leaks[:SHOWN_LEAKS])
    more = f" (and {len(leaks) - SHOWN_LEAKS} more)" if len(leaks) > SHOWN_LEAKS else ""
    return (f"{len(leaks)} of the {len(test)} test images of {test.source} are also training images of the run: "
            f"{shown}{more}. A test set must hold images the model never trained on; remove these rows from the "
            f"test file, or train on a label file without them")


# ------------------------------------------------------------------------------ the model


def _training_images(run: Run) -> ds_mod.LabeledImages:
    """The run's training samples as a data set (for the leak check; no image is opened)."""
    cfg = run.config()
    data = cfg.get("data", "")
    kw = ({"path_column": cfg.get("path_column") or PATH_COL, "label_column": cfg.get("label_column") or LABEL_COL}
          if source_kind(data) == "csv" else {})
    ds = ds_mod.load(data, split=cfg.get("split", "train"), check_images=False, **kw)
    pos = {sid: i for i, sid in enumerate(ds.ids)}
    keep = [pos[s] for s in run.sample_ids() if s in pos]
    return ds_mod.subset(ds, keep)


def final_checkpoints(run: Run) -> list[Path]:
    """The checkpoint of every complementary run, or an :class:`EvaluationError` saying why
    the run has no final model."""
    state = run.state()
    if state != State.FINISHED:
        raise EvaluationError(f"{run.path} is {state}, not finished",
                              "evaluate it when training is done"
                              + (" (" + resume_fix(run.path) + ")" if state.resumable else ""))
    files = [run.checkpoint(i) for i in range(1, run.n_sub_runs() + 1)]
    gone = [str(f) for f in files if not f.is_file()]
    if gone:
        raise EvaluationError(f"{run.path} no longer has its final model ({', '.join(gone)} removed, as a benchmark "
                              "does unless it keeps checkpoints)",
                              Fix("train it again to evaluate it (`sei bench --keep-checkpoints` keeps them)",
                                  "train it again to evaluate it"))
    return files


def predict(run: Run, images: np.ndarray, *, device: str = "cpu", batch_size: int | None = None) -> tuple[np.ndarray, list[int]]:
    """Class probabilities ``(N, K)`` of the run's final model for ``images`` (``(N, 3, S, S)``
    uint8 at the run's image size), averaged over the complementary runs; and the epoch of
    each checkpoint used. The model is built once and each checkpoint loaded into it; batches
    are large at small image sizes (a prompt classifier encodes its prompts once per batch)."""
    import torch

    from .models import build_model
    from .train import TrainingState

    cfg = run.config()
    k = len(cfg["classes"])
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    total = np.zeros((len(images), k), dtype=np.float64)
    epochs = []
    files = final_checkpoints(run)
    size = int(cfg["image_size"])
    batch_size = batch_size or max(32, min(2048, 2048 * 32 * 32 // (size * size)))
    model = build_model(cfg["model"], cfg["prompts"], weights=None, image_size=size)
    for f in files:
        weights, epoch = TrainingState.read_model(f, dev)
        model.load_state_dict(weights)
        model.to(dev).eval()
        epochs.append(epoch)
        with torch.inference_mode():
            for lo in range(0, len(images), batch_size):
                x = torch.from_numpy(np.array(images[lo:lo + batch_size])).to(dev).float().div_(255)
                logits = model(x).float()[:, :k]  # the auxiliary output K is no class
                total[lo:lo + len(x)] += torch.softmax(logits, dim=1).cpu().numpy()
    return total / len(files), epochs


# ------------------------------------------------------------------------------ evaluate


def load_test_set(run: Run, test: str | Path, path_column: str | None = None,
                  label_column: str | None = None) -> ds_mod.LabeledImages:
    """The test label file, read with the run's columns unless others are given, its labels
    checked against the run's classes (every unknown label listed at once)."""
    cfg = run.config()
    kw = {}
    if source_kind(test) == "csv":
        kw = {"path_column": path_column or cfg.get("path_column") or PATH_COL,
              "label_column": label_column or cfg.get("label_column") or LABEL_COL}
    ds = ds_mod.load(test, split="test" if str(test).endswith(".npz") else "train", check_images="exists", **kw)
    classes = list(cfg["classes"])
    unknown = [c for c in ds.classes if c not in classes]
    if unknown:
        counts = ds.class_counts()
        raise EvaluationError(f"{ds.source}: {len(unknown)} label(s) are not classes of the run "
                              f"({', '.join(f'{c!r} ({counts[c]} images)' for c in unknown)}); the run knows "
                              f"{', '.join(map(repr, classes))}. Fix the labels, or leave those rows out")
    index = {c: i for i, c in enumerate(classes)}
    remap = np.array([index[c] for c in ds.classes], dtype=np.int64)
    ds.labels, ds.classes = remap[ds.labels], classes
    return ds


def evaluate(run: Run | str | Path, test: str | Path, *, path_column: str | None = None,
             label_column: str | None = None, device: str = "cpu", workers: int = 2,
             cache_dir: str | Path | None = None, write: bool = True,
             log: Callable[[str], None] | None = None) -> dict:
    """Evaluate the run's final model on the held-out images of ``test``; returns (and with
    ``write`` stores in ``<run>/evaluation.json``) the scores of
    :func:`sei_core.metrics.classification_report` with what was evaluated."""
    say = log or (lambda m: None)
    run = Run(run) if not isinstance(run, Run) else run
    if not run.exists():
        raise RunError(f"{run.path} is not a run directory (no config.json)")
    t0 = time.monotonic()
    final_checkpoints(run)  # fail before decoding anything
    cfg = run.config()
    test_ds = load_test_set(run, test, path_column, label_column)
    train_ds = _training_images(run)
    leaks = find_leaks(train_ds, test_ds)
    if leaks:
        raise EvaluationError(leak_message(leaks, train_ds, test_ds))
    t_check = time.monotonic() - t0
    size = int(cfg["image_size"])
    images, problems = decode_images(test_ds, size, workers=workers,
                                            cache_dir=cache_dir or cfg.get("cache_dir") or run.path / "cache")
    t_decode = time.monotonic() - t0 - t_check
    probs, epochs = predict(run, images, device=device)
    report = classification_report(test_ds.labels, probs, list(cfg["classes"]))
    seconds = time.monotonic() - t0
    result = {"test_file": str(Path(test).absolute()), "n_images": len(test_ds),
              "path_column": test_ds.path_column, "label_column": test_ds.label_column,
              **report, "checkpoint_epochs": epochs, "epochs": int(cfg.get("epochs", 0)),
              "seconds": round(seconds, 2), "check_seconds": round(t_check, 2),
              "decode_seconds": round(t_decode, 2), "evaluated_at": now()}
    if write:
        atomic_write_json(run.path / EVALUATION_FILE, result)
    say(f"{run.path}: {len(test_ds)} test images, accuracy {report['accuracy']:.3f}, balanced accuracy "
        f"{report['balanced_accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f} ({seconds:.1f} s)")
    return result


def evaluation(run: Run | str | Path) -> dict | None:
    """The run's stored evaluation (None if it was not evaluated)."""
    import json

    run = Run(run) if not isinstance(run, Run) else run
    try:
        return json.loads((run.path / EVALUATION_FILE).read_text())
    except (OSError, ValueError):
        return None


def summary_lines(result: dict) -> list[str]:
    """A short text report of an evaluation (for the terminal)."""
    lines = [f"{result['n_images']} test images of {result['test_file']}",
             f"accuracy           {result['accuracy']:.3f}",
             f"balanced accuracy  {result['balanced_accuracy']:.3f}",
             f"macro-F1           {result['macro_f1']:.3f}",
             f"macro AUROC        {result['macro_auroc']:.3f}", "recall per class:"]
    for c, m in result["per_class"].items():
        if m["n"]:
            lines.append(f"  {c:<40} {m['recall']:.3f}  ({m['n']} images)")
    return lines


"""Out-of-sample probabilities by k-fold cross-validation.

Two consumers need predictions from a model that never trained on the sample it predicts:
Confident Learning (cleanlab wants out-of-sample ``pred_probs``) and the reference
classifier whose confusion matrix calibrates the noise of a benchmark (eq. 5 of the paper).
Both train the same model with the same budget as an SEI run (:class:`~sei_core.config.TrainConfig`:
model, weights, image size, epochs, optimiser, schedule, augmentation) but on the ``K``
real classes only — no auxiliary class — on ``k - 1`` folds, and predict the held-out fold
in eval mode without augmentation.

Folds are stratified by the labels in the data file and seeded by ``config.seed``. Each
fold's probabilities are saved (atomically) in the output folder as soon as it finishes,
so an interrupted cross-validation redoes at most the fold it was in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import dataset as ds_mod
from ..decode import decode_images
from .. import feed as feed_mod
from ..models import build_model, on_device
from ..files import atomic_write
from ..config import TrainConfig, pick_device
from ..train import Stepper, batch_count


@dataclass
class CrossValResult:
    """Held-out probabilities of every sample (rows aligned with ``ids``)."""

    ids: list[str]
    classes: list[str]
    labels: np.ndarray  # (N,) the labels trained on (from the data file)
    probs: np.ndarray  # (N, K) out-of-sample probabilities
    fold: np.ndarray  # (N,) 0-based fold that held each sample out
    seconds: float  # training + prediction time summed over the folds


def stratified_folds(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold index ``0..k-1`` of every sample: stratified by label, shuffled with ``seed``.

    Uses ``sklearn.model_selection.StratifiedKFold``; a class with fewer than ``k`` samples
    cannot appear in every fold (sklearn warns) but is still assigned.
    """
    import warnings

    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    if k < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {k}")
    if len(labels) < k:
        raise ValueError(f"{len(labels)} samples are too few for {k} folds")
    fold = np.empty(len(labels), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels)
        for f, (_, test) in enumerate(splits):
            fold[test] = f
    return fold


def cross_val_probs(
    config: TrainConfig,
    folds: int,
    out: str | Path,
    *,
    classes: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> CrossValResult:
    """k-fold out-of-sample probabilities for the data file of ``config``.

    Parameters
    ----------
    config : the training settings (``config.data`` is the label file whose labels are
        learned; ``config.cache_dir`` is used for the decoded images if set).
    folds : number of folds ``k`` (at least 2).
    out : folder for ``folds.npy`` and one ``fold_<f>.npz`` per finished fold; an existing
        fold file is reused, not retrained.
    classes : the class list (column order of ``probs``); default the sorted labels found.

    Returns
    -------
    :class:`CrossValResult`.
    """
    config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = ds_mod.load(config.data, split=config.split, classes=classes,
                       skip_unreadable=config.skip_unreadable, max_pixels=config.max_pixels)
    images, problems = decode_images(data, config.image_size, workers=config.workers,
                                            cache_dir=config.cache_dir or out / "cache",
                                            skip_unreadable=config.skip_unreadable)
    data, rows = ds_mod.drop_undecodable(data, problems)
    n, k = len(data), len(data.classes)
    class_prompts = config.resolve_prompts(data.prompts()).for_classes(data.classes)[:k]  # no auxiliary class here

    fold_file = out / "folds.npy"
    if fold_file.is_file() and len(np.load(fold_file)) == n:
        fold = np.load(fold_file)
    else:
        fold = stratified_folds(data.labels, folds, seed=config.seed)
        atomic_write(fold_file, lambda f: np.save(f, fold))
    device = pick_device(config.device)
    feed = feed_mod.ImageFeed(images, device, feed_mod.memory_budget(config.memory_budget), rows=rows)
    probs = np.zeros((n, k), dtype=np.float64)
    seconds = 0.0
    for f in range(int(fold.max()) + 1):
        path = out / f"fold_{f + 1}.npz"
        if path.is_file():
            with np.load(path) as z:
                probs[z["idx"]] = z["probs"]
                seconds += float(z["seconds"])
            continue
        t0 = time.monotonic()
        train_idx, test_idx = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        log(f"fold {f + 1}/{int(fold.max()) + 1}: training on {len(train_idx)}, predicting {len(test_idx)}")
        p = _fit_predict(config, class_prompts, feed, data.labels, train_idx, test_idx, device, f)
        dt = time.monotonic() - t0
        probs[test_idx] = p
        seconds += dt
        atomic_write(path, lambda fh: np.savez(fh, idx=test_idx, probs=p, seconds=np.float64(dt)))
    return CrossValResult(ids=list(data.ids), classes=list(data.classes), labels=data.labels.copy(),
                          probs=probs, fold=fold, seconds=seconds)


def saved_probs(out: str | Path, n: int) -> np.ndarray | None:
    """The out-of-sample probabilities a finished :func:`cross_val_probs` saved in ``out``
    (rows in the data file's order), or None while any fold is missing."""
    out = Path(out)
    fold_file = out / "folds.npy"
    if not fold_file.is_file():
        return None
    fold = np.load(fold_file)
    if len(fold) != n:
        return None
    probs = None
    for f in range(int(fold.max()) + 1):
        path = out / f"fold_{f + 1}.npz"
        if not path.is_file():
            return None
        with np.load(path) as z:
            if probs is None:
                probs = np.zeros((n, z["probs"].shape[1]))
            probs[z["idx"]] = z["probs"]
    return probs


def _fit_predict(config: TrainConfig, prompts: list[str], feed: feed_mod.ImageFeed, labels: np.ndarray,
                 train_idx: np.ndarray, test_idx: np.ndarray, device: torch.device, f: int) -> np.ndarray:
    """Train on ``train_idx`` with the schedule of ``config``; softmax of ``test_idx``."""
    seed = config.seed * 1000 + 100 + f
    torch.manual_seed(seed)
    model = on_device(build_model(config.model, prompts, weights=config.weights, image_size=config.image_size), device)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=config.resolved_milestones(), gamma=config.gamma)
    order_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    step = Stepper(model, opt, scaler, device, config.augment, aug_gen, use_amp, amp_dtype)
    train_t = torch.from_numpy(train_idx)
    n_batches = batch_count(len(train_idx), config.batch_size)
    for _ in range(config.epochs):
        step.epoch(feed, y_all, train_t[torch.randperm(len(train_idx), generator=order_gen)], n_batches)
        sched.step()
    model.eval()
    out = []
    with torch.no_grad():
        test_batches = torch.tensor_split(torch.from_numpy(test_idx), batch_count(len(test_idx), config.batch_size))
        for _, x in feed.batches(test_batches):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                logits = model(x)
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    return np.concatenate(out).astype(np.float64)

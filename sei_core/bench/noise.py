"""Seeded label-noise injection for benchmarks, and the files that record it.

Both noise models corrupt an *exact* number of samples, ``n = ⌊rate·N + 0.5⌋`` (``rate·N``
rounded half up), chosen uniformly at random without replacement, so the realised noise rate
is the requested one up to rounding. Each corrupted label is moved to a class *other* than
its own; which one depends on the model:

- :func:`symmetric_noise`: uniform over the ``K - 1`` other classes.
- :func:`confusion_calibrated_noise`: ``p(a→b) ∝ exp(T_ab)`` from a reference classifier's
  confusion matrix ``T`` (eq. 5 of the paper), so labels drift towards classes that are
  genuinely confusable.

Randomness comes only from ``np.random.default_rng(seed)``: the same inputs and seed give
the same noisy labels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..files import atomic_write_csv
from ..labels import read_table

#: Tolerance on a confusion-matrix row summing to 1.
_ROW_SUM_TOL = 1e-6


def _check_labels(labels: np.ndarray, n_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
    if n_classes < 2:
        raise ValueError(f"label noise needs at least 2 classes, got n_classes={n_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"labels must lie in [0, {n_classes}), found [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64)


def n_corrupted(n_samples: int, rate: float) -> int:
    """Number of labels the noise models corrupt: ``⌊rate·N + 0.5⌋``."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    return int(np.floor(rate * n_samples + 0.5))


def _corrupt(
    labels: np.ndarray, transition: np.ndarray, rate: float, seed: int | None
) -> np.ndarray:
    """Move ``n_corrupted(N, rate)`` random samples of class ``a`` to ``b ~ transition[a]``.

    ``transition`` is ``(K, K)`` with zero diagonal and rows summing to 1.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    chosen = rng.choice(n, size=n_corrupted(n, rate), replace=False)
    noisy = labels.copy()
    k = transition.shape[0]
    for a in range(k):
        idx = chosen[labels[chosen] == a]
        if idx.size:
            noisy[idx] = rng.choice(k, size=idx.size, p=transition[a])
    return noisy


def symmetric_noise(
    labels: np.ndarray, n_classes: int, rate: float, seed: int | None = 0
) -> np.ndarray:
    """Symmetric (uniform) label noise.

    Exactly ``⌊rate·N + 0.5⌋`` samples, chosen uniformly at random, get a label drawn
    uniformly from the ``K - 1`` classes other than their own; the rest keep theirs. (So each
    label is kept with probability ``1 - rate`` up to rounding, but the number of flips is
    fixed rather than Binomial.)

    Parameters
    ----------
    labels : (N,) integer labels in ``[0, n_classes)``.
    n_classes : number of classes ``K`` (at least 2).
    rate : fraction of samples to corrupt, in ``[0, 1]``.
    seed : seed of ``np.random.default_rng``.

    Returns
    -------
    (N,) int64 noisy labels; ``noisy != labels`` exactly where a sample was corrupted.
    """
    labels = _check_labels(labels, n_classes)
    transition = np.full((n_classes, n_classes), 1.0 / (n_classes - 1))
    np.fill_diagonal(transition, 0.0)
    return _corrupt(labels, transition, rate, seed)


def confusion_calibrated_noise(
    labels: np.ndarray,
    confusion: np.ndarray,
    rate: float,
    seed: int | None = 0,
    temperature: float = 1.0,
) -> np.ndarray:
    """Confusion-calibrated label noise (eq. 5 of the paper).

    ``T`` is the row-normalised confusion matrix of a reference classifier trained on clean
    labels (``T_ab`` = fraction of true class ``a`` predicted as ``b``). Exactly
    ``⌊rate·N + 0.5⌋`` samples, chosen uniformly at random, are corrupted; a corrupted sample
    of class ``a`` moves to ``b ≠ a`` with

        p(a→b) = exp(T_ab / τ) / Σ_{k≠a} exp(T_ak / τ).

    With ``τ = 1`` (the paper) and rates in ``[0, 1]``, the most likely target is at most
    ``e`` times as likely as the least likely one, so the noise stays close to symmetric for
    many classes; a smaller ``temperature`` ``τ`` concentrates it on the confused classes.
    A row of zeros (a class absent from the reference evaluation) gives uniform targets.

    Parameters
    ----------
    labels : (N,) integer labels in ``[0, K)``.
    confusion : (K, K) row-normalised confusion matrix, e.g. from
        ``confusion_matrix(true, pred, K, normalize=True)``.
    rate : fraction of samples to corrupt, in ``[0, 1]``.
    seed : seed of ``np.random.default_rng``.
    temperature : ``τ > 0``.

    Returns
    -------
    (N,) int64 noisy labels.
    """
    t = np.asarray(confusion, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError(f"confusion must be a square (K, K) matrix, got shape {t.shape}")
    if not np.isfinite(t).all():
        raise ValueError("confusion contains NaN or infinite values")
    if t.min() < 0 or t.max() > 1:
        raise ValueError(
            "confusion must hold rates in [0, 1] (row-normalised), found values in "
            f"[{t.min():g}, {t.max():g}]; use confusion_matrix(..., normalize=True)"
        )
    sums = t.sum(axis=1)
    bad = ~(np.isclose(sums, 1.0, atol=_ROW_SUM_TOL) | (sums == 0))
    if bad.any():
        raise ValueError(
            f"each confusion row must sum to 1 (or be all zero); rows {np.flatnonzero(bad)} "
            f"sum to {sums[bad]}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    labels = _check_labels(labels, t.shape[0])
    weights = np.exp((t - t.max(axis=1, keepdims=True)) / temperature)
    np.fill_diagonal(weights, 0.0)
    transition = weights / weights.sum(axis=1, keepdims=True)
    return _corrupt(labels, transition, rate, seed)


def confusion_matrix(
    true: np.ndarray, pred: np.ndarray, n_classes: int, normalize: bool = True
) -> np.ndarray:
    """Confusion matrix ``C[a, b]`` = number of samples of true class ``a`` predicted ``b``.

    With ``normalize=True`` each row is divided by its total, giving rates
    ``T_ab = C_ab / Σ_k C_ak``; rows of classes with no samples stay all zero.

    Returns
    -------
    (K, K) int64 counts, or float64 rates if ``normalize``.
    """
    true = np.asarray(true)
    pred = np.asarray(pred)
    if true.shape != pred.shape or true.ndim != 1:
        raise ValueError(
            f"true and pred must be 1-D of equal length, got {true.shape}, {pred.shape}"
        )
    for name, arr in (("true", true), ("pred", pred)):
        if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
            raise ValueError(f"{name} labels must lie in [0, {n_classes})")
    counts = np.bincount(
        true.astype(np.int64) * n_classes + pred.astype(np.int64), minlength=n_classes**2
    ).reshape(n_classes, n_classes)
    if not normalize:
        return counts
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)


def read_label_table(path: str | os.PathLike) -> pd.DataFrame:
    """A ``path,label[,...]`` CSV (any dialect :func:`sei_core.labels.read_table` reads) with
    every column as text and ``path``/``label`` without surrounding spaces.

    Raises :class:`sei_core.labels.TableError` (a ``ValueError``) naming the file and line."""
    table = read_table(path)
    return table.frame.assign(path=table.paths(), label=table.labels())


def write_noisy_label_file(
    table: pd.DataFrame,
    noisy_labels: Sequence[str],
    labels_out: str | os.PathLike,
    truth_out: str | os.PathLike,
) -> pd.DataFrame:
    """Write the noisy label CSV and the ground-truth CSV that records the corruption.

    Parameters
    ----------
    table : the clean table, columns ``path``, ``label`` (class names) and any others, as
        read by :func:`read_label_table`.
    noisy_labels : (N,) noisy class *names*, row-aligned with ``table``.
    labels_out : destination of ``table`` with ``label`` replaced by ``noisy_labels`` (all
        other columns and the column order untouched).
    truth_out : destination of ``path,true_label,given_label,is_noisy`` (``is_noisy`` is
        ``True``/``False``, ``given_label != true_label``).

    Both files are written atomically (temp file + ``os.replace``), truth file first.

    Returns
    -------
    The truth table that was written.
    """
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise ValueError(f"table is missing column(s) {sorted(missing)}")
    noisy = np.asarray(noisy_labels, dtype=object)
    if noisy.shape != (len(table),):
        raise ValueError(f"noisy_labels has shape {noisy.shape}, table has {len(table)} rows")
    if not all(isinstance(v, str) for v in noisy):
        raise ValueError("noisy_labels must be class names (str), not class indices")
    labels_out, truth_out = Path(labels_out), Path(truth_out)
    if labels_out.resolve() == truth_out.resolve():
        raise ValueError(f"labels_out and truth_out are the same file: {labels_out}")

    true = table["label"].astype(str).to_numpy(dtype=object)
    truth = pd.DataFrame(
        {
            "path": table["path"].to_numpy(),
            "true_label": true,
            "given_label": noisy,
            "is_noisy": noisy != true,
        }
    )
    noisy_table = table.copy()
    noisy_table["label"] = noisy
    atomic_write_csv(truth_out, truth)
    atomic_write_csv(labels_out, noisy_table)
    return truth

"""Detection quality of a mislabeled-sample detector against known noise.

``is_noisy`` is the boolean ground truth ``(N,)`` (True = the given label is wrong), the
positive class throughout. Scores follow the convention of :mod:`sei_core.scores`: **lower
score = more suspicious**, so the ranking metrics use ``-scores`` as the positive-class
score. Pure NumPy; the results match ``sklearn.metrics`` (see the tests).
"""

from __future__ import annotations

import numpy as np


def _check_truth(is_noisy: np.ndarray, n: int | None = None) -> np.ndarray:
    y = np.asarray(is_noisy)
    if y.ndim != 1:
        raise ValueError(f"is_noisy must be 1-D, got shape {y.shape}")
    if n is not None and len(y) != n:
        raise ValueError(f"is_noisy has {len(y)} entries, expected {n}")
    return y.astype(bool)


def _check_scores(scores: np.ndarray, is_noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values; drop those samples first")
    return s, _check_truth(is_noisy, len(s))


def precision_recall_f1(flagged: np.ndarray, is_noisy: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of a flag decision.

    ``precision = TP/(TP+FP)``, ``recall = TP/(TP+FN)``, ``F1 = 2PR/(P+R)``, each in
    ``[0, 1]``. A 0/0 is defined as 0: nothing flagged gives precision 0, no noisy samples
    gives recall 0, and ``P + R = 0`` gives F1 0 (so a detector is never rewarded for
    flagging nothing).
    """
    flagged = np.asarray(flagged).astype(bool)
    if flagged.ndim != 1:
        raise ValueError(f"flagged must be 1-D, got shape {flagged.shape}")
    y = _check_truth(is_noisy, len(flagged))
    tp = int((flagged & y).sum())
    n_flagged = int(flagged.sum())
    n_noisy = int(y.sum())
    precision = tp / n_flagged if n_flagged else 0.0
    recall = tp / n_noisy if n_noisy else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given the mean of their ranks."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    group_rank = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def auroc(scores: np.ndarray, is_noisy: np.ndarray) -> float:
    """Area under the ROC curve for detecting noisy samples by *low* score.

    Mann–Whitney form on ``s = -scores``:
    ``AUROC = (Σ_{i noisy} rank(s_i) - n₊(n₊+1)/2) / (n₊ n₋)`` with average ranks for ties,
    i.e. ``P(s_noisy > s_clean) + ½ P(s_noisy = s_clean)`` (equal to sklearn's trapezoidal
    ``roc_auc_score``). Returns NaN when only one class is present.
    """
    s, y = _check_scores(scores, is_noisy)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(-s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, is_noisy: np.ndarray) -> float:
    """Average precision for detecting noisy samples by *low* score.

    sklearn's step-wise definition, ``AP = Σ_n (R_n - R_{n-1}) P_n``, over the thresholds
    ``n`` at each distinct value of ``s = -scores`` taken in decreasing order (tied samples
    enter together; ``R_0 = 0``). Returns NaN when there is no noisy sample.
    """
    s, y = _check_scores(scores, is_noisy)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")  # most suspicious (lowest score) first
    s_sorted, y_sorted = s[order], y[order]
    # last index of each run of equal scores: one threshold per distinct value
    last = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    tp = np.cumsum(y_sorted)[last]
    precision = tp / (last + 1)
    recall = tp / n_pos
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def detection_report(
    scores: np.ndarray, flagged: np.ndarray, is_noisy: np.ndarray
) -> dict[str, float]:
    """``precision``, ``recall``, ``f1`` of ``flagged`` and ``auroc``, ``average_precision``
    of ``scores`` (lower = more suspicious), all against ``is_noisy``."""
    report = precision_recall_f1(flagged, is_noisy)
    report["auroc"] = auroc(scores, is_noisy)
    report["average_precision"] = average_precision(scores, is_noisy)
    return report


def classification_report(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """How well a classifier's predictions match the true labels of held-out images.

    ``y_true`` is ``(N,)`` class indices into ``classes``, ``probs`` ``(N, K)`` predicted
    probabilities (the prediction is their argmax). Returns ``accuracy``; ``balanced_accuracy``
    (the mean recall over the classes present in ``y_true``, as sklearn's); ``macro_f1`` (the
    mean F1 over the classes present in ``y_true`` or predicted, as sklearn's ``f1_score``
    with ``average="macro"``); ``macro_auroc`` (the mean one-vs-rest AUROC of each present
    class's probability, NaN if fewer than two classes are present); ``per_class`` with each
    class's ``n``, ``recall``, ``precision`` and ``f1`` (NaN where undefined); and ``confusion``
    (``K × K`` counts, rows true, columns predicted).
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    k = len(classes)
    if p.ndim != 2 or p.shape != (len(y), k):
        raise ValueError(f"probs must be (N, K) = ({len(y)}, {k}), got {p.shape}")
    if len(y) and (y.min() < 0 or y.max() >= k):
        raise ValueError("y_true holds class indices outside 0 … K-1")
    pred = p.argmax(axis=1) if len(y) else y
    conf = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(conf).astype(np.float64)
    n_true, n_pred = conf.sum(axis=1), conf.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(n_true > 0, tp / n_true, np.nan)
        precision = np.where(n_pred > 0, tp / n_pred, np.nan)
        f1 = np.where(n_true + n_pred > 0, 2 * tp / (n_true + n_pred), np.nan)
    present = n_true > 0
    aucs = [auroc(-p[:, c], y == c) for c in np.flatnonzero(present)] if present.sum() > 1 else []
    return {
        "n": int(len(y)),
        "accuracy": float(tp.sum() / len(y)) if len(y) else float("nan"),
        "balanced_accuracy": float(np.nanmean(recall[present])) if present.any() else float("nan"),
        "macro_f1": float(np.mean(f1[present | (n_pred > 0)])) if len(y) else float("nan"),
        "macro_auroc": float(np.nanmean(aucs)) if len(aucs) else float("nan"),
        "per_class": {c: {"n": int(n_true[i]), "recall": float(recall[i]), "precision": float(precision[i]),
                          "f1": float(f1[i])} for i, c in enumerate(classes)},
        "confusion": conf.tolist(),
    }

"""Baseline detectors to compare SEI against: the formulas.

Every score here is ``(N,)`` with **lower = more likely mislabeled**, as in
:mod:`sei_core.scores`. All but :func:`confident_learning` are computed from the same
recorded training run as SEI (per-epoch records of shape ``(T, N)`` and the last epoch's
probabilities ``(N, K')``, where ``K'`` may include the auxiliary class). The registry of
methods (what each is computed on, its threshold rule) is :mod:`sei_core.methods`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sei_core.scores import EPS, entropy


def aum(margins: np.ndarray) -> np.ndarray:
    """Area Under the Margin (Pleiss et al., 2020): ``AUM_i = (1/T) Σ_t M_{t,i}``.

    Parameters
    ----------
    margins : (T, N) logit margins ``z_y - max_{k≠y} z_k`` per epoch
        (:func:`sei_core.scores.logit_margin`), recorded on the training samples.

    Returns
    -------
    (N,) mean margin; mislabeled samples keep the given label's logit below another's, so
    their AUM is low or negative.
    """
    return np.asarray(margins, dtype=np.float64).mean(axis=0)


def aum_threshold(
    aum_scores: np.ndarray, is_threshold_sample: np.ndarray, percentile: float = 99.0
) -> float:
    """AUM's own threshold: the ``percentile``-th percentile of the threshold samples' AUM.

    Threshold samples are those deliberately relabeled to the extra (fake) class, hence known
    to be mislabeled; a sample whose AUM is below ``τ = P_99({AUM_i : i threshold sample})``
    looks at least as mislabeled as 99% of them. Flag with ``scores.flag(aum_scores, τ)``
    (``AUM < τ``). The aux-class-mean alternative is :func:`sei_core.scores.aux_threshold`.
    Percentiles use NumPy's default linear interpolation.
    """
    aum_scores = np.asarray(aum_scores, dtype=np.float64)
    is_threshold_sample = np.asarray(is_threshold_sample, dtype=bool)
    if is_threshold_sample.shape != aum_scores.shape:
        raise ValueError(
            f"is_threshold_sample has shape {is_threshold_sample.shape}, "
            f"aum_scores {aum_scores.shape}"
        )
    if not is_threshold_sample.any():
        raise ValueError("no threshold samples: the AUM threshold needs at least one")
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    return float(np.percentile(aum_scores[is_threshold_sample], percentile))


def mistakenness(
    probs: np.ndarray, labels: np.ndarray, confidence: str = "entropy"
) -> np.ndarray:
    """FiftyOne's classification mistakenness at the last epoch, negated.

    As in ``fiftyone.brain.compute_mistakenness`` for ``Classification`` labels: with the
    model's confidence ``c`` in its prediction ``ŷ = argmax p``,

        m = (1 + c) / 2   if ŷ ≠ y   (confidently wrong → m near 1)
        m = (1 - c) / 2   if ŷ = y   (confidently right → m near 0)

    where ``c = exp(-H(p))`` (FiftyOne's ``use_logits=True``; ``H`` in nats) or
    ``c = max_k p_k`` (``use_logits=False``, the prediction's confidence).

    Parameters
    ----------
    probs : (N, K') last-epoch probabilities, all columns as the model output them (an
        auxiliary-class column is kept, so predicting it counts as disagreeing with ``y``).
    labels : (N,) given labels.
    confidence : ``"entropy"`` for ``c = exp(-H(p))``, ``"max_prob"`` for ``c = max p``.

    Returns
    -------
    (N,) ``-m`` in ``[-1, 0]`` (lower = more suspicious).
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.shape != (probs.shape[0],):
        raise ValueError(f"need probs (N, K) and labels (N,), got {probs.shape}, {labels.shape}")
    if confidence == "entropy":
        c = np.exp(-entropy(probs))
    elif confidence == "max_prob":
        c = probs.max(axis=1)
    else:
        raise ValueError(f"confidence must be 'entropy' or 'max_prob', got {confidence!r}")
    wrong = probs.argmax(axis=1) != labels
    m = (1.0 + np.where(wrong, c, -c)) / 2.0
    return -m


def cross_entropy_loss(p_label: np.ndarray) -> np.ndarray:
    """Per-sample cross-entropy loss ``-log p_y`` (elementwise, ``p_y`` clipped at 1e-12)."""
    return -np.log(np.clip(np.asarray(p_label, dtype=np.float64), EPS, None))


def small_loss_gmm(
    losses: np.ndarray, seed: int = 0, fit_mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Small-loss criterion with a 2-component 1-D Gaussian mixture (as in DivideMix).

    The losses are min-max scaled to ``[0, 1]``, a two-component GMM is fitted
    (``sklearn.mixture.GaussianMixture``, ``reg_covar=5e-4`` as in DivideMix), and

        score_i = P(clean component | ℓ_i),   the clean component = the lower-mean one,
        flagged_i = score_i < 0.5.

    Parameters
    ----------
    losses : (N,) per-sample losses, e.g. ``cross_entropy_loss(p_label).mean(axis=0)`` (the
        mean over epochs, used by :data:`METHODS`).
    seed : random state of the GMM initialisation.
    fit_mask : optional (N,) boolean: fit the scaling and the mixture on these samples only
        (e.g. leave out the auxiliary samples, whose loss is that of an extra class), then
        score every sample with it.

    Returns
    -------
    score : (N,) clean posterior in ``[0, 1]`` (lower = more suspicious).
    flagged : (N,) boolean. If all losses are equal nothing can be separated: score 1 and
        no flags.
    """
    from sklearn.mixture import GaussianMixture

    x = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"losses must be 1-D, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("losses contain NaN or infinite values")
    fit = x if fit_mask is None else x[np.asarray(fit_mask, dtype=bool)]
    span = fit.max() - fit.min() if fit.size else 0.0
    if fit.size < 2 or span == 0:
        return np.ones_like(x), np.zeros(x.shape, dtype=bool)
    lo = fit.min()
    gmm = GaussianMixture(n_components=2, reg_covar=5e-4, random_state=seed)
    gmm.fit(((fit - lo) / span)[:, None])
    clean = int(np.argmin(gmm.means_[:, 0]))
    score = gmm.predict_proba(((x - lo) / span)[:, None])[:, clean]
    return score, score < 0.5


def drop_aux_columns(probs: np.ndarray, n_classes: int) -> np.ndarray:
    """Keep the first ``n_classes`` columns and renormalise: ``p_k / Σ_{j<K} p_j``.

    Conditions the model's output on the sample being one of the real classes, removing the
    auxiliary class (columns ``≥ K``). Rows with no mass on real classes become uniform.
    """
    p = np.asarray(probs, dtype=np.float64)[:, :n_classes]
    total = p.sum(axis=1, keepdims=True)
    uniform = np.full_like(p, 1.0 / n_classes)
    return np.divide(p, total, out=uniform, where=total > 0)


def confident_learning(
    pred_probs: np.ndarray,
    labels: np.ndarray,
    n_classes: int | None = None,
    rank_method: str = "self_confidence",
    **kwargs: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Confident learning (Northcutt et al., 2021) via cleanlab.

    ``flagged`` comes from ``cleanlab.filter.find_label_issues(labels, pred_probs, **kwargs)``
    (default ``filter_by="prune_by_noise_rate"``), ``score`` from
    ``cleanlab.rank.get_label_quality_scores(labels, pred_probs, method=rank_method)``
    (``self_confidence`` = ``p_y``; lower = more suspicious).

    ``pred_probs`` must be **out-of-sample**: each row predicted by a model that did not
    train on that sample, e.g. from k-fold cross-validation (the k-fold training lives
    outside this module). In-sample probabilities of a network that memorised its labels
    make every label look right.

    Parameters
    ----------
    pred_probs : (N, K) or (N, K') out-of-sample probabilities.
    labels : (N,) given labels in ``[0, K)``.
    n_classes : the number of real classes ``K``. If given and ``pred_probs`` has more
        columns (an auxiliary class), they are dropped and rows renormalised
        (:func:`drop_aux_columns`). Samples labelled with the auxiliary class must be
        excluded beforehand.
    rank_method : ``method`` of ``get_label_quality_scores``.
    **kwargs : passed to ``find_label_issues``; ``n_jobs`` defaults to 1 (no
        multiprocessing) here. ``return_indices_ranked_by`` is not allowed (the mask is
        returned; rank by ``score``).

    Returns
    -------
    score : (N,) label quality in ``[0, 1]``.
    flagged : (N,) boolean mask of label issues.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    p = np.asarray(pred_probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or labels.shape != (p.shape[0],):
        raise ValueError(f"need pred_probs (N, K) and labels (N,), got {p.shape}, {labels.shape}")
    if n_classes is not None and p.shape[1] > n_classes:
        p = drop_aux_columns(p, n_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= p.shape[1]):
        raise ValueError(
            f"labels must lie in [0, {p.shape[1]}); exclude auxiliary-class samples first"
        )
    if kwargs.get("return_indices_ranked_by") is not None:
        raise ValueError("return_indices_ranked_by is not supported: rank by the returned score")
    kwargs.setdefault("n_jobs", 1)
    flagged = np.asarray(find_label_issues(labels, p, **kwargs), dtype=bool)
    score = np.asarray(get_label_quality_scores(labels, p, method=rank_method))
    return score, flagged


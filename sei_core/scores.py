"""Scores for finding mislabeled samples: signed entropy, its integral and thresholds.

Pure NumPy functions in the style of ``cleanlab.rank``: arrays in, arrays out, no state.
Conventions used throughout:

- ``probs``: predicted class probabilities, shape ``(N, K)``, rows summing to 1.
- ``labels``: the given (possibly noisy) labels, integer array of shape ``(N,)``.
- Per-epoch records are *epoch-major*: shape ``(T, N)`` for ``T`` epochs and ``N`` samples.
- For every score here, **lower means more likely mislabeled**.

The method is from "Entropy Never Lies: Signed Entropy Integral Unmasks Mislabeled Data"
(ICML 2026): a sample whose prediction agrees with its label contributes its entropy with a
plus sign, one whose prediction disagrees contributes it with a minus sign, and the sum over
training epochs separates clean samples (high) from mislabeled ones (strongly negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Probabilities are clipped to this before taking logarithms, so 0·log 0 counts as 0.
EPS = 1e-12


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax, ``exp(z_k - max z) / Σ_j exp(z_j - max z)``."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats, ``H(p) = -Σ_k p_k log p_k``, over the last axis.

    Ranges from 0 (one-hot) to ``log K`` (uniform).
    """
    p = np.asarray(probs, dtype=np.float64)
    return -(p * np.log(np.clip(p, EPS, None))).sum(axis=-1)


def signed_entropy(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Signed entropy of each sample: ``SE = H(p)`` if ``argmax p == y`` else ``-H(p)``.

    Parameters
    ----------
    probs : (N, K) array of probabilities.
    labels : (N,) integer array of given labels.

    Returns
    -------
    (N,) float array. Positive where the prediction agrees with the given label.
    """
    probs = np.asarray(probs)
    agree = probs.argmax(axis=-1) == np.asarray(labels)
    h = entropy(probs)
    return np.where(agree, h, -h)


def logit_margin(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUM margin (Pleiss et al. 2020): ``z_y - max_{k≠y} z_k`` for each sample.

    Positive where the given label has the largest logit.
    """
    z = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    assigned = z[rows, labels]
    others = z.copy()
    others[rows, labels] = -np.inf
    return assigned - others.max(axis=1)


@dataclass(frozen=True)
class EpochStatistics:
    """What is kept per sample for one epoch (every array has shape ``(N,)``)."""

    signed_entropy: np.ndarray
    entropy: np.ndarray
    prediction: np.ndarray
    p_label: np.ndarray
    margin: np.ndarray

    FIELDS = ("signed_entropy", "entropy", "prediction", "p_label", "margin")


def epoch_statistics(logits: np.ndarray, labels: np.ndarray) -> EpochStatistics:
    """Per-sample statistics of one epoch from its logits ``(N, K)`` and labels ``(N,)``.

    ``prediction = argmax p``, ``p_label = p_y``, ``margin`` is the AUM logit margin and
    ``signed_entropy``/``entropy`` are as in :func:`signed_entropy` and :func:`entropy`.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    p = softmax(logits)
    h = entropy(p)
    pred = p.argmax(axis=1)
    return EpochStatistics(
        signed_entropy=np.where(pred == labels, h, -h).astype(np.float32),
        entropy=h.astype(np.float32),
        prediction=pred.astype(np.int16),
        p_label=p[np.arange(len(labels)), labels].astype(np.float32),
        margin=logit_margin(logits, labels).astype(np.float32),
    )


def signed_entropy_integral(se: np.ndarray) -> np.ndarray:
    """SEI: the sum of signed entropy over epochs, ``SEI_i = Σ_t SE_{t,i}``.

    Parameters
    ----------
    se : (T, N) signed entropy per epoch and sample.

    Returns
    -------
    (N,) array; clean samples end high, mislabeled ones strongly negative.
    """
    return np.asarray(se, dtype=np.float64).sum(axis=0)


def windowed_sei(se: np.ndarray, start: int = 0, stop: int | None = None) -> np.ndarray:
    """SEI over epochs ``start <= t < stop`` only (0-based, Python slice semantics)."""
    se = np.asarray(se, dtype=np.float64)
    window = se[start:stop]
    if window.shape[0] == 0:
        raise ValueError(f"epoch window [{start}:{stop}] is empty for {se.shape[0]} epochs")
    return window.sum(axis=0)


def early_sei(se: np.ndarray) -> np.ndarray:
    """Ablation: SEI over the first half of the epochs, ``Σ_{t < ⌈T/2⌉} SE_t``."""
    return windowed_sei(se, 0, (np.shape(se)[0] + 1) // 2)


def late_sei(se: np.ndarray) -> np.ndarray:
    """Ablation: SEI over the second half of the epochs, ``Σ_{t ≥ ⌈T/2⌉} SE_t``."""
    t = np.shape(se)[0]
    return windowed_sei(se, (t + 1) // 2 if t > 1 else 0, None)


def unsigned_entropy_integral(h: np.ndarray) -> np.ndarray:
    """Ablation: ``-Σ_t H_t`` (the integral without the sign, negated so lower = suspect).

    Negation keeps the convention of this module: a sample the model stays unsure about
    (high entropy) scores low.
    """
    return -np.asarray(h, dtype=np.float64).sum(axis=0)


def se_at_epoch(se: np.ndarray, epoch: int) -> np.ndarray:
    """Ablation: signed entropy at a single epoch (0-based; negative counts from the end)."""
    return np.asarray(se, dtype=np.float64)[epoch]


def se_last_epoch(se: np.ndarray) -> np.ndarray:
    """Ablation: signed entropy at the last epoch."""
    return se_at_epoch(se, -1)


def se_middle_epoch(se: np.ndarray) -> np.ndarray:
    """Ablation: signed entropy at the middle epoch, index ``T // 2``."""
    return se_at_epoch(se, np.shape(se)[0] // 2)


def aux_threshold(scores: np.ndarray, is_aux: np.ndarray) -> float:
    """Tuning-free threshold: the mean score of the auxiliary (known-mislabeled) samples.

    ``τ = (1/|A|) Σ_{i∈A} s_i`` where ``A`` are the samples relabeled to the extra class.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_aux = np.asarray(is_aux, dtype=bool)
    if not is_aux.any():
        raise ValueError("no auxiliary samples: the threshold needs at least one")
    return float(scores[is_aux].mean())


#: The exponent ``a`` of :func:`frequency_scaled_thresholds` (the ``balanced`` rule) while the
#: labels look mostly right (:func:`balanced_power`). Measured in docs/benchmarks.md ("Rare
#: classes"): the larger, the fewer un-noised images of rare classes are flagged.
BALANCED_POWER = 0.75
#: :func:`balanced_power`: the full exponent while a run's own rule flags at most this share of
#: its images, none (the own rule) from :data:`BALANCED_NONE_ABOVE` on, linear between.
BALANCED_FULL_BELOW = 0.25
BALANCED_NONE_ABOVE = 0.35


def balanced_power(own_share: float, power: float = BALANCED_POWER, full_below: float = BALANCED_FULL_BELOW,
                   none_above: float = BALANCED_NONE_ABOVE) -> float:
    """The exponent of :func:`frequency_scaled_thresholds` for a run whose own rule flags
    ``own_share`` of its (non-auxiliary) images: ``power`` up to ``full_below``, 0 from
    ``none_above`` on, linear between.

    Why it depends on how much is flagged: lowering a rare class's threshold is right when its
    labels are mostly correct and the model merely has not learnt the class (the images the
    own rule flags there are then mostly false flags); when the own rule flags a third of the
    images or more, the labels are heavily noisy, a rare class's flags are mostly real wrong
    labels, and lowering its threshold keeps them. Measured on the 20 cells of the seed-0
    grid and 1,427 un-noised HAM10000 images (docs/benchmarks.md, "Rare classes"): the own
    rule flagged 19–30 % of the images in the 10–20 % noise cells that gain from the scaling,
    32–50 % in the 30–50 % cells that lose from it, and 9.8 % of the un-noised images.
    """
    if not np.isfinite(own_share):
        return float(power)
    return float(power) * float(np.clip((none_above - own_share) / (none_above - full_below), 0.0, 1.0))


def frequency_scaled_thresholds(threshold: float, labels: np.ndarray, n_classes: int,
                                power: float = BALANCED_POWER) -> np.ndarray:
    """Per-sample thresholds for a probability score: ``threshold`` lowered for every class
    rarer than the auxiliary class, the more the rarer it is.

    ``τ_c = τ · min(1, n_c / n_aux)^a`` (``a`` = ``power``), ``n_c`` the samples trained with label ``c``,
    ``n_aux`` those relabeled to the auxiliary class (label ``n_classes``). The auxiliary
    samples' mean probability of their (wrong) label ``τ`` is measured on a label given to
    ``n_aux`` samples; a model that has not learnt to tell a rarer class apart gives that
    class's label less probability in the ratio of the two frequencies, whether the label is
    right or wrong, so comparing it with ``τ`` calls every image of a rare class mislabeled.
    Scaling by the ratio (``a = 1``) compares like with like; but where a rare class's labels
    are mostly wrong (heavy noise) the model cannot tell that apart from a class it has not
    learnt, and the full ratio then keeps wrong labels: ``a`` < 1 trades one against the other
    (:data:`BALANCED_POWER`). A class at least as common as the auxiliary class keeps ``τ``
    (scaling it up would flag the images of the majority class the model is merely unsure
    of); on balanced classes (``n_c = N/K``, so ``n_c·K/(K+1) = n_aux``) nothing changes.
    Returns ``(N,)`` thresholds; an auxiliary sample (label ``n_classes``) gets ``τ``.
    """
    labels = np.asarray(labels)
    counts = np.bincount(np.clip(labels, 0, n_classes), minlength=n_classes + 1).astype(np.float64)
    n_aux = counts[n_classes]
    if n_aux <= 0:
        raise ValueError("no auxiliary samples: the threshold needs at least one")
    factor = np.minimum(1.0, counts / n_aux) ** float(power)
    factor[n_classes] = 1.0
    return float(threshold) * factor[np.clip(labels, 0, n_classes)]


def flag(scores: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """Flag decision: ``s_i < τ`` (boolean ``(N,)``). ``threshold`` may be per-sample."""
    return np.asarray(scores) < np.asarray(threshold)


def choose_aux_sets(
    n_samples: int, n_classes: int, n_runs: int = 2, seed: int = 0
) -> list[np.ndarray]:
    """Disjoint random auxiliary sets of ``⌊N/(K+1)⌋`` sample indices each, one per run.

    With two runs (the default) every sample is an ordinary training sample in at least one
    run, so every sample gets a score. Sizes shrink to ``⌊N/n_runs⌋`` if needed.
    """
    if n_runs < 1:
        raise ValueError("n_runs must be at least 1")
    size = min(n_samples // (n_classes + 1), n_samples // n_runs)
    if size < 1:
        raise ValueError(
            f"{n_samples} samples are too few for an auxiliary set with {n_classes} classes"
        )
    order = np.random.default_rng(seed).permutation(n_samples)
    return [np.sort(order[r * size : (r + 1) * size]) for r in range(n_runs)]


def combine_runs(
    scores: np.ndarray, thresholds: np.ndarray, is_aux: np.ndarray, how: str = "mean"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge complementary runs into one score per sample.

    With ``how="mean"`` (the default, as the paper's released code does) a sample takes the
    mean of its scores over the runs in which it was *not* an auxiliary sample, and is judged
    against the mean of those runs' thresholds:

        s_i = (1/|R_i|) Σ_{r∈R_i} s_{r,i},   τ_i = (1/|R_i|) Σ_{r∈R_i} τ_r,
        R_i = {r : i not auxiliary in run r}.

    With ``how="first"`` it takes the score and threshold of the first such run only.

    Parameters
    ----------
    scores : (R, N) score of every sample in each run.
    thresholds : (R,) threshold of each run, or (R, N) one per sample of each run.
    is_aux : (R, N) boolean, True where the sample was relabeled to the extra class.
    how : ``"mean"`` or ``"first"``.

    Returns
    -------
    score : (N,) merged scores (NaN where the sample was auxiliary in every run).
    threshold : (N,) the threshold each sample is compared with.
    source_run : (N,) the first run in which the sample kept its label (whose per-epoch
        records the app shows), -1 if none.
    """
    if how not in ("mean", "first"):
        raise ValueError(f"how must be 'mean' or 'first', got {how!r}")
    scores = np.asarray(scores, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    is_aux = np.asarray(is_aux, dtype=bool)
    if thresholds.ndim == 1:
        thresholds = thresholds[:, None]
    usable = ~is_aux
    has = usable.any(axis=0)
    source = np.where(has, usable.argmax(axis=0), -1)
    if how == "first":
        cols = np.arange(scores.shape[1])
        pick = np.clip(source, 0, None)
        score = np.where(has, scores[pick, cols], np.nan)
        thr = np.where(has, np.broadcast_to(thresholds, scores.shape)[pick, cols], np.nan)
        return score, thr, source
    runs = usable.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(usable, scores, 0.0).sum(axis=0) / runs
        thr = np.where(usable, thresholds, 0.0).sum(axis=0) / runs
    return np.where(has, score, np.nan), np.where(has, thr, np.nan), source


def suggested_labels(
    predictions: np.ndarray, probs: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The model's suggested label: its most frequent prediction over the last epochs.

    Parameters
    ----------
    predictions : (L, N) predicted class per recent epoch (values >= n_classes, such as the
        auxiliary class, are ignored).
    probs : (L, N, K') probabilities of the same epochs (K' >= n_classes).
    n_classes : number of real classes K.

    Returns
    -------
    label : (N,) most frequent real-class prediction (ties: the one with higher mean
        probability); where no epoch predicted a real class, the class of highest mean
        probability.
    probability : (N,) mean probability of that label over the recent epochs.
    """
    predictions = np.asarray(predictions)
    probs = np.asarray(probs, dtype=np.float64)[..., :n_classes]
    counts = np.stack([(predictions == k).sum(axis=0) for k in range(n_classes)], axis=1)
    mean_p = probs.mean(axis=0)
    # counts dominate; mean probability (< 1) only breaks ties between equal counts
    label = np.argmax(counts + mean_p, axis=1)
    return label, mean_p[np.arange(len(label)), label]


# --------------------------------------------------------------------------------------
# Variants measured against the paper's SEI (see docs/benchmarks.md). Each keeps the
# convention of this module: (T, N) epoch-major records in, (N,) scores out, lower =
# more likely mislabeled.


def agreement(prediction: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``s_{t,i} = +1`` where epoch ``t`` predicts the given label of sample ``i``, else ``-1``.

    Parameters
    ----------
    prediction : (T, N) predicted class per epoch.
    labels : (N,) the labels the model was trained on.

    Returns
    -------
    (T, N) float array of ±1 (the sign of the signed entropy, defined even where ``H = 0``).
    """
    prediction = np.asarray(prediction)
    return np.where(prediction == np.asarray(labels)[None, :], 1.0, -1.0)


def signed_certainty_integral(sign: np.ndarray, h: np.ndarray, n_outputs: int) -> np.ndarray:
    """Signed certainty integral: ``SCI_i = Σ_t s_{t,i} · (log K' − H_{t,i})``.

    SEI weighs each epoch's agreement sign ``s`` by the entropy ``H``, i.e. by how *unsure*
    the model is. A sample whose given label is wrong but whose true class the model
    learns confidently has ``H ≈ 0`` in every disagreeing epoch, so its SEI is near 0 — as
    high as a confidently learned clean sample — and early epochs, where every prediction is
    near-uniform (``H ≈ log K'``) and mostly the majority class, dominate the sum. SCI
    weighs the sign by the certainty ``log K' − H ∈ [0, log K']`` instead: confident
    agreement counts ``+log K'``, confident disagreement ``−log K'``, a near-uniform epoch
    about 0. Each epoch's term then increases with the model's evidence for the given
    label, as AUM's logit margin does (``M_t = s_t · |M_t|``). The two add up to the pure
    vote count: ``SEI + SCI = log K' · Σ_t s_t``.

    Parameters
    ----------
    sign : (T, N) ±1 agreement of the prediction with the given label (:func:`agreement`).
    h : (T, N) entropy in nats of the same epochs.
    n_outputs : ``K'``, the number of model outputs the entropy was taken over (the ``K``
        classes plus the auxiliary class in a sei-review run).

    Returns
    -------
    (N,) array in ``[-T log K', T log K']``.
    """
    if n_outputs < 2:
        raise ValueError(f"n_outputs must be at least 2, got {n_outputs}")
    sign = np.asarray(sign, dtype=np.float64)
    h = np.asarray(h, dtype=np.float64)
    if sign.shape != h.shape:
        raise ValueError(f"sign {sign.shape} and h {h.shape} must have the same shape")
    return (sign * (np.log(n_outputs) - h)).sum(axis=0)


def label_confidence(p_label: np.ndarray) -> np.ndarray:
    """Mean probability of the given label over epochs: ``C_i = (1/T) Σ_t p_{y_i,t}``.

    The "confidence" coordinate of Dataset Cartography (Swayamdipta et al., 2020). Unlike
    SEI's ``±H``, each epoch's term rises monotonically with the model's evidence for the
    given label, and it does not depend on which class the model predicts: a mislabeled
    sample whose true class is learned has ``p_y ≈ 0`` whether the model is sure or not.

    Parameters
    ----------
    p_label : (T, N) probability of the given (trained-on) label per epoch.

    Returns
    -------
    (N,) array in ``[0, 1]``.
    """
    return np.asarray(p_label, dtype=np.float64).mean(axis=0)

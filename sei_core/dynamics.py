"""Training dynamics behind a flag: sample groups, group curves and label–prediction alignment.

Pure NumPy functions, in the style of :mod:`sei_core.scores`, that the Explore page draws
and the tests check on hand-computed cases. Per-epoch records are *epoch-major*,
``(T, N)`` for ``T`` epochs and ``N`` samples; ``labels`` are the given (possibly noisy)
labels ``(N,)``.

The three groups the app compares
---------------------------------
Every scored sample belongs to exactly one group (:func:`sample_groups`):

- **flagged** — the method's decision: its SEI is below its run's threshold (likely
  mislabeled).
- **easy clean** — kept (not flagged), and *learned early*: from some epoch in the first
  half of training (``learned_epoch < easy_within · T``) to the last epoch, the model's
  prediction always equalled the given label.
- **hard clean** — kept, but learned late (in the second half), or still predicted as
  another class at the last epoch. These are the samples the model found difficult
  although nothing suggests their label is wrong; unsigned entropy confuses them with
  mislabeled ones, signed entropy does not.

Samples without a score (auxiliary in every run of a single-run training) get group ``-1``.
"""

from __future__ import annotations

import numpy as np

from .scores import signed_entropy_integral, unsigned_entropy_integral

EASY_CLEAN, HARD_CLEAN, FLAGGED, UNSCORED = 0, 1, 2, -1
#: Display names of the groups, indexed by group code, in a reader's words (the module text
#: above calls them easy clean, hard clean and flagged): "hard" says the model found the
#: image difficult, not that its label is right.
GROUP_NAMES = ("easy for the model", "hard for the model", "flagged")


def agrees(prediction: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Boolean ``(T, N)``: ``prediction[t, i] == labels[i]``."""
    prediction = np.asarray(prediction)
    labels = np.asarray(labels)
    if prediction.ndim != 2 or prediction.shape[1] != labels.shape[0]:
        raise ValueError(f"prediction must be (T, N) with N = {labels.shape[0]}, got {prediction.shape}")
    return prediction == labels[None, :]


def learned_epoch(prediction: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Epoch from which the model keeps predicting the given label until the end.

    ``learned_i = min{t : prediction[s, i] == labels[i] for every s >= t}`` (0-based), and
    ``T`` when the last epoch's prediction differs from the label (never learned).

    Parameters
    ----------
    prediction : (T, N) predicted class per epoch.
    labels : (N,) given labels.

    Returns
    -------
    (N,) int array in ``[0, T]``; lower means learned earlier (easier).
    """
    agree = agrees(prediction, labels)
    t = agree.shape[0]
    # reverse cumulative AND: all_after[s, i] is True when epochs s..T-1 all agree
    all_after = np.flip(np.logical_and.accumulate(np.flip(agree, axis=0), axis=0), axis=0)
    stays = all_after.any(axis=0)
    first = np.argmax(all_after, axis=0)
    return np.where(stays, first, t).astype(np.int64)


def sample_groups(
    prediction: np.ndarray,
    labels: np.ndarray,
    flagged: np.ndarray,
    scored: np.ndarray | None = None,
    easy_within: float = 0.5,
) -> np.ndarray:
    """Assign each sample to easy clean (0), hard clean (1), flagged (2) or unscored (-1).

    ``flagged`` wins; a kept sample is *easy clean* when
    ``learned_epoch < ceil(easy_within · T)`` and *hard clean* otherwise (see the module
    docstring for the reasoning).

    Parameters
    ----------
    prediction : (T, N) predicted class per epoch.
    labels : (N,) given labels.
    flagged : (N,) boolean flag decision (SEI below threshold).
    scored : (N,) boolean, False for samples without a score; default all True.
    easy_within : fraction of the epochs within which an easy sample is learned.

    Returns
    -------
    (N,) int8 group codes (:data:`EASY_CLEAN`, :data:`HARD_CLEAN`, :data:`FLAGGED`,
    :data:`UNSCORED`).
    """
    if not 0.0 < easy_within <= 1.0:
        raise ValueError(f"easy_within must be in (0, 1], got {easy_within}")
    flagged = np.asarray(flagged, dtype=bool)
    n = flagged.shape[0]
    scored = np.ones(n, dtype=bool) if scored is None else np.asarray(scored, dtype=bool)
    t = np.asarray(prediction).shape[0]
    cut = max(1, int(np.ceil(easy_within * t)))
    easy = learned_epoch(prediction, labels) < cut
    groups = np.where(easy, EASY_CLEAN, HARD_CLEAN)
    groups = np.where(flagged, FLAGGED, groups)
    return np.where(scored, groups, UNSCORED).astype(np.int8)


#: Epochs summed per block in :func:`group_mean_curves` (bounds the float32 temporaries).
_BLOCK_BYTES = 64 << 20


def group_sums(values: np.ndarray, groups: np.ndarray, n_groups: int = 3
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-epoch sums of ``values`` and of their squares within each group, and group sizes.

    The additive part of :func:`group_mean_curves`: sums over disjoint ranges of samples add
    up, so a million samples can be summarised range by range (:func:`mean_std` finishes).
    Computed as matrix products ``values @ onehot(groups)`` over blocks of epochs in float32,
    so a ``(150, 1_000_000)`` record array needs no float64 copy (~64 MB beyond the input).

    Parameters
    ----------
    values : (T, N) per-epoch values (e.g. signed entropy; booleans count as 0/1).
    groups : (N,) group code per sample (codes outside ``0..n_groups-1`` are ignored).
    n_groups : number of groups.

    Returns
    -------
    sums, squares : (G, T) float64.
    count : (G,) number of samples in each group.
    """
    values = np.asarray(values)
    groups = np.asarray(groups)
    t, n = values.shape if values.ndim == 2 else (0, 0)
    valid = (groups >= 0) & (groups < n_groups)
    count = np.bincount(groups[valid].astype(np.int64), minlength=n_groups)[:n_groups].astype(np.int64)
    sums = np.zeros((n_groups, t))
    squares = np.zeros((n_groups, t))
    if t == 0 or not count.any():
        return sums, squares, count
    onehot = np.zeros((n, n_groups), dtype=np.float32)
    onehot[np.flatnonzero(valid), groups[valid].astype(np.int64)] = 1.0
    step = max(1, _BLOCK_BYTES // max(1, 4 * n))
    for t0 in range(0, t, step):
        block = values[t0:t0 + step].astype(np.float32)
        sums[:, t0:t0 + step] = (block @ onehot).T
        np.multiply(block, block, out=block)
        squares[:, t0:t0 + step] = (block @ onehot).T
    return sums, squares, count


def mean_std(sums: np.ndarray, squares: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation from :func:`group_sums`' output (``(..., G, T)``
    sums and squares, ``(..., G)`` counts); NaN for an empty group."""
    sums, squares = np.asarray(sums, dtype=np.float64), np.asarray(squares, dtype=np.float64)
    c = np.asarray(count, dtype=np.float64)[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.where(c > 0, sums / np.where(c > 0, c, 1), np.nan)
        var = np.maximum(squares / np.where(c > 0, c, 1) - m * m, 0.0)
    return m, np.where(c > 0, np.sqrt(var), np.nan)


def group_mean_curves(values: np.ndarray, groups: np.ndarray, n_groups: int = 3
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-epoch mean and standard deviation of ``values`` within each group.

    Parameters
    ----------
    values : (T, N) per-epoch values (e.g. signed entropy; booleans count as 0/1).
    groups : (N,) group code per sample (codes outside ``0..n_groups-1`` are ignored).
    n_groups : number of groups.

    Returns
    -------
    mean : (G, T) mean over the group's samples (NaN for an empty group).
    std : (G, T) population standard deviation (NaN for an empty group).
    count : (G,) number of samples in each group.
    """
    sums, squares, count = group_sums(values, groups, n_groups)
    mean, std = mean_std(sums, squares, count)
    return mean, std, count


def alignment_timeline(prediction: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                       n_groups: int = 3) -> np.ndarray:
    """Per epoch and group, the fraction of samples whose prediction equals the given label.

    ``align[g, t] = mean_{i in g} [prediction[t, i] == labels[i]]``.

    Returns
    -------
    (G, T) array in ``[0, 1]`` (NaN for an empty group). Clean samples rise towards 1 as
    they are learned; mislabeled ones start low (the model predicts their true class) and
    rise only when the network starts memorising the wrong label.
    """
    mean, _, _ = group_mean_curves(agrees(prediction, labels), groups, n_groups)
    return mean


def cumulative_sei(signed_entropy: np.ndarray) -> np.ndarray:
    """Running Signed Entropy Integral ``C_t = Σ_{s <= t} SE_s`` along the epoch axis (0).

    Its last value is the SEI of :func:`sei_core.scores.signed_entropy_integral`.
    """
    return np.cumsum(np.asarray(signed_entropy, dtype=np.float64), axis=0)


def integral_scores(signed_entropy: np.ndarray, entropy: np.ndarray) -> dict[str, np.ndarray]:
    """Signed and unsigned entropy integrals of the same records, for a side-by-side view.

    Returns ``{"signed": Σ_t SE_t, "unsigned": -Σ_t H_t}``, each ``(N,)``; as everywhere in
    :mod:`sei_core.scores`, lower means more suspicious. The unsigned integral cannot tell a
    hard clean sample (uncertain, but agreeing with its label) from a mislabeled one
    (uncertain, disagreeing); the sign can.
    """
    return {"signed": signed_entropy_integral(signed_entropy),
            "unsigned": unsigned_entropy_integral(entropy)}


def clean_examples(labels: np.ndarray, flagged: np.ndarray, suggested: np.ndarray,
                   suggested_probability: np.ndarray, cls: int, n: int = 6,
                   exclude: np.ndarray | list[int] | None = None) -> np.ndarray:
    """Indices of the most confidently clean samples of class ``cls``, for comparison.

    A sample qualifies when it is kept (not flagged), its given label is ``cls`` and the
    model's suggested label agrees (``suggested == cls``). They are ordered by the mean
    probability the model gave that label over the last epochs, highest first.

    Returns
    -------
    Up to ``n`` sample indices (int array).
    """
    labels = np.asarray(labels)
    ok = (labels == cls) & ~np.asarray(flagged, dtype=bool) & (np.asarray(suggested) == cls)
    if exclude is not None:
        ok[np.asarray(exclude, dtype=np.int64)] = False
    idx = np.flatnonzero(ok)
    p = np.nan_to_num(np.asarray(suggested_probability, dtype=np.float64)[idx], nan=-1.0)
    order = np.argsort(-p, kind="stable")
    return idx[order][: max(0, n)]


def trajectory_picks(codes: np.ndarray, max_lines: int = 25, seed: int = 0) -> list[np.ndarray]:
    """The samples :func:`sei_core.plots.entropy_trajectories` draws as individual lines: up to ``max_lines``
    of code 0 (kept) and of code 1 (flagged), drawn at random (``seed``), sorted."""
    codes = np.asarray(codes)
    rng = np.random.default_rng(seed)
    out = []
    for g in (0, 1):
        idx = np.flatnonzero(codes == g)
        out.append(np.sort(rng.choice(idx, size=min(max_lines, len(idx)), replace=False)) if len(idx)
                   else np.zeros(0, dtype=np.int64))
    return out

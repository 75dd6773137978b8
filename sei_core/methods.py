"""The registry of detection methods: what each is computed on, how it flags, which one the
app uses.

One place for the names: :data:`METHODS` (every method scored from one recorded run, with
its own threshold rule), :data:`OUT_OF_SAMPLE_METHODS` (those needing cross-validation),
:data:`RULES` (the threshold rules any record-based method can be flagged with),
:data:`DEFAULT_METHOD`/:data:`DEFAULT_RULE` (the app's ranking and flag rule, chosen on the
benchmark in docs/benchmarks.md) and :data:`PAPER_METHOD` (the paper's SEI, always shown
beside it), plus the order and the display names the reports and pages use. The formulas
live in :mod:`sei_core.scores` and :mod:`sei_core.baselines`; applying a method and a rule
to a run is :func:`sei_core.ranking.score_records`.

A *variant* is a method flagged with another rule than its own, named
``"<method>@<rule>"`` (e.g. ``"sei@count"``); :func:`variant` and :func:`split_variant`
convert, and the benchmark reports variants as rows of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from sei_core import scores as _scores
from sei_core.baselines import aum, aum_threshold, cross_entropy_loss, mistakenness, small_loss_gmm

Records = Mapping[str, np.ndarray]
#: ``(scores, is_aux) -> τ``: the threshold of one run; a sample is flagged where ``s < τ``.
ThresholdRule = Callable[[np.ndarray, np.ndarray], float]


@dataclass(frozen=True)
class Method:
    """A detector scored from the records of one complementary run.

    Calling it returns the ``(N,)`` scores (lower = more suspicious); ``threshold`` gives
    that run's flag threshold from the scores and the auxiliary mask. Methods without a
    threshold rule of their own use the mean score of the auxiliary samples
    (:func:`sei_core.scores.aux_threshold`), as SEI does; the runs are then merged with
    :func:`sei_core.scores.combine_runs` (see :func:`sei_core.ranking.score_records`).
    ``per_sample`` says that a sample's score depends on that sample's records only, so it
    may be computed over ranges of samples (bounded memory at any N); set it False for a
    score fitted on all samples at once. ``probability`` says that the score is a
    probability of the given label, so the ``balanced`` rule of :data:`RULES` applies to it.
    """

    score: Callable[[Records], np.ndarray]
    computed_on: str
    threshold: ThresholdRule = _scores.aux_threshold
    threshold_rule: str = "mean score of the auxiliary samples"
    name: str = ""
    per_sample: bool = True
    probability: bool = False

    def __call__(self, records: Records) -> np.ndarray:
        return self.score(records)


def _n_outputs(r: Records) -> int:
    return int(r["probs_last"].shape[1])


def _aum_p99(scores: np.ndarray, is_aux: np.ndarray) -> float:
    return aum_threshold(scores, is_aux, 99.0)


def _half(scores: np.ndarray, is_aux: np.ndarray) -> float:
    return 0.5


def _gmm_score(r: Records) -> np.ndarray:
    aux = r.get("is_aux")
    fit = None if aux is None else ~np.asarray(aux, dtype=bool)
    return small_loss_gmm(cross_entropy_loss(r["p_label"]).mean(axis=0), fit_mask=fit)[0]


_ALL = "all recorded epochs of the SEI run (training forward pass)"

#: Every method scored from one recorded run. ``records`` holds ``"signed_entropy"``,
#: ``"entropy"``, ``"margin"``, ``"p_label"``, ``"prediction"`` as (T, N) arrays,
#: ``"probs_last"`` (N, K') (the last epoch's probabilities, auxiliary column included),
#: ``"labels"`` (N,) (the labels trained on: the given label, or K for an auxiliary sample)
#: and optionally ``"is_aux"`` (N,). Each returns (N,) scores, lower = more suspicious.
#: Confident learning is not here: it needs out-of-sample (k-fold) probabilities, so it is
#: listed in :data:`OUT_OF_SAMPLE_METHODS` and computed by the benchmark.
METHODS: dict[str, Method] = {
    "sei": Method(
        lambda r: _scores.signed_entropy_integral(r["signed_entropy"]),
        f"the paper's SEI, Σ_t SE_t over {_ALL}"),
    "sci": Method(
        lambda r: _scores.signed_certainty_integral(
            _scores.agreement(r["prediction"], r["labels"]), r["entropy"], _n_outputs(r)),
        f"variant: Σ_t s_t·(log K' − H_t), the agreement sign weighted by certainty, over {_ALL}"),
    "confidence": Method(
        lambda r: _scores.label_confidence(r["p_label"]),
        f"variant: mean p_y of the given label (Dataset Cartography's confidence) over {_ALL}",
        probability=True),
    "unsigned_entropy_integral": Method(
        lambda r: _scores.unsigned_entropy_integral(r["entropy"]),
        f"ablation: −Σ_t H_t (no sign) over {_ALL}"),
    "se_last": Method(
        lambda r: _scores.se_last_epoch(r["signed_entropy"]),
        "ablation: signed entropy of the last epoch of the SEI run"),
    "se_middle": Method(
        lambda r: _scores.se_middle_epoch(r["signed_entropy"]),
        "ablation: signed entropy of the middle epoch (index T//2) of the SEI run"),
    "sei_early": Method(
        lambda r: _scores.early_sei(r["signed_entropy"]),
        "ablation: SEI over the first ⌈T/2⌉ epochs of the SEI run"),
    "sei_late": Method(
        lambda r: _scores.late_sei(r["signed_entropy"]),
        "ablation: SEI over the last ⌊T/2⌋ epochs of the SEI run"),
    "aum": Method(
        lambda r: aum(r["margin"]),
        f"AUM (Pleiss et al. 2020): mean logit margin z_y − max_(k≠y) z_k over {_ALL}"),
    "aum_p99": Method(
        lambda r: aum(r["margin"]),
        f"AUM with its own threshold rule (the auxiliary samples as AUM's threshold samples): "
        f"mean logit margin over {_ALL}",
        _aum_p99, "99th percentile of the auxiliary samples' AUM"),
    "mistakenness": Method(
        lambda r: mistakenness(r["probs_last"], r["labels"]),
        "FiftyOne mistakenness (c = exp(−H)) from the last epoch's probabilities of the SEI "
        "run, auxiliary column kept"),
    # mean loss over epochs: by the last epoch a network has memorised noisy labels and
    # their loss is as small as the clean ones'; the early-epoch gap survives the mean
    "small_loss_gmm": Method(
        _gmm_score,
        f"small-loss GMM (as in DivideMix): clean posterior of a 2-component GMM on the mean "
        f"cross-entropy over {_ALL}, fitted on the non-auxiliary samples",
        _half, "clean posterior < 0.5", per_sample=False),
}

METHODS = {name: replace(m, name=name) for name, m in METHODS.items()}

#: Methods that need out-of-sample probabilities from k-fold cross-validation instead of the
#: SEI run's records (name → what it is computed on).
OUT_OF_SAMPLE_METHODS: dict[str, str] = {
    "confident_learning": (
        "cleanlab find_label_issues (prune_by_noise_rate) on out-of-sample probabilities from "
        "k-fold cross-validation: the same model, budget and augmentation, trained on k−1 folds "
        "of the noisy labels (no auxiliary class), predicting the held-out fold without "
        "augmentation; ranked by self-confidence p_y"),
}



#: Threshold rules a record-based method can be flagged with (name → what it does).
#: ``own``: the method's own rule (:attr:`Method.threshold_rule`, applied per complementary
#: run); ``count``: the ``k̂`` lowest merged scores, ``k̂`` the estimated number of
#: mislabeled samples (:mod:`sei_core.count`; globally or per given class, see there);
#: ``balanced`` (probability scores only, :attr:`Method.probability`): the own rule's
#: threshold, lowered per class for every class rarer than the auxiliary class
#: (:func:`sei_core.scores.frequency_scaled_thresholds`), so a rare class is not flagged for
#: being rare.
RULES: dict[str, str] = {
    "own": "the method's own rule",
    "count": "the k̂ lowest scores, k̂ = the estimated number of mislabeled samples (sei_core.count)",
    "balanced": "the method's own threshold × min(1, images of the class / auxiliary images)^a, per class; "
                "a = ¾ while the own rule flags at most 25 % of the images, 0 from 35 % on",
}

#: The method the app ranks by and the rule it flags with: confidence, the pair with the best
#: mean F1 on the benchmark by the rule fixed before it was measured (docs/benchmarks.md,
#: "Re-choosing the default with the error count"), flagged below the mean confidence of the
#: auxiliary samples scaled down for classes rarer than the auxiliary class while the labels
#: look mostly right (``balanced``: on 1,427 real, un-noised HAM10000 images it flags 3.0 %
#: instead of 9.8 %, and at most 20 % of a class instead of 100 %; on the 20 cells of the
#: seed-0 grid mean F1 65.3 instead of 63.7: docs/benchmarks.md, "Rare classes").
DEFAULT_METHOD = "confidence"
DEFAULT_RULE = "balanced"
#: The paper's Signed Entropy Integral: computed and shown beside whatever method ranks.
PAPER_METHOD = "sei"
#: The paper's own threshold: the mean SEI of the auxiliary samples (:data:`RULES` ``own``).
PAPER_RULE = "own"

#: The error count behind the ``count`` rule and the app's estimate: the estimator of
#: :mod:`sei_core.count` and the method whose scores it reads (chosen on the benchmark).
COUNT_ESTIMATOR = "bbe"
COUNT_METHOD = "aum"
#: Whether the ``count`` rule flags the ``k̂_c`` lowest of each given class (True) or the
#: ``k̂`` lowest overall (False).
COUNT_PER_CLASS = True

#: How reports and pages name a score.
DISPLAY_NAMES = {"sei": "SEI", "confidence": "Confidence", "aum": "AUM", "sci": "SCI"}


def display_name(method: str) -> str:
    """The name pages show for a method's score (``"SEI"``, ``"Confidence"``, …)."""
    return DISPLAY_NAMES.get(method, method)


def threshold_text(method: str, rule: str = "own") -> str:
    """How ``method`` flags under ``rule``, in words (for tables and the pages)."""
    name, vrule = split_variant(method)
    rule = vrule if vrule != "own" else rule
    if name in OUT_OF_SAMPLE_METHODS:
        return "cleanlab prune_by_noise_rate"
    if rule == "own":
        return METHODS[name].threshold_rule
    return RULES[rule]


def variant(method: str, rule: str = "own") -> str:
    """The name of ``method`` flagged with ``rule``: ``method`` for its own rule, else
    ``"method@rule"``."""
    if rule not in RULES:
        raise ValueError(f"unknown threshold rule {rule!r}; choose one of {list(RULES)}")
    return method if rule == "own" else f"{method}@{rule}"


def split_variant(name: str) -> tuple[str, str]:
    """``"sei@count"`` → ``("sei", "count")``; a plain method name → ``(name, "own")``."""
    method, _, rule = name.partition("@")
    return method, rule or "own"


def method_names(rules: Sequence[str] = ("own",)) -> list[str]:
    """Every method name: the record-based ones, then each of them with the other ``rules``
    (variants), then the out-of-sample ones."""
    names = list(METHODS)
    for rule in rules:
        if rule != "own":
            names += [variant(m, rule) for m in applicable(rule)]
    return names + list(OUT_OF_SAMPLE_METHODS)


def applicable(rule: str) -> list[str]:
    """The record-based methods ``rule`` can flag: every one, except that ``balanced`` needs a
    probability score (:attr:`Method.probability`)."""
    return [m for m, v in METHODS.items() if rule != "balanced" or v.probability]


def method_order(methods) -> list[str]:
    """Registry order, each method followed by its variants (``sei``, ``sei@count``, …);
    unknown names last, sorted."""
    present = list(dict.fromkeys(methods))
    rank = {m: i for i, m in enumerate(list(METHODS) + list(OUT_OF_SAMPLE_METHODS))}
    rule_rank = {r: i for i, r in enumerate(RULES)}

    def key(name: str):
        m, r = split_variant(name)
        return (rank.get(m, len(rank)), rule_rank.get(r, len(rule_rank)), name)

    known = [n for n in present if split_variant(n)[0] in rank and split_variant(n)[1] in rule_rank]
    return sorted(known, key=key) + sorted(set(present) - set(known))


def describe_methods(rules: Sequence[str] = ("own",)) -> dict[str, str]:
    """What each method (and each variant of ``rules``) is computed on, by name."""
    out = {}
    for rule in ("own", *[r for r in rules if r != "own"]):
        for name in applicable(rule):
            m = METHODS[name]
            how = m.threshold_rule if rule == "own" else RULES[rule]
            out[variant(name, rule)] = f"{m.computed_on} (threshold: {how})"
    out.update(OUT_OF_SAMPLE_METHODS)
    return {k: out[k] for k in method_order(out)}


def get_method(method: "str | Method") -> tuple[str, "Method"]:
    """``(name, Method)`` for a registry name or a :class:`Method`; a clear error otherwise."""
    if isinstance(method, Method):
        return method.name or "custom", method
    try:
        return method, METHODS[method]
    except KeyError:
        raise ValueError(f"unknown method {method!r}; choose one of {sorted(METHODS)}") from None

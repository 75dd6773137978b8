"""From a run's records to one ranked table: score, threshold, flag and suggested label.

Each complementary run scores every sample with a detection method of
:data:`sei_core.methods.METHODS` — by default :data:`DEFAULT_METHOD`, the mean probability
of the given label, which found injected noise best in docs/benchmarks.md; the paper's Signed
Entropy Integral is always scored beside it — from its own records. A sample takes the mean of
its scores over the runs in which it kept its given label (:func:`sei_core.scores.combine_runs`,
as the paper's released code does). Flags follow a threshold rule
(:data:`sei_core.methods.RULES`): the method's own (for SEI: the mean score of its auxiliary
samples) or the error count's (the ``k̂`` lowest scores, :func:`count_errors`). The suggested
label is the model's most frequent prediction over the last recorded epochs.

:func:`score_records` is that merge for any method, on records already in memory;
:func:`score_method` does it for a run directory; :func:`score_run` adds what the app and
the CLI show (suggested labels, per-epoch curves).
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from . import count as count_mod
from .count import CountEstimate
from .files import atomic_write_csv
from .methods import (COUNT_ESTIMATOR, COUNT_METHOD, COUNT_PER_CLASS, DEFAULT_METHOD, DEFAULT_RULE,
                      PAPER_METHOD, PAPER_RULE, Method, Records, get_method, split_variant)
from .records import EPOCH_FIELDS, Columns, sample_range
from .runs import Run, RunError
from . import scores as _scores
from .scores import combine_runs, suggested_labels

__all__ = ["MethodScores", "LoadedRun", "RunScores", "count_errors", "load_run", "score_method", "score_records",
           "score_run", "write_scores"]

#: Per-sample work runs over ranges of samples with about this many (epoch, sample) cells,
#: so memory stays bounded however large N is: 8 MB per float64 temporary (per thread, see
#: :func:`_each_range`); 2× and 4× this were as fast, half of it slower (more ranges to map).
CHUNK_CELLS = 1 << 20


def _n_epochs(records) -> int:
    if isinstance(records, Columns):
        return records.n_epochs
    return max((np.shape(records[f])[0] for f in EPOCH_FIELDS if f in records), default=1)


def _ranges(n: int, n_epochs: int, chunk: int | None = None):
    step = max(1, chunk or CHUNK_CELLS // max(1, n_epochs))
    return [(a, min(a + step, n)) for a in range(0, n, step)]


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _each_range(fn, ranges: list[tuple[int, int]]) -> None:
    """``fn(a, b)`` for every range, on as many threads as this process may use cores (NumPy
    releases the GIL in the widening, ``exp`` and sums that take the time; every range writes
    its own slice, so the result is the same in any order)."""
    workers = min(_workers(), len(ranges))
    if workers <= 1:
        for a, b in ranges:
            fn(a, b)
        return
    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(fn, a, b) for a, b in ranges]:
            f.result()


def method_scores(m: Method, records, n: int, chunk: int | None = None) -> np.ndarray:
    """``m(records)`` as a float64 ``(N,)`` array, computed over ranges of samples when the
    method is per-sample (the same numbers, in bounded memory). Scores of memory-mapped
    records (:class:`~sei_core.records.Columns`) are kept with them, so a second use of the
    same method on the same records (and the same labels …) reads nothing again."""
    memo = records.memo if isinstance(records, Columns) else None
    key = (m, records.extra_key()) if memo is not None else None
    if memo is not None and key in memo:  # e.g. the count rule's scores, then the ranking's
        return memo[key].copy()
    if not m.per_sample:
        out = np.asarray(m(records), dtype=np.float64)
    else:
        out = np.empty(n, dtype=np.float64)

        def part(a: int, b: int) -> None:
            out[a:b] = m(sample_range(records, a, b, n))

        _each_range(part, _ranges(n, _n_epochs(records), chunk))
    if memo is not None:
        memo[key] = out.copy()
    return out


@dataclass
class MethodScores:
    """One method's merged result over the complementary runs (arrays of length N)."""

    method: str
    score: np.ndarray  # NaN where no run could score the sample
    threshold: np.ndarray  # the threshold each sample was compared with (NaN if unscored)
    flagged: np.ndarray  # score < threshold (False where unscored)
    #: which run scored each sample: from :func:`score_records` the 0-based position in its
    #: ``records`` (-1: none); from :func:`score_method` the run's own number, 1-based (0: none),
    #: as :attr:`RunScores.source_run`
    source_run: np.ndarray
    run_thresholds: list[float]
    rule: str = "own"
    count: CountEstimate | None = None  # the error count the ``count`` rule flagged by


def _method(method: str | Method) -> tuple[str, Method]:
    return get_method(method)


def given_labels(records: Sequence[Records], is_aux: np.ndarray) -> np.ndarray:
    """(N,) given labels from the runs' trained-on labels (the first run where each sample
    was ordinary; -1 where it was auxiliary in every run)."""
    is_aux = np.asarray(is_aux, dtype=bool)
    usable = ~is_aux
    first = np.where(usable.any(axis=0), usable.argmax(axis=0), -1)
    lab = np.stack([np.asarray(r["labels"]) for r in records])
    return np.where(first >= 0, lab[np.clip(first, 0, None), np.arange(is_aux.shape[1])], -1)


def count_errors(records: Sequence[Records], is_aux: np.ndarray, *, estimator: str = COUNT_ESTIMATOR,
                 method: str = COUNT_METHOD, probs: Sequence[np.ndarray] | None = None,
                 labels: np.ndarray | None = None) -> CountEstimate:
    """The estimated number of mislabeled samples of a run, overall and per given class.

    ``estimator`` is one of :data:`sei_core.count.ESTIMATORS`: ``"bbe"`` and ``"mixture"``
    read ``method``'s per-run scores and the auxiliary masks; ``"cleanlab"`` reads the run's
    recorded probabilities (``probs``: per run ``(L, N, K')``, :attr:`LoadedRun.probs`; the
    mean over those epochs and runs, :func:`sei_core.count.run_probabilities`) — in-sample
    probabilities, see :func:`sei_core.count.cleanlab_count`.
    """
    is_aux = np.asarray(is_aux, dtype=bool)
    labels = given_labels(records, is_aux)
    k = int(records[0]["probs_last"].shape[1]) - (1 if is_aux.any() else 0)
    if estimator == "cleanlab":
        if probs is None:
            raise ValueError("the cleanlab count needs the run's recorded probabilities (probs)")
        return count_mod.cleanlab_count(labels, count_mod.run_probabilities(probs, is_aux, k))
    _, m = _method(method)
    s = np.stack([method_scores(m, r, is_aux.shape[1]) for r in records])
    if estimator == "bbe":
        return count_mod.bbe_count(s, is_aux, labels, n_classes=k)
    if estimator == "mixture":
        return count_mod.mixture_count(s, is_aux, labels, n_classes=k)
    raise ValueError(f"unknown estimator {estimator!r}; choose one of {count_mod.ESTIMATORS}")


def score_records(
    records: Sequence[Records], is_aux: np.ndarray, method: str | Method = DEFAULT_METHOD,
    rule: str | None = None, *, how: str = "mean", count: CountEstimate | None = None,
    per_class: bool = COUNT_PER_CLASS,
    chunk: int | None = None,
) -> MethodScores:
    """Score every complementary run with ``method`` and merge them into one verdict per sample.

    For each run ``r``: ``s_r = method(records[r])``; then
    :func:`~sei_core.scores.combine_runs` merges them (``how="mean"``: a sample takes the
    mean over the runs in which it kept its label; ``"first"``: the first such run's).
    The flags follow ``rule`` (:data:`sei_core.methods.RULES`):

    - ``"own"``: the method's rule per run, ``τ_r = method.threshold(s_r, aux_r)``, merged
      like the scores; ``flagged = s < τ``;
    - ``"balanced"`` (probability scores): as ``"own"``, each run's ``τ_r`` lowered for the
      samples of every class rarer than the auxiliary class,
      :func:`sei_core.scores.frequency_scaled_thresholds`, with the exponent
      :func:`sei_core.scores.balanced_power` of the share of the run's images ``τ_r`` flags;
      ``run_thresholds`` are the ``τ_r``;
    - ``"count"``: the ``k̂`` lowest merged scores, ``k̂`` from ``count`` (default:
      :func:`count_errors`), overall or, with ``per_class``, ``k̂_c`` per given class
      (:func:`sei_core.count.flag_lowest`).

    Parameters
    ----------
    records : one mapping per run, as described at :data:`sei_core.methods.METHODS`.
    is_aux : (R, N) boolean, True where the sample was relabeled to the auxiliary class.
    method : a name in :data:`~sei_core.methods.METHODS`, a variant ``"name@rule"``, or a
        :class:`~sei_core.methods.Method`.
    rule : ``"own"``, ``"count"`` or ``"balanced"`` (default: the variant's, else ``"own"``).
    chunk : samples per range for per-sample methods (default: about :data:`CHUNK_CELLS`
        cells per range).
    """
    if isinstance(method, str) and "@" in method:
        method, vrule = split_variant(method)
        rule = rule or vrule
    rule = rule or "own"
    if rule not in ("own", "count", "balanced"):
        raise ValueError(f"unknown threshold rule {rule!r}; choose 'own', 'count' or 'balanced'")
    name, m = _method(method)
    if rule == "balanced" and not m.probability:
        raise ValueError(f"the 'balanced' rule is for probability scores (such as confidence), not {name!r}")
    is_aux = np.asarray(is_aux, dtype=bool)
    if len(records) == 0 or is_aux.shape[0] != len(records):
        raise ValueError(f"need one aux mask per run: {len(records)} runs, masks {is_aux.shape}")
    scores, thresholds = [], []
    per_sample = []
    for rec, aux in zip(records, is_aux):
        s = method_scores(m, rec, is_aux.shape[1], chunk)
        scores.append(s)
        thresholds.append(float(m.threshold(s, aux)) if rule != "count" else np.nan)
        if rule == "balanced":
            k = int(rec["probs_last"].shape[1]) - 1
            kept = ~aux & np.isfinite(s)
            own_share = float(np.mean(s[kept] < thresholds[-1])) if kept.any() else float("nan")
            per_sample.append(_scores.frequency_scaled_thresholds(thresholds[-1], np.where(aux, k, rec["labels"]), k,
                                                                  _scores.balanced_power(own_share)))
    score, thr, src = combine_runs(np.stack(scores), np.stack(per_sample) if per_sample else np.array(thresholds),
                                   is_aux, how=how)
    scored = src >= 0
    if rule == "count":
        count = count if count is not None else count_errors(records, is_aux)
        labels = given_labels(records, is_aux) if per_class else None
        flagged, thr = count_mod.flag_lowest(
            score, count.k, labels, count.per_class_k() if per_class else None)
        thr = np.where(scored, thr, np.nan)
        finite = thr[np.isfinite(thr)]
        thresholds = [float(finite.max()) if finite.size else float("nan")] * len(records)
    else:
        flagged = np.where(scored, score < np.nan_to_num(thr, nan=-np.inf), False)
    return MethodScores(method=name, score=score, threshold=thr, flagged=flagged,
                        source_run=src, run_thresholds=thresholds, rule=rule,
                        count=count if rule == "count" else None)


@dataclass
class LoadedRun:
    """The records of a run's complementary runs that have at least one complete epoch."""

    ids: list[str]
    classes: list[str]
    labels: np.ndarray  # (N,) given label index
    runs: list[int]  # 1-based indices of the runs loaded
    records: list[Records]  # one Records mapping per loaded run (memory-mapped, read on use)
    is_aux: np.ndarray  # (R, N)
    probs: list[list[np.ndarray]]  # per run, the (N, K') float16 probabilities of the last stored epochs


def load_run(run: Run) -> LoadedRun:
    """Open a run's records (finished or not) in the form :func:`score_records` takes.

    Nothing per epoch is read here: the records are memory maps (:class:`sei_core.records.Columns`),
    read by the methods that use them, range by range.
    """
    cfg = run.config()
    ids, names = run.samples()
    classes = list(cfg["classes"])
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] for c in names], dtype=np.int64)
    n, k = len(ids), len(classes)
    keep_probs = int(cfg.get("keep_probs", 5))
    usable, recs, masks, probs = [], [], [], []
    for r in range(1, int(cfg.get("runs", 2)) + 1):
        store = run.records(r)
        if not store.epochs():
            continue
        rec = store.load()
        aux = np.zeros(n, dtype=bool)
        aux[run.aux_indices(r)] = True
        p = [a for _, a in store.probs()[-keep_probs:]]
        if not p:
            raise RunError(f"{store.folder} has no probabilities of its last epoch; resume the run")
        rec.update(probs_last=p[-1], labels=np.where(aux, k, labels), is_aux=aux)
        usable.append(r)
        recs.append(rec)
        masks.append(aux)
        probs.append(p)
    if not usable:
        raise RunError(f"{run.path} has no complete epoch yet; wait for the first epoch to finish")
    return LoadedRun(ids, classes, labels, usable, recs, np.stack(masks), probs)


def score_method(run: Run | LoadedRun, method: str | Method = DEFAULT_METHOD, rule: str | None = None,
                 **kw) -> MethodScores:
    """Score a run (or its loaded records) with any method of the registry (or a variant
    ``"name@rule"``), merged across the complementary runs; ``source_run`` is returned
    1-based (0 = unscored) as in :class:`RunScores`. ``kw`` go to :func:`score_records`."""
    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    ms = score_records(loaded.records, loaded.is_aux, method, rule, **kw)
    number = np.where(ms.source_run >= 0, np.array(loaded.runs)[np.clip(ms.source_run, 0, None)], 0)
    return dataclasses.replace(ms, source_run=number)


class PerEpoch:
    """Each sample's ``(T, N)`` records taken from the run that scored it, built on first use."""

    def __init__(self, records: list, pick: np.ndarray, n_epochs: int):
        self.records, self.pick, self.n_epochs = records, pick, n_epochs

    def merged(self, name: str, dtype) -> np.ndarray:
        n, t = len(self.pick), self.n_epochs
        out = np.empty((t, n), dtype=dtype)
        for a, b in _ranges(n, t):
            pk = self.pick[a:b]
            for r, rec in enumerate(self.records):
                sel = np.flatnonzero(pk == r)
                if sel.size:
                    out[:, a + sel] = np.asarray(sample_range(rec, a, b, n)[name][-t:])[:, sel]
        return out


@dataclass
class RunScores:
    """Everything the CLI and the app show about a run's samples (arrays of length N).

    The per-epoch arrays ``signed_entropy``, ``entropy`` (float32) and ``prediction``
    (int16), ``(T, N)`` from each sample's scoring run, are read from the records when first
    used: the ranked table alone never reads them.
    """

    ids: list[str]
    classes: list[str]
    labels: np.ndarray  # given label index
    score: np.ndarray  # the ranking method's score (NaN where no run could score it)
    threshold: np.ndarray
    flagged: np.ndarray
    source_run: np.ndarray  # 1-based run index that scored the sample, 0 if none
    suggested: np.ndarray
    suggested_probability: np.ndarray
    epochs: int
    run_thresholds: list[float]
    method: str = DEFAULT_METHOD
    rule: str = DEFAULT_RULE  # how ``flagged`` was decided (sei_core.methods.RULES)
    count: CountEstimate | None = None  # the estimated number of mislabeled samples
    # the paper's SEI, always computed beside the ranking method (the same arrays when it is SEI)
    sei: np.ndarray | None = None
    sei_threshold: np.ndarray | None = None
    sei_flagged: np.ndarray | None = None
    sei_run_thresholds: list[float] | None = None
    per_epoch: PerEpoch | None = field(default=None, repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def _merged(self, name: str, dtype) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = self.per_epoch.merged(name, dtype)
        return self._cache[name]

    def already_read(self, name: str) -> np.ndarray | None:
        """The ``(T, N)`` per-epoch array ``name`` if it has been read (merged) already, else None."""
        return self._cache.get(name)

    @property
    def signed_entropy(self) -> np.ndarray:
        """(T, N) signed entropy from each sample's scoring run."""
        return self._merged("signed_entropy", np.float32)

    @property
    def entropy(self) -> np.ndarray:
        """(T, N) entropy from each sample's scoring run."""
        return self._merged("entropy", np.float32)

    @property
    def prediction(self) -> np.ndarray:
        """(T, N) prediction from each sample's scoring run."""
        return self._merged("prediction", np.int16)

    def table(self, flagged_only: bool = False) -> pd.DataFrame:
        """The ranked table, most suspicious first (unscored samples last); with
        ``flagged_only`` only the flagged rows (built without the others).

        The score column is named after the method; unless the method is SEI itself, the
        paper's SEI follows as ``sei``, ``sei_threshold`` and ``sei_flagged``.
        """
        rows = np.flatnonzero(self.flagged) if flagged_only else np.arange(len(self.score))
        rows = rows[np.argsort(self.score[rows], kind="stable")]  # NaN (unscored) sorts last
        names = np.array(list(self.classes) + [""], dtype=object)
        k = len(self.classes)
        cols = {
            "path": np.asarray(self.ids, dtype=object)[rows],
            "given_label": names[self.labels[rows]],
            self.method: self.score[rows],
            "threshold": self.threshold[rows],
            "flagged": self.flagged[rows],
        }
        if self.method != PAPER_METHOD and self.sei is not None:
            cols.update(sei=self.sei[rows], sei_threshold=self.sei_threshold[rows],
                        sei_flagged=self.sei_flagged[rows])
        sug = self.suggested[rows]
        cols.update({
            "suggested_label": names[np.where((sug >= 0) & (sug < k), sug, k)],
            "suggested_probability": self.suggested_probability[rows],
            "scored_by_run": self.source_run[rows],
        })
        return pd.DataFrame(cols)


def _suggested(loaded: LoadedRun, pick: np.ndarray, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~sei_core.scores.suggested_labels` of every sample from its scoring run's last
    epochs, over ranges of samples."""
    n, k = len(loaded.ids), len(loaded.classes)
    last = min(len(p) for p in loaded.probs)
    k_out = loaded.probs[0][-1].shape[1]
    label, prob = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.float64)

    def part(a: int, b: int) -> None:
        pk = pick[a:b]
        pred = np.empty((last, b - a), dtype=np.int16)
        probs = np.empty((last, b - a, k_out), dtype=np.float32)
        for r, (rec, plist) in enumerate(zip(loaded.records, loaded.probs)):
            sel = np.flatnonzero(pk == r)
            if sel.size:
                pred[:, sel] = np.asarray(sample_range(rec, a, b, n)["prediction"][-last:])[:, sel]
                probs[:, sel] = np.stack([p[a:b][sel] for p in plist[-last:]])
        label[a:b], prob[a:b] = suggested_labels(pred, probs, k)

    _each_range(part, _ranges(n, last * k_out, chunk))
    return label, prob


def score_run(run: Run, method: str = DEFAULT_METHOD, rule: str | None = None) -> RunScores:
    """Score a run from whatever epochs it has recorded so far (finished or not).

    ``method`` is any name of :data:`sei_core.methods.METHODS` (default
    :data:`DEFAULT_METHOD`), flagged by ``rule`` (default: :data:`DEFAULT_RULE` for the
    default method, ``"own"`` for any other); the paper's SEI is scored beside it with the
    paper's rule (``sei*`` fields). ``count`` is the run's estimated number of mislabeled
    samples (:func:`count_errors`), whatever the rule; where none can be made (no auxiliary
    sample) it is None and the method's own rule flags.
    """
    loaded = load_run(run)
    method, vrule = split_variant(method)
    if rule is None:
        rule = vrule if vrule != "own" else (DEFAULT_RULE if method == DEFAULT_METHOD else "own")
    try:
        est = count_errors(loaded.records, loaded.is_aux, probs=loaded.probs, labels=loaded.labels)
    except ValueError:  # e.g. no auxiliary or no ordinary sample recorded: nothing to count from
        est = None
        rule = "own"
    ms = score_records(loaded.records, loaded.is_aux, method, rule, count=est)
    paper = (ms if (ms.method, ms.rule) == (PAPER_METHOD, PAPER_RULE)
             else score_records(loaded.records, loaded.is_aux, PAPER_METHOD, PAPER_RULE, count=est))
    src = ms.source_run
    t = min(_n_epochs(r) for r in loaded.records)
    pick = np.clip(src, 0, None)
    suggested, sp = _suggested(loaded, pick)
    scored = src >= 0
    return RunScores(
        ids=loaded.ids, classes=loaded.classes, labels=loaded.labels, score=ms.score,
        threshold=ms.threshold, flagged=ms.flagged,
        source_run=np.where(scored, np.array(loaded.runs)[pick], 0),
        suggested=np.where(scored, suggested, -1), suggested_probability=np.where(scored, sp, np.nan),
        epochs=t, run_thresholds=ms.run_thresholds, method=ms.method,
        rule=ms.rule, count=est,
        sei=paper.score, sei_threshold=paper.threshold, sei_flagged=paper.flagged,
        sei_run_thresholds=paper.run_thresholds, per_epoch=PerEpoch(loaded.records, pick, t),
    )


def write_scores(run: Run) -> pd.DataFrame:
    """Write ``scores.csv`` (the ranked table) into the run atomically and return it."""
    df = score_run(run).table()
    atomic_write_csv(run.path / "scores.csv", df)
    return df

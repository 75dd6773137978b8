"""A run's scored result kept in its run directory, so a run of a million samples opens at once.

Scoring a run (:func:`sei_core.ranking.score_run`) reads every record: at N = 1,000,000
samples and 150 epochs, some 6–8 CPU-seconds, and the app's views need as much again for
the training-dynamics summaries (sample groups, group curves, alignment). :func:`scored`
does that work once per *content* of the run and keeps the result as memory-mapped ``.npy``
columns (about 90 bytes per sample), which the app opens in milliseconds::

    runs/<name>/scored/<method>_<rule>-<key>/   one entry, created whole or not at all
        meta.json                               what it was computed from (the key) and the
                                                small results (classes, thresholds, count)
        score.npy flagged.npy …                 one (N,) column per RunScores array
        groups.npy integral_*.npy order.npy     per-sample summaries for the views
        se_sums.npy align_sums.npy …            per view (each class, then all), group and epoch

The key (:func:`inputs_key`) is a hash of everything the result is computed from: the run's
configuration, its sample list, each complementary run's auxiliary set, record manifest
(which commits every epoch) and stored probabilities, the method and threshold rule, and
:data:`FORMAT`. A new epoch, a resumed run or another method is a different key, so a
stale entry is never read; entries of older keys are removed when a new one is written. An
entry is written into a temporary folder and renamed into place
(:func:`sei_core.files.atomic_write_dir`), so a process killed while writing leaves no torn
entry, only a temporary folder that a later write removes once it is an hour old (a younger
one may be a live writer's). Nothing here depends on the
label file: review decisions change labels in the label file, not the trained-on labels.

Training writes the entries of the app's default ranking and of the paper's SEI when it
finishes (:func:`write_finished`); any other method's entry is written by its first use.
:func:`aligned_truth` keeps a truth file's flags aligned to the samples the same way.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import dynamics
from .count import CountEstimate
from .files import atomic_write, atomic_write_csv, atomic_write_dir
from .methods import DEFAULT_METHOD, DEFAULT_RULE, PAPER_METHOD, split_variant
from .records import sample_range
from .runs import Run

#: Bump when what an entry holds, or how any of it is computed, changes: older entries
#: then no longer match and are recomputed.
FORMAT = "sei-scored/2"
FOLDER = "scored"
#: Individual entropy trajectories kept per view and side (kept / flagged), as the figure draws.
MAX_LINES = 25
#: (epoch, sample) cells per range of samples when summarising (bounds memory: ~32 MB per
#: float32 temporary).
SUMMARY_CELLS = 1 << 23

#: The (N,) arrays of :class:`~sei_core.ranking.RunScores` an entry stores.
_COLUMNS = ("labels", "score", "threshold", "flagged", "source_run", "suggested", "suggested_probability",
            "sei", "sei_threshold", "sei_flagged")


@dataclass
class Summary:
    """Per-sample and per-view summaries of a run's training dynamics, for the app's views.

    A *view* is one given class ``k`` (index ``k``) or all samples (index ``K``). Curves are
    over the ``T`` recorded epochs of each sample's scoring run; groups are
    :data:`sei_core.dynamics.GROUP_NAMES` (``G = 3``).
    """

    groups: np.ndarray  # (N,) int8 group code (dynamics.sample_groups)
    integral_signed: np.ndarray  # (N,) Σ_t SE (dynamics.integral_scores)
    integral_unsigned: np.ndarray  # (N,) −Σ_t H
    order: np.ndarray  # (N,) sample indices by score, most suspicious first, unscored last
    se_sums: np.ndarray  # (K+1, G, T) sums of signed entropy per view and group
    se_squares: np.ndarray  # (K+1, G, T) sums of its squares
    group_count: np.ndarray  # (K+1, G)
    align_sums: np.ndarray  # (K+1, G, T) samples whose prediction equals the given label
    ent_sums: np.ndarray  # (K+1, 2, T) sums of entropy of kept (0) and flagged (1) scored samples
    ent_squares: np.ndarray  # (K+1, 2, T)
    ent_count: np.ndarray  # (K+1, 2)
    line_index: np.ndarray  # (K+1, 2, MAX_LINES) samples drawn as lines (dynamics.trajectory_picks), -1 pads
    line_entropy: np.ndarray  # (K+1, 2, MAX_LINES, T) float32 their entropy

    def view(self, k: int) -> int:
        """The view index of class ``k`` (``k < 0``: all samples)."""
        return self.se_sums.shape[0] - 1 if k < 0 else int(k)

    def group_curves(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, std, count)`` of signed entropy per group in view ``k``, as
        :func:`sei_core.dynamics.group_mean_curves` gives them."""
        v = self.view(k)
        mean, std = dynamics.mean_std(self.se_sums[v], self.se_squares[v], self.group_count[v])
        return mean, std, self.group_count[v]

    def alignment(self, k: int) -> np.ndarray:
        """``(G, T)`` share of each group whose prediction equals the label
        (:func:`sei_core.dynamics.alignment_timeline`)."""
        v = self.view(k)
        c = self.group_count[v].astype(np.float64)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(c > 0, self.align_sums[v] / np.where(c > 0, c, 1), np.nan)

    def entropy_figure(self, k: int):
        """:func:`sei_core.plots.entropy_trajectories` of view ``k``, from the summary."""
        v = self.view(k)
        mean, std = dynamics.mean_std(self.ent_sums[v], self.ent_squares[v], self.ent_count[v])
        lines = [self.line_entropy[v, g][self.line_index[v, g] >= 0] for g in (0, 1)]
        from . import plots  # the figure only where it is drawn: a training process needs no plotly

        return plots.entropy_summary(mean, std, self.ent_count[v], lines)


_SUMMARY_FIELDS = tuple(f.name for f in dataclasses.fields(Summary))


@dataclass
class Scored:
    """What :func:`scored` returns: the run's scores and the summaries of its dynamics."""

    scores: object  # sei_core.ranking.RunScores (per-epoch arrays read from the records on use)
    summary: Summary
    path: Path | None  # the entry it was read from or written to (None: could not be written)
    from_cache: bool


# -- the key ------------------------------------------------------------------------------------

def _file_facts(path: Path) -> list:
    try:
        st = path.stat()
    except OSError:
        return [path.name, None]
    return [path.name, st.st_size, st.st_mtime_ns]


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def inputs_key(run: Run, method: str, rule: str) -> dict:
    """Everything the scored result of ``run`` by ``method``/``rule`` is computed from.

    Small files are hashed (configuration, record manifests); large ones are identified by
    size and modification time (the sample list, auxiliary sets, stored probabilities),
    which every writer changes when it replaces them (they are written atomically).
    """
    cfg = run.config()
    runs = []
    for r in range(1, int(cfg.get("runs", 2)) + 1):
        folder = run.sub_run(r) / "records"
        files = sorted(p for p in folder.iterdir()) if folder.is_dir() else []
        runs.append({"aux": _file_facts(run.aux_file(r)),
                     "manifest": _digest(folder / "records.json"),
                     # stored probabilities and (old format) per-epoch files; the columns are
                     # covered by the manifest, which commits each epoch
                     "files": [_file_facts(p) for p in files
                               if p.name.startswith(("probs_", "epoch_")) and p.suffix in (".npy", ".npz")]})
    return {"format": FORMAT, "method": method, "rule": rule, "rule_definition": _rule_definition(rule),
            "config": _digest(run.path / "config.json"), "samples": _file_facts(run.path / "samples.csv"),
            "runs": runs}


def _rule_definition(rule: str) -> list:
    """What a flag rule computes, so that a cached result of a rule whose definition changed
    (e.g. the balanced rule's exponent) is computed again."""
    from . import scores
    from .methods import RULES

    out = [RULES.get(rule, rule)]
    if rule == "balanced":
        out += [scores.BALANCED_POWER, scores.BALANCED_FULL_BELOW, scores.BALANCED_NONE_ABOVE]
    return out


def _entry_name(method: str, rule: str, key: dict) -> str:
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in f"{method}@{rule}")
    return f"{safe}-{h}"


def resolve_rule(method: str, rule: str | None = None) -> tuple[str, str]:
    """``(method, rule)`` as :func:`sei_core.ranking.score_run` resolves them (before it
    finds whether an error count can be made: the key names what was asked for)."""
    method, vrule = split_variant(method)
    if rule is None:
        rule = vrule if vrule != "own" else (DEFAULT_RULE if method == DEFAULT_METHOD else "own")
    return method, rule


# -- reading and writing ------------------------------------------------------------------------

def scored(run: Run, method: str = DEFAULT_METHOD, rule: str | None = None, *, write: bool = True) -> Scored:
    """The run's scores by ``method``/``rule`` and its dynamics summary, from the run's cache
    entry when one matches its current content, else computed (and, with ``write``, stored).

    A run that is still training gets a new entry with every epoch (each a new key); a cache
    folder that cannot be written (a read-only run) only means the result is not kept.
    """
    method, rule = resolve_rule(method, rule)
    key = inputs_key(run, method, rule)
    entry = run.path / FOLDER / _entry_name(method, rule, key)
    hit = _read(run, entry, key)
    if hit is not None:
        return hit
    from .ranking import score_run

    s = score_run(run, method, rule)
    summary = summarise(s)
    if not write:
        return Scored(s, summary, None, False)
    try:
        _write(entry, key, s, summary, _scored_runs(run))
    except OSError:
        return Scored(s, summary, None, False)
    _prune(run.path / FOLDER, keep=entry.name, prefix=entry.name.rsplit("-", 1)[0] + "-")
    return Scored(s, summary, entry, False)


def write_finished(run: Run):
    """When training finishes: score the run by the app's default ranking once, keep its
    cache entry and write ``scores.csv`` (the ranked table, as
    :func:`sei_core.ranking.write_scores`) from the same result; then keep the entry of the
    paper's SEI too, the other score the Explore page offers. Returns the table."""
    df = scored(run).scores.table()
    atomic_write_csv(run.path / "scores.csv", df)
    if PAPER_METHOD != DEFAULT_METHOD:
        scored(run, PAPER_METHOD)
    return df


def entries(run: Run) -> list[Path]:
    """The complete cache entries of ``run`` (temporary folders of a killed writer excluded)."""
    folder = run.path / FOLDER
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _write(entry: Path, key: dict, s, summary: Summary, runs: list[int]) -> None:
    meta = {"key": key, "n": len(s.ids), "classes": list(s.classes), "epochs": int(s.epochs), "runs": runs,
            "run_thresholds": [float(t) for t in s.run_thresholds], "method": s.method, "rule": s.rule,
            "sei_run_thresholds": None if s.sei_run_thresholds is None else [float(t) for t in s.sei_run_thresholds],
            "count": None if s.count is None else _count_to_json(s.count)}

    def fill(tmp: Path) -> None:
        for name in _COLUMNS:
            np.save(tmp / f"{name}.npy", np.asarray(getattr(s, name)))
        for name in _SUMMARY_FIELDS:
            np.save(tmp / f"{name}.npy", np.asarray(getattr(summary, name)))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))  # last: an entry with it is whole

    atomic_write_dir(entry, fill)


def _read(run: Run, entry: Path, key: dict) -> Scored | None:
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if meta.get("key") != key:
        return None
    try:
        cols = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in _COLUMNS}
        summ = {name: np.load(entry / f"{name}.npy", mmap_mode="r") for name in _SUMMARY_FIELDS}
    except (OSError, ValueError):
        return None
    from .ranking import PerEpoch, RunScores

    runs = [int(r) for r in meta.get("runs", [])]
    if runs != _scored_runs(run):
        return None
    ids = run.sample_ids()
    if len(ids) != meta["n"] or any(len(c) != meta["n"] for c in cols.values()):
        return None
    t = int(meta["epochs"])
    records = [run.records(r).load() for r in runs]  # memory maps: read on use, sample by sample
    source = np.asarray(cols["source_run"])
    pick = np.clip(np.searchsorted(np.asarray(runs), source), 0, len(runs) - 1)
    s = RunScores(ids=ids, classes=meta["classes"], epochs=t, run_thresholds=meta["run_thresholds"],
                  method=meta["method"], rule=meta["rule"],
                  count=None if meta["count"] is None else _count_from_json(meta["count"]),
                  sei_run_thresholds=meta["sei_run_thresholds"], per_epoch=PerEpoch(records, pick, t),
                  **cols)
    return Scored(s, Summary(**summ), entry, True)


def _scored_runs(run: Run) -> list[int]:
    """The complementary runs with at least one complete epoch (those
    :func:`sei_core.ranking.load_run` scores), 1-based."""
    return [r for r in range(1, int(run.config().get("runs", 2)) + 1) if run.records(r).epochs()]


def aligned_truth(run: Run, data_path: str | Path, ids: list[str]) -> np.ndarray | None:
    """``is_noisy`` of every sample of ``run`` from its data set's truth file, or None
    (:func:`sei_core.workspace.load_truth`), kept beside the run's cache entries
    (``truth-<key>.npy``, keyed by the truth file's and the sample list's size and
    modification time), so a million rows are read once, not once per process."""
    from .workspace import load_truth, truth_file as find_truth

    truth_file = find_truth(data_path)
    if truth_file is None:
        return None
    key = json.dumps([FORMAT, str(Path(truth_file).absolute()), _file_facts(Path(truth_file)),
                      _file_facts(run.path / "samples.csv")])
    target = run.path / FOLDER / f"truth-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npy"
    try:
        got = np.load(target)
        if got.shape == (len(ids),) and got.dtype == bool:
            return got
    except (OSError, ValueError):
        pass
    truth = load_truth(data_path, ids)
    if truth is None:
        return None
    try:
        atomic_write(target, lambda f: np.save(f, truth))
        for old in target.parent.glob("truth-*.npy"):
            if old != target:
                old.unlink(missing_ok=True)
    except OSError:
        pass
    return truth


def _count_to_json(c: CountEstimate) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in dataclasses.asdict(c).items()}


def _count_from_json(d: dict) -> CountEstimate:
    arrays = {f.name for f in dataclasses.fields(CountEstimate)
              if f.name.startswith("per_class") or f.name == "class_sizes"}
    return CountEstimate(**{k: (np.asarray(v, dtype=np.int64 if k == "class_sizes" else np.float64)
                                if k in arrays else v) for k, v in d.items()})


def _prune(folder: Path, keep: str, prefix: str, stale_after: float = 3600.0) -> None:
    """Remove the older entries of the same method and rule, and temporary folders of killed
    writers (only old ones: a young one may belong to a writer still at work)."""
    now = time.time()
    for p in folder.iterdir() if folder.is_dir() else []:
        if p.name == keep:
            continue
        if p.name.startswith(".") and p.name.endswith(".tmp"):
            try:
                if now - p.stat().st_mtime > stale_after:
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:
                pass
        elif p.name.startswith(prefix):
            shutil.rmtree(p, ignore_errors=True)


# -- the summary ----------------------------------------------------------------------------------

def sample_values(s, name: str, i: int) -> np.ndarray:
    """``(T,)`` record field ``name`` (``signed_entropy``, ``entropy``, ``prediction`` …) of
    sample ``i`` from its scoring run, read from the records alone (not the whole ``(T, N)``)."""
    pe = s.per_epoch
    whole = s.already_read(name)
    if whole is not None:
        return np.asarray(whole[:, i])
    rec = pe.records[int(pe.pick[i])]
    n = len(pe.pick)
    return np.asarray(sample_range(rec, i, i + 1, n)[name][-pe.n_epochs:])[:, 0]


def _range_values(s, name: str, a: int, b: int, dtype) -> np.ndarray:
    """``(T, b − a)`` field ``name`` of samples ``a..b`` from each one's scoring run."""
    pe = s.per_epoch
    n, t = len(pe.pick), pe.n_epochs
    out = np.empty((t, b - a), dtype=dtype)
    pk = pe.pick[a:b]
    for r, rec in enumerate(pe.records):
        sel = np.flatnonzero(pk == r)
        if sel.size:
            out[:, sel] = np.asarray(sample_range(rec, a, b, n)[name][-t:])[:, sel]
    return out


def summarise(s, max_lines: int = MAX_LINES, cells: int = SUMMARY_CELLS) -> Summary:
    """The :class:`Summary` of a run's scores ``s`` (a :class:`~sei_core.ranking.RunScores`),
    computed range by range of samples from the records (memory bounded by ``cells``)."""
    n, k, t = len(s.ids), len(s.classes), int(s.epochs)
    g_n = len(dynamics.GROUP_NAMES)
    labels = np.asarray(s.labels)
    flagged = np.asarray(s.flagged, dtype=bool)
    scored_ = np.isfinite(np.asarray(s.score, dtype=np.float64))
    groups = np.empty(n, dtype=np.int8)
    signed, unsigned = np.empty(n), np.empty(n)
    se_sums, se_sq = np.zeros((k * g_n, t)), np.zeros((k * g_n, t))
    group_count = np.zeros(k * g_n, dtype=np.int64)
    align = np.zeros((k * g_n, t))
    ent_sums, ent_sq = np.zeros((k * 2, t)), np.zeros((k * 2, t))
    ent_count = np.zeros(k * 2, dtype=np.int64)
    lab_ok = (labels >= 0) & (labels < k)
    ent_codes = np.where(scored_ & lab_ok, np.clip(labels, 0, None) * 2 + flagged, -1)
    step = max(1, cells // max(1, t))
    for a in range(0, n, step):
        b = min(n, a + step)
        pred = _range_values(s, "prediction", a, b, np.int16)
        g = dynamics.sample_groups(pred, labels[a:b], flagged[a:b], scored=scored_[a:b])
        groups[a:b] = g
        codes = np.where((g >= 0) & lab_ok[a:b], np.clip(labels[a:b], 0, None) * g_n + g, -1)
        align += dynamics.group_sums(dynamics.agrees(pred, labels[a:b]), codes, k * g_n)[0]
        del pred
        se = _range_values(s, "signed_entropy", a, b, np.float32)
        sums, sq, cnt = dynamics.group_sums(se, codes, k * g_n)
        se_sums += sums
        se_sq += sq
        group_count += cnt
        h = np.abs(se)  # entropy = |signed entropy| (records.decode); saves reading it again
        ints = dynamics.integral_scores(se, h)
        signed[a:b], unsigned[a:b] = ints["signed"], ints["unsigned"]
        sums, sq, cnt = dynamics.group_sums(h, ent_codes[a:b], k * 2)
        ent_sums += sums
        ent_sq += sq
        ent_count += cnt
    # per class, then all (the sum over classes)
    def views(x, per):
        x = x.reshape(k, per, *x.shape[1:])
        return np.concatenate([x, x.sum(axis=0, keepdims=True)])

    se_sums, se_sq, group_count, align = (views(se_sums, g_n), views(se_sq, g_n), views(group_count, g_n),
                                          views(align, g_n))
    ent_sums, ent_sq, ent_count = views(ent_sums, 2), views(ent_sq, 2), views(ent_count, 2)
    line_index = np.full((k + 1, 2, max_lines), -1, dtype=np.int64)
    line_entropy = np.full((k + 1, 2, max_lines, t), np.nan, dtype=np.float32)
    for v in range(k + 1):
        mask = lab_ok & (labels == v) if v < k else np.ones(n, dtype=bool)
        codes = np.where(scored_ & mask, flagged.astype(np.int8), -1)
        for side, idx in enumerate(dynamics.trajectory_picks(codes, max_lines)):
            line_index[v, side, :len(idx)] = idx
            for j, i in enumerate(idx):
                line_entropy[v, side, j] = np.abs(sample_values(s, "signed_entropy", int(i)))
    order = np.lexsort((np.arange(n), np.nan_to_num(np.asarray(s.score, dtype=np.float64), nan=np.inf)))
    return Summary(groups=groups, integral_signed=signed, integral_unsigned=unsigned, order=order,
                   se_sums=se_sums, se_squares=se_sq, group_count=group_count, align_sums=align,
                   ent_sums=ent_sums, ent_squares=ent_sq, ent_count=ent_count, line_index=line_index,
                   line_entropy=line_entropy)

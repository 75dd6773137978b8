"""Benchmark: detection quality of SEI and every baseline, measured on the same runs.

The grid is data set × noise type × noise rate × seed. One *cell* of it:

1. injects label noise with the cell's seed into the clean labels (symmetric, or
   confusion-calibrated from a reference classifier's out-of-sample confusion matrix, eq. 5
   of the paper) and writes the noisy label file and a truth file;
2. trains one SEI run (two complementary runs with auxiliary samples) on the noisy labels;
3. scores that run with every record-based method of :data:`sei_core.methods.METHODS`
   (SEI, its variants and ablations, AUM, mistakenness, small-loss GMM), each merged across
   the complementary runs by :func:`sei_core.ranking.score_records` and flagged by its own
   rule and by the error count's (``name@count``), and estimates the number of mislabeled
   samples with every estimator of :mod:`sei_core.count`;
4. trains ``k`` cross-validation models on the same noisy labels for Confident Learning
   (:mod:`sei_core.bench.crossval`), if that method is asked for;
5. compares every flag set and ranking with the truth (:mod:`sei_core.metrics`) and writes
   one row per method.

Everything is resumable: a cell whose methods all have a result is skipped; a cell whose
SEI run was interrupted resumes it from its last epoch; finished cross-validation folds are
reused. Layout of a bench directory::

    bench.json                 the training settings (must stay the same across calls)
    data/<dataset>/labels.csv  the clean labels with absolute image paths (+ images/ for a
                               MedMNIST .npz, written once as PNGs, see below)
    cache/                     decoded images shared by every run of the benchmark
    reference/<dataset>/seed<S>/  k-fold reference classifier on clean labels: confusion.npy
    cells/<dataset>/<noise>/rate<R>/seed<S>/
        labels.csv truth.csv   noisy labels and what was corrupted (absolute image paths)
        run/                   the SEI run (sei_core.runs layout; checkpoints removed when done)
        cv/                    the cross-validation folds of Confident Learning
        results.csv            this cell's rows
        counts.csv             every error-count estimate beside the true count
        review_sim.csv         simulated reviews' counts from the decisions (--review-sim)
    results.csv  results.md  plots/   everything gathered (rewritten after every cell)
    review_sim.csv  review_sim.md     the simulated reviews of every cell (--review-sim)

A MedMNIST ``.npz`` is turned into PNG files once per benchmark (lossless, the same pixels
the ``.npz`` loader would give), so every data set is benchmarked through the same label-CSV
path and every noisy label file is an ordinary CSV.

Reading the rows back and reporting them is :mod:`sei_core.bench.results`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from .. import dataset as ds_mod
from ..baselines import confident_learning
from ..errors import SeiError
from ..files import atomic_write, atomic_write_json
from ..count import cleanlab_count
from ..methods import METHODS, OUT_OF_SAMPLE_METHODS, method_names, split_variant, threshold_text
from ..metrics import detection_report
from ..runs import Run, State
from .noise import confusion_calibrated_noise, confusion_matrix, symmetric_noise, write_noisy_label_file
from ..labels import LABEL_COL, PATH_COL, source_kind, truth_columns, truth_for
from .results import COUNT_COLUMNS, RESULT_COLUMNS, write_csv as _write_csv, write_report, write_results

NOISE_TYPES = ("symmetric", "confusion")
DEFAULT_RATES = (0.1, 0.2, 0.3, 0.4, 0.5)
DEFAULT_SEEDS = (0, 1, 2)
#: Threshold rules every record-based method is measured with (``name``, ``name@count`` and,
#: for probability scores, ``name@balanced``).
BENCH_RULES = ("own", "count", "balanced")
#: Training settings that must not change between calls on one bench directory.
_TRAIN_KEYS_IGNORED = ("data", "seed", "device", "workers", "cache_dir", "classes", "memory_budget")



class BenchError(SeiError):
    """The benchmark cannot go on as asked; the message says why and what to do."""


@dataclass
class BenchSpec:
    """What to measure. ``train`` holds :class:`~sei_core.config.TrainConfig` fields other than
    ``data`` and ``seed`` (each cell trains with its own seed)."""

    data: list[str]
    noise: list[str] = field(default_factory=lambda: ["symmetric"])
    rates: list[float] = field(default_factory=lambda: list(DEFAULT_RATES))
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    methods: list[str] | None = None  # None: all of method_names(BENCH_RULES)
    folds: int = 5
    train: dict = field(default_factory=dict)
    max_samples: int | None = None  # a stratified random subset of each data set (None: all)
    #: the columns of image path and label in the label files of ``data`` (the bench's own
    #: noisy copies are ``path,label`` files, so the cells train without them)
    path_column: str = PATH_COL
    label_column: str = LABEL_COL
    #: the image folders and extension of the label files of ``data`` (see TrainConfig)
    image_dirs: list[str] = field(default_factory=list)
    image_ext: str | None = None
    keep_checkpoints: bool = False
    progress_bar: bool = False
    #: a held-out test label file: also measure what cleaning bought (:mod:`.retrain`): test
    #: scores of models trained on the noisy labels, without the flagged images, after a
    #: simulated review and on the true labels
    retrain_test: str | None = None
    #: how many images of the review queue the simulated reviewer decides (None: all of it)
    review_budget: int | None = None
    #: also play ``review_sim_repeats`` simulated truthful reviews of this share of N decisions
    #: per cell and measure the count from the decisions (:mod:`.count_sim`; None: not)
    review_sim: float | None = None
    review_sim_repeats: int = 10

    def method_list(self) -> list[str]:
        names = method_names(BENCH_RULES)
        chosen = list(names) if not self.methods else list(dict.fromkeys(self.methods))
        unknown = [m for m in chosen if m not in names]
        if unknown:
            raise BenchError(f"unknown method(s) {unknown}; choose from {names}")
        return chosen

    def validate(self) -> None:
        problems = []
        if not self.data:
            problems.append("give at least one data set")
        bad = [n for n in self.noise if n not in NOISE_TYPES]
        if bad or not self.noise:
            problems.append(f"noise types must be among {list(NOISE_TYPES)}, got {self.noise}")
        if not self.rates or any(not 0.0 < r < 1.0 for r in self.rates):
            problems.append(f"noise rates must lie in (0, 1), got {self.rates}")
        if not self.seeds:
            problems.append("give at least one seed")
        if self.folds < 2:
            problems.append(f"--folds must be at least 2, got {self.folds}")
        if self.retrain_test is not None and not Path(self.retrain_test).exists():
            problems.append(f"the test file {self.retrain_test} does not exist")
        if self.review_sim is not None and not 0 < self.review_sim <= 1:
            problems.append(f"--review-sim must be a share of the data set in (0, 1], got {self.review_sim}")
        if self.review_sim_repeats < 1:
            problems.append(f"--review-sim-repeats must be at least 1, got {self.review_sim_repeats}")
        if self.review_budget is not None and self.review_budget < 1:
            problems.append(f"--review-budget must be at least 1, got {self.review_budget}")
        if self.max_samples is not None and self.max_samples < 2 * self.folds:
            problems.append(f"--max-samples must be at least 2 × --folds, got {self.max_samples}")
        if problems:
            raise BenchError("; ".join(problems))
        self.method_list()


@dataclass(frozen=True)
class Cell:
    """One point of the grid."""

    dataset: str
    noise: str
    rate: float
    seed: int

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.noise}/rate{self.rate:.2f}/seed{self.seed}"


@dataclass
class Source:
    """A data set made ready for the benchmark: clean labels with absolute image paths."""

    name: str
    origin: str
    labels_csv: Path
    table: pd.DataFrame  # path (absolute), label (class name)
    classes: list[str]
    labels: np.ndarray  # (N,) clean label index
    prompts: ds_mod.Prompts


@dataclass
class BenchReport:
    """What a call of :func:`run_bench` did."""

    results: pd.DataFrame
    cells: dict[str, str]  # cell key -> "skipped" | "completed"
    failures: list[str]
    files: list[Path]


# ------------------------------------------------------------------------------ data sets


def dataset_name(path: str | Path) -> str:
    """A short name for a data source: the folder of a ``labels.csv``, else the file stem."""
    p = Path(path)
    if p.is_dir():
        stem = p.name
    elif p.name.lower() in ("labels.csv", "label.csv", "train.csv"):
        stem = p.parent.name or p.stem
    else:
        stem = p.stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "data"


def stratified_subset(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a random subset of ``n`` samples with the class proportions of
    ``labels`` (largest remainders; every class keeps at least one sample while ``n`` allows).
    Deterministic in ``seed``; all indices when ``n >= len(labels)``."""
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n / len(labels)
    take = np.maximum(np.floor(quota).astype(int), np.minimum(counts, 1))
    for c in np.argsort(-(quota - np.floor(quota)), kind="stable"):
        if take.sum() >= n:
            break
        if take[c] < counts[c]:
            take[c] += 1
    while take.sum() > n:  # the one-per-class floor overshot: trim the largest classes
        take[np.argmax(take)] -= 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(labels == c), size=t, replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def prepare_source(data: str | Path, bench_dir: str | Path, *, name: str | None = None,
                   split: str = "train", max_pixels: int = ds_mod.DEFAULT_MAX_PIXELS,
                   skip_unreadable: bool = False, max_samples: int | None = None,
                   path_column: str = PATH_COL, label_column: str = LABEL_COL,
                   image_dirs: list[str] | tuple = (), image_ext: str | None = None) -> Source:
    """Validate ``data`` and write its clean label file (absolute paths) into the bench.

    For a MedMNIST ``.npz`` the images of ``split`` are written once as PNG files under
    ``data/<name>/images/``. ``max_samples`` keeps a stratified random subset
    (:func:`stratified_subset`, seed 0, the same for every cell). ``path_column`` and
    ``label_column`` name a label file's columns (ignored for a folder or ``.npz``); the clean
    ``labels.csv`` is always ``path,label``. It is written last, so its presence means the
    source is complete and it is reused as it is.
    """
    columns = ({"path_column": path_column, "label_column": label_column, "image_dirs": list(image_dirs),
                "image_ext": image_ext} if source_kind(data) == "csv" else {})  # of a label file only
    ds = ds_mod.load(data, split=split, max_pixels=max_pixels, skip_unreadable=skip_unreadable, **columns)
    name = name or dataset_name(data)
    folder = Path(bench_dir).resolve() / "data" / name
    labels_csv = folder / "labels.csv"
    keep = stratified_subset(ds.labels, max_samples) if max_samples else np.arange(len(ds))
    if ds.kind == "npz":
        img_dir = folder / "images"
        paths = [str(img_dir / f"{split}_{i:05d}.png") for i in keep]
        if not labels_csv.is_file() and not img_dir.is_dir():
            # write into a private folder and rename it into place, so that two processes
            # preparing the same benchmark never see (or write) half an image folder
            tmp = folder / f".images.tmp{os.getpid()}"
            tmp.mkdir(parents=True, exist_ok=True)
            for i, p in zip(keep, paths):
                ds.open_image(int(i)).save(tmp / Path(p).name, format="PNG")
            try:
                os.rename(tmp, img_dir)
            except OSError:  # another process was first
                shutil.rmtree(tmp, ignore_errors=True)
    else:
        paths = [str(ds.file_of(int(i)).resolve()) for i in keep]
    table = pd.DataFrame({"path": paths, "label": [ds.classes[ds.labels[i]] for i in keep]})
    if not labels_csv.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        _write_csv(table, labels_csv)
    else:
        table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
        if list(table["path"]) != paths:
            raise BenchError(f"{labels_csv} no longer matches {data}; use another --out for changed data")
    index = {c: k for k, c in enumerate(ds.classes)}
    labels = np.array([index[c] for c in table["label"]], dtype=np.int64)
    return Source(name=name, origin=str(data), labels_csv=labels_csv, table=table,
                  classes=list(ds.classes), labels=labels, prompts=ds.prompts())


# ------------------------------------------------------------------------------ the grid


def _check_bench_json(bench_dir: Path, spec: BenchSpec) -> None:
    """Record the training settings; refuse to mix results of different settings."""
    train = {k: v for k, v in sorted(spec.train.items()) if k not in _TRAIN_KEYS_IGNORED}
    info = {"train": train, "folds": spec.folds}
    if spec.max_samples:
        info["max_samples"] = spec.max_samples
    path = bench_dir / "bench.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if (old.get("train") != json.loads(json.dumps(train)) or old.get("folds") != spec.folds
                or old.get("max_samples") != info.get("max_samples")):
            raise BenchError(
                f"{bench_dir} holds results trained with other settings ({path}); use another --out "
                f"or the same training options. Recorded: {old.get('train')}, folds {old.get('folds')}, "
                f"max samples {old.get('max_samples') or 'all'}")
        return
    bench_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, info)


def _train_config(spec: BenchSpec, data: Path, seed: int, source: Source, bench_dir: Path):
    from ..config import TrainConfig

    kw = {k: v for k, v in spec.train.items() if k not in ("data", "seed")}
    kw.setdefault("cache_dir", str(bench_dir / "cache"))
    kw["classes"] = list(source.classes)  # the clean data's classes, whatever the noise
    config = TrainConfig(data=str(data), seed=seed, **kw)
    # the noisy label file lives in the bench, away from the data's prompts.json: fix them here
    p = config.resolve_prompts(source.prompts)
    return dataclasses.replace(config, template=p.template, aux_prompt=p.aux_prompt, per_class_prompts=p.per_class)


def reference_confusion(source: Source, seed: int, spec: BenchSpec, bench_dir: Path,
                        log: Callable[[str], None] = print) -> np.ndarray:
    """Row-normalised confusion matrix of a reference classifier trained on the clean labels.

    k-fold cross-validation (``spec.folds`` folds, the benchmark's model and budget, no
    auxiliary class): every sample is predicted by a model that did not train on it, so
    ``T_ab`` is the rate at which class ``a`` is mistaken for ``b`` on unseen images.
    Cached in ``reference/<dataset>/seed<seed>/confusion.npy``.
    """
    from .crossval import cross_val_probs

    folder = bench_dir / "reference" / source.name / f"seed{seed}"
    path = folder / "confusion.npy"
    if path.is_file():
        return np.load(path)
    log(f"reference classifier for {source.name}, seed {seed}: {spec.folds}-fold on clean labels")
    config = _train_config(spec, source.labels_csv, seed, source, bench_dir)
    cv = cross_val_probs(config, spec.folds, folder, classes=source.classes, log=log)
    pred = cv.probs.argmax(axis=1)
    t = confusion_matrix(cv.labels, pred, len(source.classes), normalize=True)
    info = {"accuracy": float((pred == cv.labels).mean()), "seconds": cv.seconds,
            "classes": source.classes, "confusion": t.tolist()}
    atomic_write_json(folder / "reference.json", info)
    atomic_write(path, lambda f: np.save(f, t))
    return t


def make_noisy_labels(source: Source, noise: str, rate: float, seed: int,
                      confusion: np.ndarray | None = None) -> np.ndarray:
    """Noisy label indices of ``source`` for one cell (deterministic in ``seed``)."""
    k = len(source.classes)
    if noise == "symmetric":
        return symmetric_noise(source.labels, k, rate, seed=seed)
    if noise == "confusion":
        if confusion is None:
            raise ValueError("confusion-calibrated noise needs the reference confusion matrix")
        return confusion_calibrated_noise(source.labels, confusion, rate, seed=seed)
    raise ValueError(f"unknown noise type {noise!r}; choose from {NOISE_TYPES}")


def _evaluate(score: np.ndarray, flagged: np.ndarray, is_noisy: np.ndarray) -> dict:
    """Metrics over the samples that received a score."""
    ok = np.isfinite(score)
    rep = detection_report(score[ok], flagged[ok], is_noisy[ok])
    return {"f1": rep["f1"], "precision": rep["precision"], "recall": rep["recall"],
            "auroc": rep["auroc"], "ap": rep["average_precision"], "flagged": int(flagged[ok].sum()),
            "n_samples": int(ok.sum()), "n_noisy": int(is_noisy[ok].sum())}


def _train_seconds(run: Run) -> float:
    return float(sum(h.get("seconds", 0.0) for h in run.status().get("history", [])))


def run_cell(cell: Cell, source: Source, spec: BenchSpec, bench_dir: Path,
             log: Callable[[str], None] = print) -> tuple[str, list[str]]:
    """Measure one cell (resuming whatever it has); returns its state and the failures."""
    from ..ranking import count_errors, load_run, score_method
    from ..train import train

    folder = bench_dir / "cells" / cell.dataset / cell.noise / f"rate{cell.rate:.2f}" / f"seed{cell.seed}"
    results_csv = folder / "results.csv"
    done = pd.read_csv(results_csv) if results_csv.is_file() else pd.DataFrame(columns=RESULT_COLUMNS)
    todo = [m for m in spec.method_list() if m not in set(done["method"])]
    retrain_todo = spec.retrain_test is not None and not _retrain_done(folder)
    from .count_sim import CELL_FILE

    sim_todo = spec.review_sim is not None and not (folder / CELL_FILE).is_file()
    if not todo and not retrain_todo and not sim_todo:
        return "skipped", []

    labels_csv, truth_csv = folder / "labels.csv", folder / "truth.csv"
    if not (labels_csv.is_file() and truth_csv.is_file()):
        confusion = (reference_confusion(source, cell.seed, spec, bench_dir, log)
                     if cell.noise == "confusion" else None)
        noisy = make_noisy_labels(source, cell.noise, cell.rate, cell.seed, confusion)
        write_noisy_label_file(source.table, [source.classes[k] for k in noisy], labels_csv, truth_csv)
    truth = truth_columns(truth_csv)
    config = _train_config(spec, labels_csv, cell.seed, source, bench_dir)
    base = {"dataset": cell.dataset, "noise": cell.noise, "rate": cell.rate, "seed": cell.seed}
    failures: list[str] = []

    def save(new_rows: list[dict]) -> None:  # each part's rows are kept as soon as it is done
        nonlocal done
        if new_rows:
            new = pd.DataFrame(new_rows, columns=RESULT_COLUMNS)
            done = new if done.empty else pd.concat([done, new], ignore_index=True)
            _write_csv(done[RESULT_COLUMNS], results_csv)

    record_methods = [m for m in todo if split_variant(m)[0] in METHODS]
    if record_methods:
        run = Run(folder / "run")
        if not run.exists():
            log(f"{cell.key}: training the SEI run")
            train(config, run.path, progress_bar=spec.progress_bar, log=log)
        elif run.state() != State.FINISHED:
            log(f"{cell.key}: resuming the SEI run")
            train(config, run.path, resume=True, progress_bar=spec.progress_bar, log=log)
        if not spec.keep_checkpoints and spec.retrain_test is None:  # held-out evaluation needs them
            for r in range(1, run.n_sub_runs() + 1):
                run.checkpoint(r).unlink(missing_ok=True)
        loaded = load_run(run)
        is_noisy = truth_for(loaded.ids, truth, truth_csv)
        train_s = _train_seconds(run)
        est = count_errors(loaded.records, loaded.is_aux, probs=loaded.probs)
        rows = []
        for m in record_methods:
            t0 = time.monotonic()
            try:
                ms = score_method(loaded, m, count=est)
            except Exception as e:  # a broken method must not stop the grid
                failures.append(f"{cell.key} {m}: {type(e).__name__}: {e}")
                log(f"warning: {failures[-1]}")
                continue
            dt = time.monotonic() - t0
            rows.append({**base, "method": m, **_evaluate(ms.score, ms.flagged, is_noisy),
                         "wall_seconds": train_s + dt, "train_seconds": train_s, "score_seconds": dt,
                         "threshold_rule": threshold_text(m)})
        save(rows)

    if "confident_learning" in todo:
        from .crossval import cross_val_probs

        log(f"{cell.key}: {spec.folds}-fold cross-validation for confident learning")
        cv = cross_val_probs(config, spec.folds, folder / "cv", classes=source.classes, log=log)
        t0 = time.monotonic()
        try:
            score, flagged = confident_learning(cv.probs, cv.labels)
            dt = time.monotonic() - t0
            save([{**base, "method": "confident_learning",
                   **_evaluate(score, flagged, truth_for(cv.ids, truth, truth_csv)),
                   "wall_seconds": cv.seconds + dt, "train_seconds": cv.seconds, "score_seconds": dt,
                   "threshold_rule": "cleanlab prune_by_noise_rate"}])
        except Exception as e:
            failures.append(f"{cell.key} confident_learning: {type(e).__name__}: {e}")
            log(f"warning: {failures[-1]}")
    if Run(folder / "run").exists():
        _write_csv(cell_counts(folder, base), folder / "counts.csv")
    if sim_todo and Run(folder / "run").exists():
        from .count_sim import write_cell

        log(f"{cell.key}: {spec.review_sim_repeats} simulated reviews of {spec.review_sim:.0%} of N decisions")
        try:
            write_cell(folder, spec.review_sim, spec.review_sim_repeats)
        except Exception as e:  # one cell's failure must not stop the grid
            failures.append(f"{cell.key} review-sim: {type(e).__name__}: {e}")
            log(f"warning: {failures[-1]}")
    if retrain_todo:
        failures += _retrain(cell, folder, source, spec, bench_dir, config, base, log)
    return "completed", failures


def _retrain_done(folder: Path) -> bool:
    from .retrain import VARIANTS

    f = folder / "retrain.csv"
    return f.is_file() and set(VARIANTS) <= set(pd.read_csv(f)["variant"])


def _retrain(cell: Cell, folder: Path, source: Source, spec: BenchSpec, bench_dir: Path, config, base: dict,
             log: Callable[[str], None]) -> list[str]:
    """The cell's held-out test rows (:func:`sei_core.bench.retrain.retrain_cell`)."""
    from ..train import train
    from .retrain import retrain_cell

    run = Run(folder / "run")
    try:
        if not run.exists():
            log(f"{cell.key}: training the SEI run")
            train(config, run.path, progress_bar=spec.progress_bar, log=log)
        elif run.state() != State.FINISHED:
            train(config, run.path, resume=True, progress_bar=spec.progress_bar, log=log)
        clean_dir = bench_dir / "clean" / cell.dataset / f"seed{cell.seed}" / "run"
        clean_config = _train_config(spec, source.labels_csv, cell.seed, source, bench_dir)
        truth_label = dict(zip(source.table["path"], source.table["label"]))
        retrain_cell(folder, base, clean_dir, clean_config, spec.retrain_test, truth_label,
                     budget=spec.review_budget, progress_bar=spec.progress_bar, log=log,
                     keep_checkpoints=spec.keep_checkpoints)
    except Exception as e:  # one cell's failure must not stop the grid
        log(f"warning: {cell.key} retrain: {type(e).__name__}: {e}")
        return [f"{cell.key} retrain: {type(e).__name__}: {e}"]
    return []


#: The error-count estimates a cell records: (estimator, the scores or probabilities it reads).
COUNT_ESTIMATES = (("bbe", "confidence"), ("bbe", "sei"), ("bbe", "aum"), ("mixture", "confidence"),
                   ("mixture", "sei"), ("cleanlab", "run probabilities"), ("cleanlab", "cross-validation"))


def cell_counts(folder: str | Path, base: dict | None = None) -> pd.DataFrame:
    """Every error-count estimate of one cell beside its true count (columns
    :data:`~sei_core.bench.results.COUNT_COLUMNS`): BBE and the score mixture on several
    methods' scores, cleanlab's calibrated count on the run's recorded (in-sample)
    probabilities and, once its cross-validation is complete, on the out-of-sample ones.
    Reads the cell's ``run/``, ``truth.csv`` and ``cv/``; trains nothing."""
    from .crossval import saved_probs
    from ..ranking import count_errors, load_run

    folder = Path(folder)
    if base is None:
        parts = folder.parts
        base = {"dataset": parts[-4], "noise": parts[-3], "rate": float(parts[-2][4:]),
                "seed": int(parts[-1][4:])}
    loaded = load_run(Run(folder / "run"))
    truth_csv = folder / "truth.csv"
    n_noisy = int(truth_for(loaded.ids, truth_columns(truth_csv), truth_csv).sum())
    rows = []
    for estimator, scores in COUNT_ESTIMATES:
        if estimator == "cleanlab" and scores == "cross-validation":
            table = pd.read_csv(folder / "labels.csv", dtype=str, keep_default_na=False)
            probs = saved_probs(folder / "cv", len(table))
            if probs is None:
                continue
            index = {c: i for i, c in enumerate(loaded.classes)}
            est = cleanlab_count(np.array([index[c] for c in table["label"]]), probs)
        elif estimator == "cleanlab":
            est = count_errors(loaded.records, loaded.is_aux, estimator="cleanlab", probs=loaded.probs)
        else:
            est = count_errors(loaded.records, loaded.is_aux, estimator=estimator, method=scores)
        rows.append({**base, "estimator": estimator, "scores": scores, "count": est.count,
                     "low": est.low, "high": est.high, "n_noisy": n_noisy, "n_samples": est.n_samples})
    return pd.DataFrame(rows, columns=COUNT_COLUMNS)


def cells_of(spec: BenchSpec, names: Sequence[str]) -> list[Cell]:
    """The grid in the order it is run: data set, noise type, rate, seed."""
    return [Cell(n, noise, float(rate), int(seed))
            for n in names for noise in spec.noise for rate in spec.rates for seed in spec.seeds]


def run_bench(spec: BenchSpec, out: str | Path, *, log: Callable[[str], None] | None = None) -> BenchReport:
    """Run (or resume) the grid of ``spec`` in the bench directory ``out``.

    Gathered results and the report are rewritten after every cell, so an interrupted
    benchmark leaves a usable ``results.csv`` and resumes where it stopped.
    """
    say = log or (lambda m: print(m, file=sys.stderr))
    spec.validate()
    bench_dir = Path(out).resolve()
    _check_bench_json(bench_dir, spec)
    sources, names = [], []
    for d in spec.data:
        name = dataset_name(d)
        while name in names:
            name += "-2"
        names.append(name)
        sources.append(prepare_source(d, bench_dir, name=name, split=spec.train.get("split", "train"),
                                      max_pixels=spec.train.get("max_pixels", ds_mod.DEFAULT_MAX_PIXELS),
                                      skip_unreadable=spec.train.get("skip_unreadable", False),
                                      max_samples=spec.max_samples, path_column=spec.path_column,
                                      label_column=spec.label_column, image_dirs=spec.image_dirs,
                                      image_ext=spec.image_ext))
    by_name = dict(zip(names, sources))
    cells = cells_of(spec, names)
    states, failures = {}, []
    for i, cell in enumerate(cells, 1):
        t0 = time.monotonic()
        state, fails = run_cell(cell, by_name[cell.dataset], spec, bench_dir, say)
        states[cell.key] = state
        failures += fails
        say(f"[{i}/{len(cells)}] {cell.key}: {state}" + (f" in {time.monotonic() - t0:.0f}s" if state != "skipped" else ""))
        if state != "skipped":
            write_results(bench_dir)
            if spec.retrain_test is not None:
                from .retrain import write_retrain_report

                write_retrain_report(bench_dir)
    results = write_results(bench_dir)
    files = write_report(bench_dir, results)
    if spec.review_sim is not None:
        from .count_sim import write_report as write_sim_report

        files += write_sim_report(bench_dir, spec.review_sim)
    if spec.retrain_test is not None:
        from .retrain import write_retrain_report

        files += write_retrain_report(bench_dir)
    return BenchReport(results=results, cells=states, failures=failures, files=files)


# ------------------------------------------------------------------------------ results



# ------------------------------------------------------------------------------ one run


def evaluate_run(run: Run | object, is_noisy: np.ndarray, methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Every record-based method's flags and ranking of one run, measured against the truth.

    ``run`` is a run directory (:class:`~sei_core.runs.Run`) or its
    :class:`~sei_core.ranking.LoadedRun`; ``is_noisy`` is ``(N,)`` boolean in the run's sample
    order (e.g. :func:`sei_core.workspace.load_truth`). Returns one row per method with
    ``method, f1, precision, recall, auroc, ap, flagged, n_samples, n_noisy, threshold_rule``,
    best F1 first — the same numbers :func:`run_cell` records for a benchmark cell.
    """
    from ..ranking import LoadedRun, count_errors, load_run, score_method

    loaded = run if isinstance(run, LoadedRun) else load_run(run)
    is_noisy = np.asarray(is_noisy, dtype=bool)
    if is_noisy.shape != (len(loaded.ids),):
        raise ValueError(f"the truth has {is_noisy.shape[0]} samples, the run {len(loaded.ids)}")
    rows = []
    est = count_errors(loaded.records, loaded.is_aux, probs=loaded.probs)
    for m in methods or [n for n in method_names(BENCH_RULES) if n not in OUT_OF_SAMPLE_METHODS]:
        ms = score_method(loaded, m, count=est)
        rows.append({"method": m, **_evaluate(ms.score, ms.flagged, is_noisy), "threshold_rule": threshold_text(m)})
    return pd.DataFrame(rows).sort_values("f1", ascending=False, kind="stable").reset_index(drop=True)


def spec_from_train_config(config, **kw) -> BenchSpec:
    """A :class:`BenchSpec` whose training settings are those of a ``TrainConfig``."""
    train = {k: v for k, v in dataclasses.asdict(config).items()
             if k not in ("data", "seed", "path_column", "label_column", "image_dirs", "image_ext")}
    kw = {"path_column": config.path_column, "label_column": config.label_column,
          "image_dirs": list(config.image_dirs or []), "image_ext": config.image_ext, **kw}
    return BenchSpec(train=train, **kw)

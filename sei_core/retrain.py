"""Train again on the reviewed labels: a new run from a reviewed run's label file.

A review ends in a label file that holds the reviewed state (:mod:`sei_core.review`):
relabeled rows carry their new label, discarded rows stay in the file marked
``review_status = discarded``, unreviewed rows are as they were. :func:`start` trains a new
run on that state — relabels applied, discarded images left out, everything else of the
parent run's configuration — without changing the label file:

* the samples and labels to train on are written once into the new run folder
  (``training_labels.csv``, ``path,label`` with the label file's own path cells; training
  reads it with :func:`sei_core.dataset.apply_training_table`), so a killed retrain resumes
  on the very same samples even if the review goes on meanwhile;
* the images are found through the parent's data set (``config.data``), as the parent found
  them;
* review decisions on the new run go to the parent's label file (``config.review_file``), so
  every round of review shares one decision log, and a second round's queue shows the images
  decided in the first round as decided (the queue's "to review" skips them);
* where the run came from is kept in ``config.json`` under ``lineage`` (:func:`lineage_of`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .config import TrainConfig
from .errors import ANOTHER_OUT, resume_fix
from .files import atomic_write_csv
from .labels import TableError, read_table
from .review import CONFIRMED, DISCARDED, RELABELED, STATUS_COL, review_columns, review_label_file
from .runs import Run, RunError, list_runs, now
from .train import train

#: The samples a retrained run trains on, in its run folder.
TRAINING_TABLE = "training_labels.csv"


@dataclasses.dataclass
class Reviewed:
    """A label file as the review left it."""

    label_file: Path
    paths: pd.Series  # (R,) path cell of every row (stripped)
    labels: pd.Series  # (R,) label as reviewed
    status: pd.Series  # (R,) review status ("" unreviewed)
    sha256: str
    size: int
    mtime: str

    @property
    def kept(self) -> np.ndarray:
        """Rows to train on: all but the discarded ones."""
        return (self.status != DISCARDED).to_numpy(dtype=bool)

    def counts(self) -> dict[str, int]:
        s = self.status
        return {"rows": int(len(s)), "decisions": int((s != "").sum()), "confirmed": int((s == CONFIRMED).sum()),
                "relabeled": int((s == RELABELED).sum()), "discarded": int((s == DISCARDED).sum())}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks (a 50 MB label file in about 0.1 s)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_reviewed(label_file: str | Path, path_column: str, label_column: str) -> Reviewed:
    """Read a reviewed label file (any dialect the product reads) without changing it."""
    f = Path(label_file)
    try:
        raw = f.read_bytes()
        table = read_table(f, raw=raw, path_column=path_column, label_column=label_column)
    except OSError as e:
        raise RunError(f"cannot read the reviewed label file {f}: {e}") from None
    except TableError as e:
        raise RunError(f"the reviewed label file {f}: {e}") from None
    status = (table.frame[STATUS_COL].str.strip() if STATUS_COL in table.frame.columns
              else pd.Series([""] * len(table.frame), dtype=object))
    st = f.stat()
    return Reviewed(label_file=f.absolute(), paths=table.paths().reset_index(drop=True),
                    labels=table.labels().reset_index(drop=True), status=status.reset_index(drop=True),
                    sha256=hashlib.sha256(raw).hexdigest(), size=st.st_size,
                    mtime=pd.Timestamp(st.st_mtime_ns, unit="ns", tz="UTC").isoformat())


def lineage_of(parent: Run, reviewed: Reviewed) -> dict:
    """What ``config.json`` records of a retrained run's origin."""
    cfg = parent.config()
    return {"parent_run": str(parent.path.resolve()), "parent_name": parent.name,
            "parent_created_at": cfg.get("created_at"), "label_file": str(reviewed.label_file),
            "label_file_sha256": reviewed.sha256, "label_file_bytes": reviewed.size,
            "label_file_modified": reviewed.mtime, **reviewed.counts(),
            "generation": int((cfg.get("lineage") or {}).get("generation", 0)) + 1, "created_at": now()}


def retrain_config(parent: Run | str | Path, out: str | Path, label_file: str | Path | None = None,
                   **overrides) -> tuple[TrainConfig, pd.DataFrame]:
    """The :class:`~sei_core.config.TrainConfig` of a retrain of ``parent`` into ``out`` and its
    training table (``path,label`` of the rows kept).

    ``label_file`` defaults to the parent's review label file
    (:func:`sei_core.review.review_label_file`); ``overrides`` replace settings of the
    parent's configuration (e.g. ``epochs``; by default none: everything but the labels is the
    parent's)."""
    parent = Run(parent) if not isinstance(parent, Run) else parent
    if not parent.exists():
        raise RunError(f"{parent.path} is not a run directory (no config.json)")
    cfg = parent.config()
    if str(cfg.get("data", "")).lower().endswith(".npz") or Path(cfg.get("data", "")).is_dir():
        raise RunError(f"{parent.path} was trained on an image folder or .npz file; retraining from its review "
                       f"needs a label file: export the review's clean label file (Review page) and train on it")
    cols = review_columns(parent)
    lf = Path(label_file) if label_file is not None else review_label_file(parent)
    reviewed = read_reviewed(lf, cols["path_column"], cols["label_column"])
    table = pd.DataFrame({"path": reviewed.paths[reviewed.kept], "label": reviewed.labels[reviewed.kept]})
    base = TrainConfig.from_dict(cfg)
    out = Path(out).absolute()
    config = dataclasses.replace(
        base, training_table=str(out / TRAINING_TABLE), review_file=str(reviewed.label_file),
        lineage=lineage_of(parent, reviewed), **overrides)
    # the parent's data set finds the images; its labels come from the training table
    config = dataclasses.replace(config, path_column=str(cfg.get("path_column") or base.path_column),
                                 label_column=str(cfg.get("label_column") or base.label_column))
    return config, table


def prepare_retrain(parent: Run | str | Path, out: str | Path, label_file: str | Path | None = None,
                    **overrides):
    """Write the training table into the new run folder ``out`` and return its config (train it
    with :func:`sei_core.train.train` or :func:`sei_core.jobs.start`). Refuses an ``out`` that
    already holds a run."""
    out = Path(out)
    if Run(out).exists():
        raise RunError(f"{out} already holds a run", ANOTHER_OUT + ", or " + resume_fix(out))
    config, table = retrain_config(parent, out, label_file, **overrides)
    if table.empty:
        raise RunError(f"every image of {config.review_file} is discarded: nothing to train on")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / TRAINING_TABLE, table)
    return config


def start(parent: Run | str | Path, out: str | Path, *, label_file: str | Path | None = None,
          log: Callable[[str], None] | None = None, progress_bar: bool = False, **overrides) -> Run:
    """Retrain ``parent`` on its reviewed labels into ``out`` (in this process) and return the run."""
    config = prepare_retrain(parent, out, label_file, **overrides)
    return train(config, out, progress_bar=progress_bar, log=log)


def default_out(parent: Run | str | Path) -> Path:
    """``<parent>-retrained`` (``-retrained-2`` … if taken), beside the parent."""
    p = Path(parent.path if isinstance(parent, Run) else parent).absolute()
    out, n = p.with_name(f"{p.name}-retrained"), 2
    while out.exists():
        out, n = p.with_name(f"{p.name}-retrained-{n}"), n + 1
    return out


def lineage(run: Run | str | Path) -> dict | None:
    """The run's lineage (None for a run not retrained from a review)."""
    run = Run(run) if not isinstance(run, Run) else run
    try:
        return run.config().get("lineage")
    except RunError:
        return None


def children(run: Run | str | Path, runs_folder: str | Path | None = None) -> list[Run]:
    """Runs in ``runs_folder`` (default: the run's own folder) retrained from ``run``."""
    run = Run(run) if not isinstance(run, Run) else run
    me = str(run.path.resolve())
    folder = Path(runs_folder) if runs_folder is not None else run.path.resolve().parent
    return [r for r in list_runs(folder) if (lineage(r) or {}).get("parent_run") == me]



def compare(parent, child, parent_groups: np.ndarray, child_groups: np.ndarray) -> dict[str, pd.DataFrame]:
    """A run and its retrained child side by side, from their scores
    (:class:`~sei_core.ranking.RunScores`) and signed-entropy groups
    (:data:`sei_core.dynamics.GROUP_NAMES`, ``-1`` unscored). Returns

    * ``classes``: per class, images and flagged images of each run (the given label);
    * ``parent_flags``: what became of the parent's flagged images in the child: left out
      (discarded), relabeled, still flagged, no longer flagged;
    * ``groups``: how many images of each run are in each group.

    Column operations over the ids (a million images in about a second).
    """
    from .dynamics import GROUP_NAMES

    classes = list(parent.classes)
    k = len(classes)

    def per_class(s) -> tuple[np.ndarray, np.ndarray]:
        lab = np.asarray(s.labels)
        return (np.bincount(lab, minlength=k)[:k],
                np.bincount(lab[np.asarray(s.flagged, dtype=bool)], minlength=k)[:k])

    (pn, pf), (cn, cf) = per_class(parent), per_class(child)
    by_class = pd.DataFrame({"class": classes, "parent images": pn, "parent flagged": pf,
                             "child images": cn, "child flagged": cf})
    pflag = np.flatnonzero(np.asarray(parent.flagged, dtype=bool))
    at = pd.Index(child.ids).get_indexer([parent.ids[i] for i in pflag])
    inside = at >= 0
    child_label = np.full(len(pflag), -1)
    child_label[inside] = np.asarray(child.labels)[at[inside]]
    parent_names = np.array(classes, dtype=object)[np.asarray(parent.labels)[pflag]]
    child_names = np.where(inside, np.array(list(child.classes) + [""], dtype=object)[child_label], "")
    relabeled = inside & (child_names != parent_names)
    still = np.zeros(len(pflag), dtype=bool)
    still[inside] = np.asarray(child.flagged, dtype=bool)[at[inside]]
    fate = pd.DataFrame({"what became of them": ["flagged in the parent", "left out of the child (discarded)",
                                                 "relabeled", "still flagged in the child",
                                                 "of them relabeled", "no longer flagged"],
                         "images": [len(pflag), int((~inside).sum()), int(relabeled.sum()), int(still.sum()),
                                    int((still & relabeled).sum()), int((inside & ~still).sum())]})
    g = len(GROUP_NAMES)

    def group_counts(groups) -> np.ndarray:
        groups = np.asarray(groups)
        return np.bincount(groups[groups >= 0].astype(np.int64), minlength=g)[:g]

    groups = pd.DataFrame({"group": list(GROUP_NAMES), "parent": group_counts(parent_groups),
                           "child": group_counts(child_groups)})
    return {"classes": by_class, "parent_flags": fate, "groups": groups}

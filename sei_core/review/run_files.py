"""Which label file and columns a run reviews, the images sent to its queue by hand, and the
run's count from its decision log."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..files import atomic_write_bytes, atomic_write_json
from ..labels import LABEL_COL, PATH_COL, source_kind
from ..runs import Run
from ..score_cache import scored
from .queue import ReviewQueue
from .label_file import is_read_only
from .store import ReviewStore

# --------------------------------------------------------------------------- what a run reviews

#: The label file made in a run's folder when its data has none to write to (or it is read-only).
REVIEW_LABEL_FILE = "labels.csv"
#: Sample ids sent to a run's review queue by hand (JSON list), beside the flagged ones.
REVIEW_REQUESTS_FILE = "review_requests.json"


def review_columns(run: Run) -> dict[str, str]:
    """The ``path_column`` and ``label_column`` of the run's review label file
    (:func:`review_label_file`): those the run was trained with for a CSV data set, ``path``
    and ``label`` for the label file made for an image folder or ``.npz``. Keyword arguments
    of :class:`ReviewStore`."""
    cfg = run.config()
    if source_kind(cfg.get("data", "")) == "csv":
        return {"path_column": str(cfg.get("path_column") or PATH_COL),
                "label_column": str(cfg.get("label_column") or LABEL_COL)}
    return {"path_column": PATH_COL, "label_column": LABEL_COL}


def review_label_file(run: Run) -> Path:
    """The label file decisions on ``run`` are written to.

    For a CSV data set that is the CSV itself — unless it is read-only, then a verbatim
    working copy ``<run>/labels.csv`` is made once (its paths stay as they were, so its
    cleaned export can replace the original). For an image folder or ``.npz`` a label file
    ``<run>/labels.csv`` (``path,label``, from the samples the run trained on) is created
    once and used from then on. A run retrained from a review (:mod:`sei_core.retrain`)
    reviews into its parent's label file (``review_file`` of its config), so that every round
    of review shares one decision log.
    """
    if run.config().get("review_file"):
        return Path(run.config()["review_file"])
    data = Path(run.config().get("data", ""))
    target = run.path / REVIEW_LABEL_FILE
    if source_kind(data) == "csv":
        if not is_read_only(data):
            return data
        if not target.is_file():  # a read-only label file: review a working copy of it
            atomic_write_bytes(target, data.read_bytes())
        return target
    if not target.is_file():
        ids, labels = run.samples()
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([PATH_COL, LABEL_COL])
        w.writerows(zip(ids, labels))
        atomic_write_bytes(target, buf.getvalue().encode("utf-8"))
    return target


def review_requests(run: Run) -> list[str]:
    """Sample ids a user sent to the review queue from Explore (besides the flagged ones)."""
    try:
        items = json.loads((run.path / REVIEW_REQUESTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(x) for x in items] if isinstance(items, list) else []


def request_review(run: Run, sample_id: str) -> list[str]:
    """Add a sample to the run's review queue (kept on disk); returns the request list."""
    items = review_requests(run)
    if sample_id not in items:
        items.append(sample_id)
        atomic_write_json(run.path / REVIEW_REQUESTS_FILE, items)
    return items


def run_count(run: Run):
    """The number of wrong labels of ``run``'s data from its decision log, and when to stop
    (what ``sei count`` prints and the pages show): ``(DecisionCount, StopAdvice, points)`` of
    :meth:`ReviewQueue.count` over the run's own queue, with the model's estimate as the
    fallback."""
    s = scored(run).scores
    store = ReviewStore(review_label_file(run), classes=list(s.classes), **review_columns(run))
    try:
        queue = ReviewQueue(s.ids, s.labels, s.score, s.flagged, review_requests(run))
        return queue.count(store, model=s.count)
    finally:
        store.close()

"""sei_core.review.ReviewQueue: order, filters, next/previous and one-row updates, without the app."""

import numpy as np
import pandas as pd

from sei_core.review import ReviewQueue

IDS = ["a.png", "b.png", "c.png", "d.png", "e.png"]
LABELS = np.array([0, 1, 0, 1, 0])
SCORE = np.array([0.5, -2.0, np.nan, -1.0, 3.0])
FLAGGED = np.array([True, True, False, True, False])


def table(**status) -> pd.DataFrame:
    return pd.DataFrame({"path": IDS, "label": ["x", "y", "x", "y", "x"],
                         "review_status": [status.get(p, "") for p in IDS],
                         "reviewed_by": ["" for _ in IDS], "original_label": ["x", "y", "x", "y", "x"]})


def test_flagged_and_requested_most_suspicious_first_unscored_last():
    q = ReviewQueue(IDS, LABELS, SCORE, FLAGGED, requested=["c.png", "zzz.png"], status_table=table())
    assert q.ids == ["b.png", "d.png", "a.png", "c.png"]
    assert q.requested == 1 and len(q) == 4
    assert q.row("b.png") == ("y", "", "", "y")
    assert q.row("e.png") is None  # not in the queue


def test_filters_next_previous_and_one_row_updates():
    q = ReviewQueue(IDS, LABELS, SCORE, FLAGGED, status_table=table(**{"d.png": "confirmed"}))
    todo = q.select(("",))
    assert [q.ids[i] for i in todo] == ["b.png", "a.png"]
    assert [q.ids[i] for i in q.select(None, 1)] == ["b.png", "d.png"]
    assert q.after("b.png", todo) == "a.png"
    assert q.after("a.png", todo) == "b.png"  # wraps
    assert q.before("a.png", q.select(None)) == "d.png"
    assert q.reviewed() == 1
    q.apply("b.png", "x", "relabeled", "Dr. A")
    assert q.row("b.png") == ("x", "relabeled", "Dr. A", "y")
    assert q.reviewed() == 2
    assert [q.ids[i] for i in q.select(("",))] == ["a.png"]
    assert q.after("a.png", q.select(("",))) is None


def test_rows_missing_from_the_label_file():
    t = table().iloc[1:]  # a.png was removed from the file
    q = ReviewQueue(IDS, LABELS, SCORE, FLAGGED, status_table=t)
    assert q.row("a.png") is None
    assert "a.png" not in [q.ids[i] for i in q.select(("",))]

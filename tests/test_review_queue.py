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


def _store(tmp_path, rows=("a.png,x", "b.png,y", "c.png,x", "d.png,y", "e.png,x"), **kw):
    from sei_core.review import ReviewStore

    f = tmp_path / "labels.csv"
    f.write_text("path,label\n" + "\n".join(rows) + "\n")
    return ReviewStore(f, classes=["x", "y"], **kw), f


def test_the_queue_follows_the_store_by_the_decisions_since_and_rereads_a_replaced_file(tmp_path):
    # coalesced writes: decisions stay pending in the log while the file waits for its rewrite
    store, f = _store(tmp_path, coalesce_min_bytes=0, coalesce_s=3600)
    q = ReviewQueue(IDS, LABELS, SCORE, FLAGGED)
    q.follow(store)
    assert q.row("b.png") == ("y", "", "", "y") and q.reviewed() == 0
    store.relabel("b.png", "x", "Dr. A", "y")
    other_tab = ReviewQueue(IDS, LABELS, SCORE, FLAGGED)
    other_tab.follow(store)  # a fresh queue reads the file's rows with the pending decisions over them
    assert other_tab.row("b.png") == ("x", "relabeled", "Dr. A", "y")
    mark = q.synced_with
    q.follow(store)  # only what was logged since
    assert q.row("b.png") == ("x", "relabeled", "Dr. A", "y") and q.synced_with != mark
    assert store.changes(q.synced_with) == (q.synced_with, [])
    store.undo("Dr. A")
    q.follow(store)
    assert q.row("b.png") == ("y", "", "", "y")
    store.flush()
    # another program replaces the file: the next follow reads the queue's rows again
    f.write_text("path,label,original_label,review_status,reviewed_by\n"
                 "b.png,y,y,,\nd.png,x,y,relabeled,Dr. B\ne.png,x,x,,\n")
    q.follow(store)
    assert q.row("d.png") == ("x", "relabeled", "Dr. B", "y")
    assert q.row("a.png") is None  # no longer in the label file
    store.close()


def test_status_of_matches_the_status_table(tmp_path):
    store, _ = _store(tmp_path, coalesce_min_bytes=0, coalesce_s=3600)
    store.confirm("a.png", "Dr. A", "x")
    store.discard("d.png", "Dr. B", "y")
    present, cols = store.status_of(["d.png", "zzz.png", "a.png", "c.png"])
    assert present.tolist() == [True, False, True, True]
    table = store.status_table().set_index("path")
    for i, p in enumerate(["d.png", "a.png", "c.png"]):
        j = [0, 2, 3][i]
        for c in ("label", "original_label", "review_status", "reviewed_by"):
            assert cols[c][j] == table.loc[p, c], (p, c)
    assert [cols[c][1] for c in cols] == ["", "", "", ""]
    store.close()


def test_recent_decisions_are_the_newest_first(tmp_path):
    store, _ = _store(tmp_path)
    store.confirm("a.png", "Dr. A", "x")
    store.relabel("b.png", "x", "Dr. A", "y")
    store.discard("c.png", "Dr. B", "x")
    assert [d.path for d in store.recent_decisions(2)] == ["c.png", "b.png"]
    assert store.recent_decisions(10) == store.decisions()[::-1]
    store.close()

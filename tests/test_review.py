"""Tests for the review-decision store (sei_core.review)."""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from sei_core import review
from sei_core.review import writeback
from sei_core.review import (
    ConflictError,
    ExportError,
    LabelFileError,
    ReviewError,
    ReviewStore,
    UndoError,
    UnknownLabelError,
    UnknownSampleError,
)

BASIC = "path,label,note\na.png,cat,\nb.png,dog,x\nc.png,cat,y\n"


def write(tmp_path: Path, text: str, name: str = "labels.csv", newline: str = "\n") -> Path:
    f = tmp_path / name
    f.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return f


def rows(label_file: Path) -> dict[str, dict[str, str]]:
    """Parse the CSV with the stdlib (independent of the code under test)."""
    with open(label_file, newline="", encoding="utf-8") as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


def db_rows(store: ReviewStore) -> list[dict]:
    con = sqlite3.connect(store.db_path)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM decisions ORDER BY id")]
    finally:
        con.close()


@pytest.fixture
def store(tmp_path: Path) -> ReviewStore:
    return ReviewStore(write(tmp_path, BASIC))


# --------------------------------------------------------------------------- actions


def test_default_locations(tmp_path: Path) -> None:
    f = write(tmp_path, BASIC)
    s = ReviewStore(f)
    assert s.db_path == tmp_path / ".sei_review" / "labels.decisions.sqlite"
    assert s.db_path.exists()
    assert s.lock_path == tmp_path / ".sei_review" / "labels.lock"
    assert not s.backup_path.exists()  # nothing written yet
    assert f.read_text() == BASIC


def test_confirm_relabel_discard_update_csv_and_db(store: ReviewStore) -> None:
    d1 = store.confirm("a.png", "ann", expected_label="cat", sei=0.5)
    d2 = store.relabel("b.png", "cat", "bob", expected_label="dog", sei=-1.25)
    d3 = store.discard("c.png", "ann", expected_label="cat")

    r = rows(store.label_file)
    assert list(next(iter(r.values())).keys()) == ["path", "label", "note", "original_label",
                                                   "review_status", "reviewed_by"]
    assert r["a.png"] == {"path": "a.png", "label": "cat", "note": "", "original_label": "cat",
                               "review_status": "confirmed", "reviewed_by": "ann"}
    assert (r["b.png"]["label"], r["b.png"]["original_label"], r["b.png"]["review_status"],
            r["b.png"]["reviewed_by"]) == ("cat", "dog", "relabeled", "bob")
    assert (r["c.png"]["label"], r["c.png"]["review_status"]) == ("cat", "discarded")

    assert (d1.action, d1.old_label, d1.new_label, d1.old_status, d1.new_status, d1.sei) == (
        "confirm", "cat", "cat", "", "confirmed", 0.5)
    assert (d2.action, d2.old_label, d2.new_label, d2.new_status, d2.reviewer) == (
        "relabel", "dog", "cat", "relabeled", "bob")
    assert d3.new_status == "discarded" and not d3.undone and d3.time.endswith("+00:00")

    logged = db_rows(store)
    assert [(x["id"], x["path"], x["action"], x["new_label"], x["new_status"], x["undone"])
            for x in logged] == [
        (d1.id, "a.png", "confirm", "cat", "confirmed", 0),
        (d2.id, "b.png", "relabel", "cat", "relabeled", 0),
        (d3.id, "c.png", "discard", "cat", "discarded", 0),
    ]
    assert logged[1]["sei"] == -1.25 and logged[2]["sei"] is None
    assert store.decisions() == [d1, d2, d3]
    assert store.decisions(path="b.png") == [d2]
    assert store.latest_decision("b.png") == d2
    assert store.latest_decision("zzz.png") is None


def test_discarded_rows_are_kept(store: ReviewStore) -> None:
    store.discard("b.png", "ann", expected_label="dog")
    assert list(rows(store.label_file)) == ["a.png", "b.png", "c.png"]


def test_status_table_and_progress(store: ReviewStore) -> None:
    t = store.status_table()  # before any write: review columns synthesised
    assert list(t.columns) == ["path", "label", "original_label", "review_status", "reviewed_by"]
    assert t["original_label"].tolist() == ["cat", "dog", "cat"]
    assert store.progress(["a.png", "b.png"]) == (0, 2)

    store.relabel("b.png", "cat", "ann", expected_label="dog")
    t = store.status_table()
    assert t.set_index("path").loc["b.png"].tolist() == ["cat", "dog", "relabeled", "ann"]
    assert store.progress(["a.png", "b.png", "b.png", "nope.png"]) == (1, 3)


def test_wal_mode(store: ReviewStore) -> None:
    con = sqlite3.connect(store.db_path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


# --------------------------------------------------------------------------- file fidelity

ODD = (
    'id,path,label,comment,empty,score\n'
    '001,img/α 1.png,cat,"has, comma",,0.10\n'
    '002,img/b.png,dog,"quote ""inside"" and\nnewline",,NA\n'
    '010,"img/c,d.png",ĉat 🐱,  spaced  ,,\n'
    '011,img/e.png,,,,1e5\n'
)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_odd_values_survive_round_trip(tmp_path: Path, newline: str) -> None:
    f = write(tmp_path, ODD, newline=newline)
    before = rows(f)
    s = ReviewStore(f, classes=["cat", "dog", "ĉat 🐱"])
    s.confirm("img/α 1.png", "ann", expected_label="cat")
    s.relabel("img/c,d.png", "cat", "ann", expected_label="ĉat 🐱")
    s.discard("img/e.png", "ann", expected_label="")
    after = rows(f)

    assert list(after) == list(before)  # row order
    header = next(csv.reader(io.StringIO(f.read_text(encoding="utf-8"))))
    assert header == ["id", "path", "label", "comment", "empty", "score",
                      "original_label", "review_status", "reviewed_by"]
    for p, old in before.items():
        new = after[p]
        for col in ["id", "comment", "empty", "score"]:
            assert new[col] == old[col], (p, col)
        assert new["original_label"] == old["label"]
    assert after["img/α 1.png"]["id"] == "001"
    assert after["img/b.png"]["score"] == "NA"
    assert after["img/b.png"]["label"] == "dog" and after["img/b.png"]["review_status"] == ""
    assert after["img/c,d.png"]["label"] == "cat"
    assert after["img/e.png"]["label"] == "" and after["img/e.png"]["review_status"] == "discarded"

    raw = f.read_bytes()
    assert raw.count(b"\r\n") == (raw.count(b"\n") if newline == "\r\n" else 0)


def test_utf8_bom_preserved(tmp_path: Path) -> None:
    f = tmp_path / "labels.csv"
    f.write_bytes(b"\xef\xbb\xbf" + BASIC.encode())
    s = ReviewStore(f)
    s.confirm("a.png", "ann", expected_label="cat")
    raw = f.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfpath,label,note,")
    assert not raw[3:].startswith(b"\xef\xbb\xbf")


def test_backup_made_once_and_equals_original(tmp_path: Path) -> None:
    f = write(tmp_path, ODD)
    original = f.read_bytes()
    s = ReviewStore(f, classes=["cat", "dog"])
    s.confirm("img/b.png", "ann", expected_label="dog")
    assert s.backup_path == tmp_path / "labels.csv.sei-backup"
    assert s.backup_path.read_bytes() == original
    s.relabel("img/b.png", "cat", "ann", expected_label="dog", expected_status="confirmed")
    s.undo("ann")
    assert s.backup_path.read_bytes() == original
    assert f.read_bytes() != original


def test_existing_review_columns_are_reused(tmp_path: Path) -> None:
    f = write(tmp_path, "review_status,path,label,original_label,reviewed_by\n"
                        "confirmed,a.png,cat,cat,old\n,b.png,dog,,\n")
    s = ReviewStore(f)
    s.relabel("b.png", "cat", "ann", expected_label="dog")
    text = f.read_text()
    assert text.splitlines()[0] == "review_status,path,label,original_label,reviewed_by"
    r = rows(f)
    assert r["a.png"] == {"review_status": "confirmed", "path": "a.png", "label": "cat",
                          "original_label": "cat", "reviewed_by": "old"}
    assert r["b.png"] == {"review_status": "relabeled", "path": "b.png", "label": "cat",
                          "original_label": "dog", "reviewed_by": "ann"}
    with pytest.raises(ConflictError):  # a.png is already confirmed, caller expected ""
        s.confirm("a.png", "ann", expected_label="cat")
    s.confirm("a.png", "ann", expected_label="cat", expected_status="confirmed")


# --------------------------------------------------------------------------- undo


def test_undo_restores_label_and_status_in_both(store: ReviewStore) -> None:
    store.confirm("a.png", "ann", expected_label="cat")
    d = store.relabel("b.png", "cat", "ann", expected_label="dog", sei=0.3)
    u = store.undo("ann")

    assert (u.action, u.undoes, u.old_label, u.new_label, u.old_status, u.new_status, u.sei) == (
        "undo", d.id, "cat", "dog", "relabeled", "", 0.3)
    r = rows(store.label_file)["b.png"]
    assert (r["label"], r["review_status"], r["reviewed_by"], r["original_label"]) == ("dog", "", "", "dog")
    by_id = {x.id: x for x in store.decisions()}
    assert by_id[d.id].undone is True and by_id[u.id].undone is False
    assert [x.id for x in store.decisions(include_undone=False)] == [1, u.id]
    assert store.latest_decision("b.png") == u

    # next undo takes the next older one (a stack per reviewer)
    store.undo("ann")
    assert rows(store.label_file)["a.png"]["review_status"] == ""
    with pytest.raises(UndoError, match="no decision left"):
        store.undo("ann")


def test_undo_restores_previous_reviewers_state(store: ReviewStore) -> None:
    store.confirm("a.png", "ann", expected_label="cat")
    store.discard("a.png", "bob", expected_label="cat", expected_status="confirmed")
    store.undo("bob")
    r = rows(store.label_file)["a.png"]
    assert (r["label"], r["review_status"], r["reviewed_by"]) == ("cat", "confirmed", "ann")


def test_undo_after_another_reviewer_acted_is_a_conflict(store: ReviewStore) -> None:
    d = store.relabel("b.png", "cat", "ann", expected_label="dog")
    later = store.confirm("b.png", "bob", expected_label="cat", expected_status="relabeled")

    with pytest.raises(ConflictError) as info:
        store.undo("ann")
    err = info.value
    assert err.latest == later and err.latest.reviewer == "bob"
    assert (err.current_label, err.current_status) == ("cat", "confirmed")
    assert "bob confirmed 'b.png'" in str(err) and "force=True" in str(err)
    r = rows(store.label_file)["b.png"]  # nothing changed
    assert (r["label"], r["review_status"], r["reviewed_by"]) == ("cat", "confirmed", "bob")
    assert len(store.decisions()) == 2

    # Once bob's decision is undone, ann's undo applies cleanly.
    store.undo("bob")
    store.undo("ann", decision_id=d.id)
    r = rows(store.label_file)["b.png"]
    assert (r["label"], r["review_status"], r["reviewed_by"]) == ("dog", "", "")


def test_undo_force_reverts_anyway(store: ReviewStore) -> None:
    d = store.relabel("b.png", "cat", "ann", expected_label="dog")
    store.discard("b.png", "bob", expected_label="cat", expected_status="relabeled")
    u = store.undo("ann", force=True)
    assert u.undoes == d.id
    r = rows(store.label_file)["b.png"]
    assert (r["label"], r["review_status"]) == ("dog", "")


def test_undo_by_id_errors(store: ReviewStore) -> None:
    d = store.confirm("a.png", "ann", expected_label="cat")
    u = store.undo("ann", decision_id=d.id)
    with pytest.raises(UndoError, match="already undone"):
        store.undo("ann", decision_id=d.id)
    with pytest.raises(UndoError, match="itself an undo"):
        store.undo("ann", decision_id=u.id)
    with pytest.raises(UndoError, match="no decision #999"):
        store.undo("ann", decision_id=999)


# --------------------------------------------------------------------------- conflicts


def test_stale_expected_label_conflicts_and_force_applies(store: ReviewStore) -> None:
    first = store.relabel("a.png", "dog", "dr_x", expected_label="cat")
    with pytest.raises(ConflictError) as info:  # second tab still shows "cat"
        store.relabel("a.png", "cat", "dr_y", expected_label="cat")
    err = info.value
    assert err.latest == first
    assert (err.path, err.current_label, err.expected_label) == ("a.png", "dog", "cat")
    assert "dr_x relabeled 'a.png' from 'cat' to 'dog' at" in str(err)
    assert rows(store.label_file)["a.png"]["label"] == "dog"
    assert len(store.decisions()) == 1

    d = store.relabel("a.png", "cat", "dr_y", expected_label="cat", force=True)
    assert (d.old_label, d.new_label, d.old_status) == ("dog", "cat", "relabeled")
    r = rows(store.label_file)["a.png"]
    assert (r["label"], r["reviewed_by"], r["original_label"]) == ("cat", "dr_y", "cat")
    assert len(store.decisions()) == 2


def test_external_edit_conflict_has_no_latest(store: ReviewStore) -> None:
    store.label_file.write_text(BASIC.replace("b.png,dog", "b.png,bird"))
    with pytest.raises(ConflictError) as info:
        store.confirm("b.png", "ann", expected_label="dog")
    assert info.value.latest is None
    assert "outside the review tool" in str(info.value)


def test_status_conflict(store: ReviewStore) -> None:
    store.confirm("a.png", "ann", expected_label="cat")
    with pytest.raises(ConflictError, match="ann confirmed"):
        store.discard("a.png", "bob", expected_label="cat")
    with pytest.raises(ReviewError, match="expected_status"):
        store.discard("a.png", "bob", expected_label="cat", expected_status="done")


# --------------------------------------------------------------------------- validation


def test_unknown_label_with_classes(tmp_path: Path) -> None:
    s = ReviewStore(write(tmp_path, BASIC), classes=["cat", "dog", "fox"])
    with pytest.raises(UnknownLabelError, match=r"'cta' is not a valid class.*'cat', 'dog', 'fox'"):
        s.relabel("a.png", "cta", "ann", expected_label="cat")
    s.relabel("a.png", "fox", "ann", expected_label="cat")  # not yet in file, but listed
    assert rows(s.label_file)["a.png"]["label"] == "fox"


def test_unknown_label_without_classes_uses_file_labels(store: ReviewStore) -> None:
    with pytest.raises(UnknownLabelError, match="classes=") as info:
        store.relabel("a.png", "fox", "ann", expected_label="cat")
    assert "'cat', 'dog'" in str(info.value)
    with pytest.raises(UnknownLabelError):
        store.relabel("a.png", "", "ann", expected_label="cat")
    assert not store.backup_path.exists() and store.decisions() == []
    # relabel every dog away: 'dog' stays valid via original_label
    store.relabel("b.png", "cat", "ann", expected_label="dog")
    store.relabel("b.png", "dog", "ann", expected_label="cat", expected_status="relabeled")


def test_unknown_path(store: ReviewStore) -> None:
    with pytest.raises(UnknownSampleError, match=r"'nope.png'.*labels\.csv"):
        store.confirm("nope.png", "ann", expected_label="cat")
    assert isinstance(UnknownSampleError("x"), ReviewError)


def test_reviewer_required(store: ReviewStore) -> None:
    with pytest.raises(ReviewError, match="reviewer"):
        store.confirm("a.png", "  ", expected_label="cat")


@pytest.mark.parametrize("text, needle", [
    ("path,klass\na.png,cat\n", r"no column 'label'; its columns are 'path' and 'klass'"),
    ("file,label\na.png,cat\n", r"no column 'path'"),
    ("", "empty"),
    ("path,label\na.png,cat\na.png,dog\n", "more than once"),
    (" path ,label\na.png,cat\n a.png ,dog\n", "more than once"),
    ("path,label\na.png,cat,extra\n", "line 2: has 3 fields but the header has 2"),
])
def test_bad_label_file(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(LabelFileError, match=needle):
        ReviewStore(write(tmp_path, text))


def test_missing_label_file(tmp_path: Path) -> None:
    with pytest.raises(LabelFileError, match="does not exist"):
        ReviewStore(tmp_path / "nope.csv")


# --------------------------------------------------------------------------- atomicity


def test_label_file_write_failure_keeps_the_decision_pending(store: ReviewStore,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store.confirm("a.png", "ann", expected_label="cat")
    before = store.label_file.read_bytes()
    real = writeback.atomic_write

    def failing(target: Path, write) -> None:
        if Path(target) == store.label_file:
            raise OSError("disk full")
        real(target, write)

    monkeypatch.setattr(writeback, "atomic_write", failing)
    with pytest.raises(LabelFileError, match="disk full.*saved in the decision log"):
        store.relabel("b.png", "cat", "ann", expected_label="dog")
    assert store.label_file.read_bytes() == before  # the file is whole and unchanged
    assert [r["applied"] for r in db_rows(store)] == [1, 0] and store.pending() == 1
    assert not list(store.label_file.parent.glob(".labels.csv.*.tmp"))
    # what the store answers already includes the logged decision
    assert store.status_table().set_index("path").loc["b.png", "label"] == "cat"
    with pytest.raises(ConflictError):
        store.relabel("b.png", "cat", "bob", expected_label="dog")

    monkeypatch.setattr(writeback, "atomic_write", real)
    assert store.flush() == 1
    assert rows(store.label_file)["b.png"]["label"] == "cat" and store.pending() == 0
    d = store.confirm("b.png", "ann", expected_label="cat", expected_status="relabeled")
    assert (d.id, d.old_label, d.old_status) == (3, "cat", "relabeled")


def _worker(label_file: str, paths: list[str], reviewer: str, barrier) -> None:
    s = ReviewStore(label_file)
    barrier.wait()
    for i, p in enumerate(paths):
        label = "cat" if int(p[1:4]) % 2 == 0 else "dog"
        if i % 3 == 0:
            s.confirm(p, reviewer, expected_label=label, sei=float(i))
        elif i % 3 == 1:
            s.relabel(p, "dog" if label == "cat" else "cat", reviewer, expected_label=label)
        else:
            s.discard(p, reviewer, expected_label=label)


@pytest.mark.slow
def test_two_processes_lose_no_decisions(tmp_path: Path) -> None:
    paths = [f"p{i:03d}.png" for i in range(100)]
    f = write(tmp_path, "path,label,extra\n" + "".join(
        f"{p},{'cat' if i % 2 == 0 else 'dog'},e{i}\n" for i, p in enumerate(paths)))
    ReviewStore(f)  # create the DB up front
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_worker, args=(str(f), paths[k::2], f"rev{k}", barrier))
             for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]

    s = ReviewStore(f)
    final = rows(f)
    assert list(final) == paths
    assert all(r["review_status"] in {"confirmed", "relabeled", "discarded"} for r in final.values())
    assert [final[p]["extra"] for p in paths] == [f"e{i}" for i in range(100)]
    logged = s.decisions()
    assert len(logged) == 100 and sorted(d.path for d in logged) == paths
    for d in logged:  # DB and CSV agree row by row
        r = final[d.path]
        assert (r["label"], r["review_status"], r["reviewed_by"]) == (d.new_label, d.new_status, d.reviewer)
    assert s.progress(paths) == (100, 100)


# --------------------------------------------------------------------------- export


def test_export_clean(store: ReviewStore, tmp_path: Path) -> None:
    store.discard("b.png", "ann", expected_label="dog")
    store.relabel("c.png", "dog", "ann", expected_label="cat")
    out = tmp_path / "out" / "clean.csv"
    assert store.export_clean(out) == 2
    exported = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert exported["path"].tolist() == ["a.png", "c.png"]
    assert list(exported.columns) == ["path", "label", "note", "original_label", "review_status",
                                      "reviewed_by"]
    assert exported.set_index("path").loc["c.png", "original_label"] == "cat"
    assert "b.png" in rows(store.label_file)  # live file untouched


def test_export_refuses_live_label_file(store: ReviewStore) -> None:
    store.discard("b.png", "ann", expected_label="dog")
    before = store.label_file.read_bytes()
    for target in [store.label_file, store.label_file.parent / "." / "labels.csv", store.backup_path]:
        with pytest.raises(ExportError, match="Refusing"):
            store.export_clean(target)
    assert store.label_file.read_bytes() == before


# --------------------------------------------------------------------------- the queue


def _page_queue(ids, score, flagged, requested):
    """The queue as the Review page built it before it moved here (the reference)."""
    import numpy as np

    index = {sid: i for i, sid in enumerate(ids)}
    req = [index[r] for r in requested if r in index]
    return sorted(set(np.flatnonzero(flagged).tolist()) | set(req),
                  key=lambda i: (np.nan_to_num(score[i], nan=np.inf), ids[i]))


def test_statuses_of_paths(store: ReviewStore) -> None:
    store.discard("b.png", "ann", expected_label="dog")
    assert store.statuses(["b.png", "a.png", "zz.png"]).tolist() == ["discarded", "", None]


# --------------------------------------------------------------------------- chosen columns

MAPPED = "image_id;diagnosis;age\nimg/a.png;nevus;30\nimg/b.png;melanoma;41\n img/c.png ; nevus ;52\n"


def test_decisions_change_only_the_chosen_label_column(tmp_path: Path) -> None:
    from sei_core.labels import read_table

    f = write(tmp_path, MAPPED)
    for name in ("a", "b", "c"):
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "img" / f"{name}.png").write_bytes(b"png")
    with pytest.raises(LabelFileError, match="its columns are 'image_id', 'diagnosis' and 'age'"):
        ReviewStore(f)
    with pytest.raises(LabelFileError, match="review writes its own column 'original_label'"):
        ReviewStore(f, path_column="image_id", label_column="original_label")
    store = ReviewStore(f, path_column="image_id", label_column="diagnosis")
    before = MAPPED.splitlines()
    store.relabel("img/a.png", "melanoma", "ann", expected_label="nevus")
    after = f.read_text().splitlines()
    assert after[0] == before[0] + ";original_label;review_status;reviewed_by"  # columns added, none renamed
    assert after[1] == "img/a.png;melanoma;30;nevus;relabeled;ann"  # only the diagnosis cell changed
    assert after[2] == before[2] + ";melanoma;;" and after[3] == before[3] + ";nevus;;"  # byte for byte
    assert store.status_table().set_index("path").loc["img/a.png", "label"] == "melanoma"
    # a later decision splices its one row: every other byte stays
    first = f.read_bytes()
    store.confirm("img/c.png", "bob", expected_label="nevus")
    changed = [(x, y) for x, y in zip(first.splitlines(), f.read_bytes().splitlines()) if x != y]
    assert changed == [(b" img/c.png ; nevus ;52;nevus;;", b" img/c.png ; nevus ;52;nevus;confirmed;bob")]
    # undo puts the diagnosis back; export keeps the user's columns and rewrites image_id for its folder
    store.undo("ann")
    assert f.read_text().splitlines()[1] == "img/a.png;nevus;30;nevus;;"
    store.discard("img/b.png", "ann", expected_label="melanoma")
    out = tmp_path / "export" / "clean.csv"
    assert store.export_clean(out) == 2
    t = read_table(out, path_column="image_id", label_column="diagnosis")
    assert t.dialect.delimiter == ";" and list(t.frame.columns)[:3] == ["image_id", "diagnosis", "age"]
    assert t.paths().tolist() == ["../img/a.png", "../img/c.png"] and t.labels().tolist() == ["nevus", "nevus"]
    store.close()
    # reopened with the same columns, the log and the file agree
    again = ReviewStore(f, path_column="image_id", label_column="diagnosis")
    assert again.pending() == 0
    assert again.status_table().set_index("path")["review_status"].to_dict() == {
        "img/a.png": "", "img/b.png": "discarded", "img/c.png": "confirmed"}

"""The review store under kill -9, coalesced write-back, lock timeouts, file dialects and export.

A real subprocess is killed (SIGKILL) at every step of a decision through the store's
``SEI_REVIEW_FAULT`` hook, and at random moments; after reopening, the label file and the
decision log must tell the same story, undo must work and the next decision must log the
right old label.
"""

from __future__ import annotations

import csv
import io
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from sei_core import dataset
from sei_core.files import file_lock
from sei_core.labels import read_table
from sei_core.review import ExportError, LockTimeoutError, ReviewStore

ROOT = Path(__file__).resolve().parents[1]
PATHS = [f"p{i:02d}.png" for i in range(12)]
CLASSES = ["cat", "dog", "fox"]
TEXT = "path,label,extra\n" + "".join(f"{p},{CLASSES[i % 2]},e{i}\n" for i, p in enumerate(PATHS))


def _file(tmp_path: Path, text: str = TEXT) -> Path:
    f = tmp_path / "labels.csv"
    f.write_text(text, encoding="utf-8")
    return f


def _env(fault: str = "") -> dict:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("SEI_REVIEW_FAULT", None)
    if fault:
        env["SEI_REVIEW_FAULT"] = fault
    return env


def _run(code: str, fault: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=_env(fault),
                          capture_output=True, text=True, timeout=timeout)


def _rows(f: Path) -> dict[str, dict[str, str]]:
    t = read_table(f)
    return {p: dict(zip(t.frame.columns, r)) for p, r in zip(t.paths(), t.frame.itertuples(index=False))}


def assert_consistent(f: Path) -> ReviewStore:
    """Reopen (which recovers) and check file and log agree, with nothing half-written left."""
    store = ReviewStore(f, classes=CLASSES)
    assert store.pending() == 0
    assert not list(f.parent.glob(".*.tmp")), "a killed write's temporary file was left behind"
    last = {}
    for d in store.decisions():
        last[d.path] = d
    original = {p: CLASSES[i % 2] for i, p in enumerate(PATHS)}
    for p, r in _rows(f).items():
        assert r["extra"] == f"e{PATHS.index(p)}"
        d = last.get(p)
        if d is None:
            assert (r["label"], r.get("review_status", "")) == (original[p], ""), p
        else:
            assert (r["label"], r["review_status"]) == (d.new_label, d.new_status), (p, d)
            if d.action != "undo":
                assert r["reviewed_by"] == d.reviewer
        assert r.get("original_label", original[p]) == original[p]
    table = store.status_table().set_index("path")
    for p, r in _rows(f).items():
        assert table.loc[p, "label"] == r["label"]
    return store


def assert_usable(store: ReviewStore) -> None:
    """Undo works and the next decision logs the label the file holds as its old label."""
    if any(d.action != "undo" and not d.undone and d.reviewer == "kid" for d in store.decisions()):
        u = store.undo("kid", force=True)
        assert _rows(store.label_file)[u.path]["label"] == u.new_label
    p = PATHS[3]
    now = _rows(store.label_file)[p]
    d = store.relabel(p, "fox", "parent", expected_label=now["label"],
                      expected_status=now.get("review_status", ""), force=True)
    assert (d.old_label, d.old_status) == (now["label"], now.get("review_status", ""))
    assert _rows(store.label_file)[p]["label"] == "fox"


CHILD = """
    from sei_core.review import ReviewStore
    s = ReviewStore({f!r}, classes={classes!r})
    s.confirm("p00.png", "kid", expected_label="cat")
    s.relabel("p01.png", "cat", "kid", expected_label="dog")
    print("done")
"""


@pytest.mark.parametrize("point, logged", [
    ("decide:before-commit", False),
    ("decide:logged", True),
    ("flush:backup", True),
    ("flush:writing", True),
    ("flush:replaced", True),
    ("flush:marked", True),
])
def test_kill_at_every_step_of_a_decision(tmp_path: Path, point: str, logged: bool) -> None:
    f = _file(tmp_path)
    original = f.read_bytes()
    ReviewStore(f)  # the log exists before the child starts
    r = _run(CHILD.format(f=str(f), classes=CLASSES), fault=point)
    assert r.returncode == -signal.SIGKILL, r.stderr
    if point == "flush:writing":  # died with its temporary file half written beside the label file
        assert list(tmp_path.glob(".labels.csv.*.tmp"))
    store = assert_consistent(f)
    ds = store.decisions()
    # The child dies in its first decision: committed (and so applied) or not at all.
    assert [(d.path, d.action) for d in ds] == ([("p00.png", "confirm")] if logged else [])
    assert _rows(f)["p00.png"].get("review_status", "") == ("confirmed" if logged else "")
    assert store.backup_path.read_bytes() == original if store.backup_path.exists() else not logged
    assert_usable(store)
    assert_consistent(f)


RANDOM_CHILD = """
    import random, sys
    from sei_core.review import ReviewStore, ReviewError
    s = ReviewStore({f!r}, classes={classes!r}, coalesce_s={coalesce}, coalesce_min_bytes={min_bytes})
    rng = random.Random({seed})
    print("ready", flush=True)
    while True:
        p = rng.choice({paths!r})
        try:
            k = rng.random()
            if k < 0.4:
                s.relabel(p, rng.choice({classes!r}), "kid", expected_label="", force=True)
            elif k < 0.6:
                s.confirm(p, "kid", expected_label="", force=True)
            elif k < 0.75:
                s.discard(p, "kid", expected_label="", force=True)
            else:
                s.undo("kid", force=True)
        except ReviewError:
            pass
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_random_kills_leave_file_and_log_consistent(tmp_path: Path, seed: int) -> None:
    f = _file(tmp_path)
    ReviewStore(f)
    coalesced = seed % 2 == 1  # half the runs coalesce writes through the background writer
    code = RANDOM_CHILD.format(f=str(f), classes=CLASSES, paths=PATHS, seed=seed,
                               coalesce=0.02 if coalesced else 0.5, min_bytes=0 if coalesced else 1 << 20)
    rng = random.Random(seed)
    for _ in range(2):
        child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
            time.sleep(rng.uniform(0.05, 0.5))
        finally:
            child.kill()  # SIGKILL
            child.wait(timeout=60)
        assert child.returncode == -signal.SIGKILL
        assert_consistent(f)
    assert_usable(assert_consistent(f))


# --------------------------------------------------------------------------- coalescing


def _wait_until_written(store: ReviewStore, limit: float = 60) -> None:
    """Wait for the background writer (a bound for a hung test, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while store.pending() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.pending() == 0


def test_large_files_are_rewritten_coalesced_and_recovered_on_open(tmp_path: Path) -> None:
    f = _file(tmp_path)
    s = ReviewStore(f, classes=CLASSES, coalesce_s=3600, coalesce_min_bytes=0)
    s.relabel("p00.png", "dog", "ann", expected_label="cat")  # no rewrite yet: the writer starts at once
    _wait_until_written(s)
    assert _rows(f)["p00.png"]["label"] == "dog"
    before = f.read_bytes()
    s.relabel("p01.png", "fox", "ann", expected_label="dog")
    s.discard("p02.png", "ann", expected_label="cat")
    assert f.read_bytes() == before and s.pending() == 2  # coalesced: the file follows later
    t = s.status_table().set_index("path")  # what the store answers is already up to date
    assert (t.loc["p01.png", "label"], t.loc["p02.png", "review_status"]) == ("fox", "discarded")
    assert s.progress(PATHS) == (3, len(PATHS))
    u = s.undo("ann")  # the pending discard
    assert (u.path, u.old_status) == ("p02.png", "discarded")
    other = ReviewStore(f, classes=CLASSES)  # opening (another process, or after a crash) recovers
    assert other.pending() == 0
    r = _rows(f)
    assert (r["p01.png"]["label"], r["p02.png"]["review_status"]) == ("fox", "")
    assert s.flush() == 0


def test_background_writer_brings_the_file_up_to_date(tmp_path: Path) -> None:
    f = _file(tmp_path)
    s = ReviewStore(f, classes=CLASSES, coalesce_s=0.2, coalesce_min_bytes=0)
    for p, old in zip(PATHS[:5], ["cat", "dog"] * 3):
        s.relabel(p, "fox", "ann", expected_label=old)
    _wait_until_written(s)
    assert s.flush_error is None
    assert [_rows(f)[p]["label"] for p in PATHS[:5]] == ["fox"] * 5


def test_pending_decisions_are_written_when_the_process_exits(tmp_path: Path) -> None:
    f = _file(tmp_path)
    ReviewStore(f)
    r = _run(f"""
        from sei_core.review import ReviewStore
        s = ReviewStore({str(f)!r}, coalesce_s=3600, coalesce_min_bytes=0)
        s.relabel("p00.png", "dog", "kid", expected_label="cat")
        s.relabel("p01.png", "cat", "kid", expected_label="dog")  # held back for an hour at most
        print(s.pending())
    """)
    assert r.returncode == 0, r.stderr
    assert [_rows(f)[p]["label"] for p in PATHS[:2]] == ["dog", "cat"]
    assert ReviewStore(f).pending() == 0


def test_status_table_is_cached_until_something_changes(tmp_path: Path) -> None:
    f = _file(tmp_path)
    s = ReviewStore(f, classes=CLASSES)
    a = s.status_table()
    assert s.status_table() is a  # nothing changed: the same frame
    s.relabel("p00.png", "dog", "ann", expected_label="cat")
    b = s.status_table()
    assert b is not a and b.loc[0, "label"] == "dog" and a.loc[0, "label"] == "cat"
    f.write_text(TEXT.replace("p05.png,dog", "p05.png,fox"))  # edited outside the tool
    c = s.status_table()
    assert c.set_index("path").loc["p05.png", "label"] == "fox"


# --------------------------------------------------------------------------- locks


def test_a_lock_held_by_another_process_times_out_naming_it(tmp_path: Path) -> None:
    f = _file(tmp_path)
    s = ReviewStore(f, classes=CLASSES, lock_timeout=0.5)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(s.lock_path)!r}, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, f"{{os.getpid():>12}}\\n".encode(), 0)
        print("held", flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeoutError) as e:
            s.confirm("p00.png", "ann", expected_label="cat")
        assert f"process {holder.pid}" in str(e.value) and str(s.lock_path) in str(e.value)
    finally:
        holder.kill()
        holder.wait()
    s.confirm("p00.png", "ann", expected_label="cat")  # released with its holder
    assert _rows(f)["p00.png"]["review_status"] == "confirmed"


def test_a_lock_held_by_another_thread_of_this_process_is_not_blamed_on_a_stuck_process(tmp_path: Path) -> None:
    """A million-row file's writer holds the lock for seconds from a thread of the app's own
    process: the message must not tell the user to stop that process (their app)."""
    f = _file(tmp_path)
    s = ReviewStore(f, classes=CLASSES, lock_timeout=0.3)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with file_lock(s.lock_path):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        with pytest.raises(LockTimeoutError) as e:
            s.confirm("p00.png", "ann", expected_label="cat")
        msg = str(e.value)
        assert "this process" in msg and f"process {os.getpid()}" not in msg and "stop it" not in msg
    finally:
        release.set()
        t.join()
    s.confirm("p00.png", "ann", expected_label="cat")
    assert _rows(f)["p00.png"]["review_status"] == "confirmed"


# --------------------------------------------------------------------------- dialects


@pytest.mark.parametrize("raw", [
    b"path;label;note\na.png;cat;x;y\nb.png;dog;\"q;r\"\n".replace(b"x;y", b"\"x;y\""),
    b"path\tlabel\tnote\r\na.png\tcat\tn1\r\nb.png\tdog\tn2\r\n",
    b"path, label, note\n a.png , cat,n1\nb.png, dog ,n2\n",
    b'"path","label","note"\n"a.png","cat","n1"\n"b.png","dog","n2"\n',
    b"\xef\xbb\xbfpath,label,note\r\na.png,cat,n1\r\nb.png,dog,n2\r\n",
])
def test_every_dialect_training_reads_round_trips_through_a_decision(tmp_path: Path, raw: bytes) -> None:
    f = tmp_path / "labels.csv"
    f.write_bytes(raw)
    before = read_table(f)
    s = ReviewStore(f)
    d = s.relabel("b.png", "cat", "ann", expected_label="dog")
    assert (d.old_label, d.new_label) == ("dog", "cat")
    after = read_table(f)
    assert after.dialect == before.dialect  # delimiter, quoting, line ends, BOM
    assert after.header[:3] == before.header  # header cells spelled as they were
    assert list(after.frame.columns) == ["path", "label", "note", "original_label", "review_status",
                                         "reviewed_by"]
    assert after.paths().tolist() == ["a.png", "b.png"]
    assert after.frame["note"].tolist() == before.frame["note"].tolist()
    assert after.labels().tolist() == ["cat", "cat"]
    assert after.frame["original_label"].tolist() == ["cat", "dog"]
    # the untouched row keeps its cells exactly, surrounding spaces included
    assert after.frame.iloc[0, :3].tolist() == before.frame.iloc[0, :3].tolist()
    nl = b"\r\n" if b"\r\n" in raw else b"\n"
    body = f.read_bytes()
    assert body.count(nl) == 3 and (nl == b"\r\n" or b"\r" not in body)
    assert body.startswith(b"\xef\xbb\xbf") == raw.startswith(b"\xef\xbb\xbf")
    assert s.undo("ann").new_label == "dog"
    assert read_table(f).labels().tolist() == ["cat", "dog"]
    # and the reviewed file still trains: the data set reader takes it as it is
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    assert dataset.load(f).ids == ["a.png", "b.png"]


# --------------------------------------------------------------------------- export


def test_export_to_another_folder_rewrites_image_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    for i, p in enumerate(PATHS):
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(data / "images" / p)
    text = "path,label\n" + "".join(f"images/{p},{CLASSES[i % 2]}\n" for i, p in enumerate(PATHS))
    absolute = data / "images" / PATHS[-1]
    text = text.replace(f"images/{PATHS[-1]}", str(absolute))
    f = data / "labels.csv"
    f.write_text(text)
    s = ReviewStore(f, classes=CLASSES)
    s.discard(f"images/{PATHS[0]}", "ann", expected_label="cat")
    out = tmp_path / "elsewhere" / "clean.csv"
    assert s.export_clean(out) == len(PATHS) - 1
    exported = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert exported["path"].iloc[0] == f"../data/images/{PATHS[1]}"
    assert exported["path"].iloc[-1] == str(absolute)  # absolute paths stay absolute
    loaded = dataset.load(out)  # the export is usable where it is
    assert len(loaded) == len(PATHS) - 1
    assert [loaded.file_of(i).resolve() for i in range(len(loaded))] == \
        [(data / "images" / p).resolve() for p in PATHS[1:]]
    # exporting beside the label file keeps paths as they are
    s.export_clean(data / "clean.csv")
    assert pd.read_csv(data / "clean.csv", dtype=str)["path"].iloc[0] == f"images/{PATHS[1]}"


# --------------------------------------------------------------------------- splicing


@pytest.mark.parametrize("raw", [
    b"path;label;note\na.png;cat;\"x;y\"\nb.png;dog;z\nc.png;cat;w\n",
    b"\xef\xbb\xbfpath, label,note\r\n a.png , cat,n1\r\n\r\nb.png,dog,\"q,r\"\r\nc.png,cat,n3\r\n",
    b'"path","label","note"\n"a.png","cat","n1"\n"b.png","dog","n2"\n"c.png","cat","n3"\n',
    b'path,label,note\na.png,cat,"two\nlines"\nb.png,dog,n2\nc.png,cat,n3\n',  # rows are not lines
])
def test_rewrites_that_splice_changed_rows_equal_a_full_render(tmp_path: Path, raw: bytes) -> None:
    from sei_core.labels import render_table

    f = tmp_path / "labels.csv"
    f.write_bytes(raw)
    s = ReviewStore(f, classes=["cat", "dog"])
    s.relabel("b.png", "cat", "ann", expected_label="dog")  # first write: adds the review columns
    s.confirm("c.png", "ann", expected_label="cat")
    s.discard("a.png", "bob", expected_label="cat")
    s.undo("ann", force=True)
    body = f.read_bytes()
    t = read_table(f)
    assert render_table(t) == body  # the spliced file is exactly what a full render writes
    assert t.labels().tolist() == ["cat", "cat", "cat"]
    assert t.frame["review_status"].tolist() == ["discarded", "relabeled", ""]
    assert t.frame["note"].tolist() == read_table(tmp_path / "labels.csv.sei-backup").frame["note"].tolist()


def test_a_file_that_has_review_columns_keeps_untouched_lines_byte_for_byte(tmp_path: Path) -> None:
    raw = (b"path,label,original_label,review_status,reviewed_by,note\n"
           b'"a.png",cat,,,,"unneeded quotes"\n'
           b"b.png,dog,,,,plain\n"
           b"c.png,cat,cat,confirmed,old,\"x,y\"\n")
    f = tmp_path / "labels.csv"
    f.write_bytes(raw)
    s = ReviewStore(f)
    s.relabel("b.png", "cat", "ann", expected_label="dog")
    lines = f.read_bytes().split(b"\n")
    assert lines[1] == b'"a.png",cat,,,,"unneeded quotes"' and lines[3] == b'c.png,cat,cat,confirmed,old,"x,y"'
    assert lines[2] == b"b.png,cat,dog,relabeled,ann,plain"


def test_a_decision_waits_for_no_other_process_writing_the_file(tmp_path: Path) -> None:
    """A rewrite held up by another process's write lock: the decision still returns (it is
    in the log), and the file follows once the lock is free."""
    f = _file(tmp_path)
    s = ReviewStore(f, classes=CLASSES, lock_timeout=0.3, coalesce_s=0.1)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import fcntl, os, sys, time
        fd = os.open({str(s.write_lock_path)!r}, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX)
        print("held", flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        d = s.relabel("p00.png", "fox", "ann", expected_label="cat")
        assert d.new_label == "fox" and s.pending() == 1
        assert _rows(f)["p00.png"]["label"] == "cat"
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=60)
    _wait_until_written(s)
    assert _rows(f)["p00.png"]["label"] == "fox"

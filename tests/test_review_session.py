"""sei_core.review.ReviewSession: decide, undo, conflicts and navigation without the app."""

import numpy as np

from sei_core.review import ReviewQueue, ReviewSession, ReviewStore

IDS = [f"{i:02d}.png" for i in range(12)]


def _session(tmp_path, share=0.0):
    f = tmp_path / "labels.csv"
    if not f.exists():
        f.write_text("path,label\n" + "".join(f"{p},{'a' if i % 2 else 'b'}\n" for i, p in enumerate(IDS)))
    store = ReviewStore(f, classes=["a", "b"])
    score = np.linspace(-1, 1, len(IDS))
    q = ReviewQueue(IDS, np.array([0 if i % 2 else 1 for i in range(len(IDS))]), score, score < 0,
                    audit_share=share, seed=0)
    q.follow(store)
    return ReviewSession(store, q), store, q


def test_decisions_are_saved_and_the_queue_row_follows(tmp_path):
    s, store, q = _session(tmp_path)
    first = s.current(None, "to review")
    assert first == "00.png"
    out = s.decide("", "confirm", first, "b", "")
    assert not out.saved and "Enter your name" in out.error
    out = s.decide("Dr. A", "relabel", first, "b", "", sei=float("nan"), new_label="a")
    assert out.saved and out.decision.new_label == "a" and q.row(first)[:2] == ("a", "relabeled")
    assert store.status_table().set_index("path").loc[first, "label"] == "a"
    out = s.decide("Dr. A", "relabel", "01.png", "a", "", new_label="zebra")
    assert not out.saved and out.conflict is None and "zebra" in out.error  # the store's reason, in words
    nxt = s.advance(first, "to review")
    assert nxt == "01.png"
    assert s.decide("Dr. A", "confirm", nxt, "a", "").saved
    assert s.back(s.advance(nxt, "to review"), "Dr. A") == nxt  # Previous: the latest decided
    assert s.back(nxt, "Dr. A") == first
    assert s.current("not-an-image.png", "reviewed") == first


def test_a_stale_screen_is_a_conflict_and_force_overwrites(tmp_path):
    mine, _, _ = _session(tmp_path)
    theirs, _, _ = _session(tmp_path)
    assert theirs.decide("Dr. B", "discard", "02.png", "b", "").saved
    out = mine.decide("Dr. A", "confirm", "02.png", "b", "")  # as shown before Dr. B's decision
    c = out.conflict
    assert not out.saved and c is not None and (c.label, c.status, c.action) == ("b", "discarded", "confirm")
    assert "Dr. B" in c.theirs and "force=True" not in c.message
    assert mine.queue.row("02.png")[1] == "discarded"  # the row shows what it is now
    out = mine.decide("Dr. A", c.action, c.path, c.label, c.status, c.sei, c.new_label, force=True)
    assert out.saved and mine.queue.row("02.png")[1] == "confirmed"


def test_undo_reverts_the_latest_own_decision_and_refuses_over_someone_elses(tmp_path):
    mine, _, q = _session(tmp_path)
    theirs, _, _ = _session(tmp_path)
    assert not mine.undo("").saved
    assert mine.decide("Dr. A", "relabel", "04.png", "b", "", new_label="a").saved
    out = mine.undo("Dr. A")
    assert out.saved and q.row("04.png")[:2] == ("b", "")
    assert mine.decide("Dr. A", "confirm", "04.png", "b", "").saved
    own = mine.latest_own("Dr. A")
    assert theirs.decide("Dr. B", "discard", "04.png", "b", "confirmed").saved
    out = mine.undo("Dr. A")
    assert not out.saved and out.conflict.decision_id == own and "force=True" not in out.conflict.message
    out = mine.undo("Dr. A", out.conflict.decision_id, force=True)
    assert out.saved


def test_navigate_and_place_say_where_the_reviewer_is(tmp_path):
    s, store, q = _session(tmp_path)
    first = s.navigate(None, "to review")
    assert first == "00.png" and s.place(first, "to review") == (1, len(s.shown("to review")))
    assert s.decide("Dr. A", "confirm", first, "b", "").saved
    nxt = s.navigate(first, "to review", advance_from=first)
    assert nxt == "01.png"
    assert s.place(first, "to review") is None  # decided: no longer among those to review
    assert s.navigate(nxt, "to review", reviewer="Dr. A", back_from=nxt) == first  # Previous


def test_the_words_shown_name_each_class_and_keep_its_code(tmp_path):
    from types import SimpleNamespace

    from sei_core.review.session import decision_lines, image_facts, queue_table

    s, store, q = _session(tmp_path)
    n = len(IDS)
    scores = SimpleNamespace(classes=["a", "b"], labels=q._all_labels, suggested=np.zeros(n, int),
                             suggested_probability=np.full(n, 0.9), score=np.linspace(-1, 1, n),
                             threshold=np.zeros(n), sei=np.linspace(-1, 1, n), sei_threshold=np.zeros(n),
                             sei_flagged=np.ones(n, bool), method="sei")
    name = {"a": "apple", "b": "banana"}
    name_of = lambda c: f"{name[c]} ({c})"  # noqa: E731
    assert s.decide("Dr. A", "relabel", "00.png", "b", "", new_label="a").saved
    rows = dict(image_facts(scores, 0, q.row("00.png"), name_of))
    assert rows["Label now"] == "apple (a)" and rows["Original label"] == "banana (b)"
    assert rows["Model suggests"] == "apple (a) · 90%" and rows["Status"] == "relabeled by Dr. A"
    table = queue_table(q, scores, np.arange(3), name_of)
    assert list(table["given label"]) == ["banana (b)", "apple (a)", "banana (b)"]
    assert table["label now"][0] == "apple (a)" and table["status"][0] == "relabeled"
    assert decision_lines(store.decisions("00.png"), name_of)[0].endswith("relabel · banana (b) → apple (a)")

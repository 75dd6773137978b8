"""The count from the expert's decisions (sei_core.review_count), audit sampling in the review
queue, the decision log's sampling columns (and the migration of older logs), Previous in the
order decided, and `sei review-sim` / `sei count` on a tiny run."""

import json
import sqlite3

import numpy as np
import pandas as pd
import pytest

from sei_core import cli
from sei_core.count import CountEstimate
from sei_core.review import ReviewQueue, ReviewStore, Sampling
from sei_core.review_count import (audit_weights, count_from_decisions, recalibration, selfclean_run_length, stop_advice,
                                  wrong_log_odds)


def _review(truth_wrong, n_decisions, share, rng):
    """A truthful review of a synthetic ranking without the store: in order with probability
    1 - share, else a uniform pick from the unreviewed images (what ReviewQueue does)."""
    n = truth_wrong.size
    decided = np.zeros(n, dtype=bool)
    ranks, audits = [], []
    cursor = 0
    for _ in range(n_decisions):
        if rng.random() < share:
            r = int(rng.choice(np.flatnonzero(~decided)))
            audits.append(True)
        else:
            while decided[cursor]:
                cursor += 1
            r = cursor
            audits.append(False)
        decided[r] = True
        ranks.append(r)
    ranks = np.array(ranks)
    return ranks, truth_wrong[ranks], np.array(audits)


def test_the_interval_holds_the_true_count_at_about_its_level():
    rng = np.random.default_rng(0)
    n = 600
    p = np.clip(0.6 * np.exp(-np.arange(n) / 80) + 0.04, 0, 1)  # a ranking: errors first, a tail of 4 %
    held, n_rep = 0, 120
    for rep in range(n_rep):
        wrong = rng.random(n) < p
        rank, w, audit = _review(wrong, 150, 0.3, rng)
        c = count_from_decisions(np.zeros(n, dtype=int), rank, w, audit, seed=rep)
        assert c.source == "decisions" and c.found == int(w.sum())
        held += c.low <= wrong.sum() <= c.high
    assert 0.8 <= held / n_rep <= 0.99


def _weighted_review(truth_wrong, n_decisions, share, boost, scale, rng):
    """As :func:`_review`, with the picks drawn by :func:`audit_weights` around the next rank in
    order, as ReviewQueue draws them; returns the picks' weights too."""
    n = truth_wrong.size
    decided = np.zeros(n, dtype=bool)
    ranks, audits, weights = [], [], []
    cursor = 0
    for _ in range(n_decisions):
        while decided[cursor]:
            cursor += 1
        if rng.random() < share:
            free = np.flatnonzero(~decided)
            w = audit_weights(free, cursor, scale, boost)
            j = int(rng.choice(free.size, p=w / w.sum()))
            r, wt = int(free[j]), float(w[j] / w.mean())
            audits.append(True)
        else:
            r, wt = cursor, 1.0
            audits.append(False)
        decided[r] = True
        ranks.append(r)
        weights.append(wt)
    ranks = np.array(ranks)
    return ranks, truth_wrong[ranks], np.array(audits), np.array(weights)


def test_weighted_picks_are_counted_without_bias_and_the_interval_keeps_its_level():
    rng = np.random.default_rng(5)
    n = 600
    p = np.clip(0.6 * np.exp(-np.arange(n) / 80) + 0.04, 0, 1)
    held, err, gap, n_rep = 0, [], [], 120
    for rep in range(n_rep):
        wrong = rng.random(n) < p
        rank, w, audit, weight = _weighted_review(wrong, 150, 0.3, 4.0, 60, rng)
        assert weight[audit].max() > 2 * weight[audit].min()  # the draw is far from uniform
        c = count_from_decisions(np.zeros(n, dtype=int), rank, w, audit, weight, seed=rep)
        held += c.low <= wrong.sum() <= c.high
        err.append(c.count - wrong.sum())
        # a draw that prefers the next ranks strongly, counted in one band (where post-stratification
        # cannot hide the preference): with and without the weights
        rank, w, audit, weight = _weighted_review(wrong, 150, 0.3, 20.0, 60, rng)
        one = count_from_decisions(np.zeros(n, dtype=int), rank, w, audit, weight, seed=rep, max_bands=1)
        naive = count_from_decisions(np.zeros(n, dtype=int), rank, w, audit, seed=rep, max_bands=1)
        gap.append((naive.count - wrong.sum(), one.count - wrong.sum()))
    assert 0.8 <= held / n_rep <= 0.99
    assert abs(np.mean(err)) < 0.12 * p.sum()
    naive_bias, weighted_bias = np.mean(gap, axis=0)
    assert naive_bias > weighted_bias + 6 and abs(weighted_bias) < 0.12 * p.sum()  # the weights undo the preference


def test_the_queue_draws_picks_in_proportion_to_their_weights(tmp_path):
    store, _ = _run_store(tmp_path)
    q = _queue(1.0, seed=7)
    q.follow(store)
    a = q.audit(store)
    a.cursor = 4  # five images shown in order: the next rank in order is 5
    for i in a.order[:5]:
        a.decided[i] = True
    draws = [a.draw(None, q._rng, boost=q.audit_boost) for _ in range(4000)]
    ranks = np.array([int(a.rank[a.index_of(sid)]) for sid, _ in draws])
    free = np.arange(5, len(IDS))
    want = audit_weights(free, 5, a.scale, q.audit_boost)
    got = np.bincount(ranks, minlength=len(IDS))[5:] / len(draws)
    assert ranks.min() >= 5
    assert np.abs(got - want / want.sum()).max() < 0.02
    rel = {int(a.rank[a.index_of(sid)]): w for sid, w in draws}
    assert rel[5] == pytest.approx(want[0] / want.mean()) and rel[39] == pytest.approx(want[-1] / want.mean())


def test_every_image_reviewed_is_exact_and_too_few_picks_fall_back_to_the_model():
    given = np.array([0, 1, 0, 1])
    c = count_from_decisions(given, np.arange(4), np.array([1, 0, 0, 1], bool), np.zeros(4, bool))
    assert (c.count, c.low, c.high, c.unreviewed) == (2, 2, 2, 0)
    assert list(c.per_class_count) == [1, 1]
    model = CountEstimate("bbe", 4, 3.0, 2.0, 4.0, np.array([1.5, 1.5]))
    c = count_from_decisions(given, np.array([0]), np.array([True]), np.array([False]), model=model)
    assert c.source == "model" and c.count == 3.0 and "model's own estimate" in c.sentence()
    assert "1 wrong labels found in 1 decisions" in c.sentence()


def test_per_class_counts_and_the_stopping_rule():
    rng = np.random.default_rng(1)
    n = 400
    given = np.arange(n) % 2
    wrong = (given == 1) & (rng.random(n) < 0.2)  # only class 1 has wrong labels
    rank, w, audit = _review(wrong, 200, 0.5, rng)
    c = count_from_decisions(given, rank, w, audit, n_classes=2)
    assert c.per_class_count[1] > c.per_class_count[0]
    assert c.per_class_found[0] == 0 and c.per_class_found[1] == int(w.sum())
    assert selfclean_run_length(0.05, 0.05) == 58
    s = stop_advice(np.arange(60), np.zeros(60, bool), np.zeros(60, bool))
    assert s.streak == 60 and s.stop and "58 correct labels in a row" in s.sentence()
    s = stop_advice(np.arange(3), np.array([0, 1, 0], bool), np.zeros(3, bool))
    assert s.streak == 1 and not s.stop


IDS = [f"{i:03d}.png" for i in range(40)]


def _run_store(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("path,label\n" + "".join(f"{p},{'x' if i % 2 else 'y'}\n" for i, p in enumerate(IDS)))
    return ReviewStore(f, classes=["x", "y"]), f


def _queue(share, seed=0):
    score = np.linspace(-2, 2, len(IDS))
    flagged = score < -1  # 10 flagged
    return ReviewQueue(IDS, np.arange(len(IDS)) % 2, score, flagged, audit_share=share, seed=seed)


def test_audit_picks_come_from_every_unreviewed_image_and_are_logged(tmp_path):
    store, _ = _run_store(tmp_path)
    q = _queue(0.5, seed=3)
    q.follow(store)
    cur = q.next_image(None, store)
    assert cur == IDS[0]  # no decision in order yet: no audit chance
    seen_unflagged_pick = False
    for _ in range(30):
        smp = q.sampling(cur, store)
        label = q.row(cur)[0]
        d = store.relabel(cur, "x" if label == "y" else "y", "Dr. A", label, sampling=smp) if int(cur[:3]) % 3 == 0 \
            else store.confirm(cur, "Dr. A", label, sampling=smp)
        q.apply(d.path, d.new_label, d.new_status, "Dr. A")
        seen_unflagged_pick |= smp.audit and smp.rank >= 10
        cur = q.next_image(cur, store)
    assert seen_unflagged_pick  # picks reach past the flagged images
    df = store.estimation_decisions()
    assert len(df) == 30 and df["rank"].notna().all() and df["audit"].any() and (~df["audit"]).any()
    assert (df.loc[df["audit"], "population"] > 0).all()
    picks = df[df["audit"]]
    assert (picks["share"] > 0).all() and (picks["share"] <= 0.5).all()
    # order ranks increase through the decisions in order (the static order, past the flagged ones too)
    inorder = df.loc[~df["audit"], "rank"].to_numpy()
    assert (np.diff(inorder) > 0).all() and inorder.max() >= 10
    # the count is the log's: a new queue and store (a restart) give the same
    c1, _, _ = q.count(store, seed=0, min_audits=3)
    assert c1.source == "decisions"
    store.close()
    store2 = ReviewStore(tmp_path / "labels.csv", classes=["x", "y"])
    q2 = _queue(0.5)
    q2.follow(store2)
    c2, _, _ = q2.count(store2, seed=0, min_audits=3)
    assert json.dumps(c1.to_json()) == json.dumps(c2.to_json())
    assert c1.found == int(store2.estimation_decisions()["status"].eq("relabeled").sum())


def test_undo_takes_a_decision_out_of_the_count_and_a_skipped_pick_loses_its_mark(tmp_path):
    store, _ = _run_store(tmp_path)
    q = _queue(0.0)
    q.follow(store)
    cur = q.next_image(None, store)
    d = store.relabel(cur, "x" if q.row(cur)[0] == "y" else "y", "Dr. A", q.row(cur)[0], sampling=q.sampling(cur, store))
    q.apply(d.path, d.new_label, d.new_status, "Dr. A")
    assert q.count(store)[0].found == 1
    u = store.undo("Dr. A")
    q.apply(u.path, u.new_label, u.new_status, "")
    assert q.count(store)[0].found == 0 and len(store.estimation_decisions()) == 0
    # a pick, skipped, is no random pick when it comes back
    a = q.audit(store)
    a.picks["030.png"] = (39, 0.3, 1.0)
    assert q.sampling("030.png", store).audit
    q.next_image("030.png", store)  # skipped
    assert not q.sampling("030.png", store).audit


def test_previous_walks_back_through_the_images_decided_in_the_order_decided(tmp_path):
    store, _ = _run_store(tmp_path)
    q = _queue(0.0)
    for p in ("005.png", "001.png", "009.png"):
        store.confirm(p, "Dr. A", q.row(p)[0] if q.row(p) else ("x" if int(p[:3]) % 2 else "y"))
    store.confirm("002.png", "Dr. B", "y")
    order = store.decided_paths("Dr. A")
    assert order == ["005.png", "001.png", "009.png"]
    assert q.previous_decided("003.png", order) == "009.png"  # from the next image: the latest
    assert q.previous_decided("009.png", order) == "001.png"
    assert q.previous_decided("001.png", order) == "005.png"
    assert q.previous_decided("005.png", order) is None
    store.undo("Dr. A")  # 009 undone: no longer among the decided
    assert store.decided_paths("Dr. A") == ["005.png", "001.png"]


def test_an_older_log_is_migrated_and_its_decisions_count_as_in_order(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("path,label\n" + "".join(f"{p},y\n" for p in IDS))
    db = tmp_path / ".sei_review" / "labels.decisions.sqlite"
    db.parent.mkdir()
    con = sqlite3.connect(db)
    con.executescript("""CREATE TABLE decisions (id INTEGER PRIMARY KEY, time TEXT NOT NULL, reviewer TEXT NOT NULL,
        path TEXT NOT NULL, action TEXT NOT NULL, old_label TEXT NOT NULL, new_label TEXT NOT NULL,
        old_status TEXT NOT NULL, new_status TEXT NOT NULL, sei REAL, undone INTEGER NOT NULL DEFAULT 0,
        undoes INTEGER NULL, old_reviewed_by TEXT NOT NULL DEFAULT '');
        INSERT INTO decisions (time, reviewer, path, action, old_label, new_label, old_status, new_status)
        VALUES ('2024-01-01T00:00:00+00:00', 'Dr. Old', '000.png', 'relabel', 'y', 'x', '', 'relabeled');""")
    con.commit()
    con.close()
    f.write_text("path,label,original_label,review_status,reviewed_by\n000.png,x,y,relabeled,Dr. Old\n"
                 + "".join(f"{p},y,,,\n" for p in IDS[1:]))
    store = ReviewStore(f, classes=["x", "y"])
    cols = {r[1] for r in sqlite3.connect(db).execute("PRAGMA table_info(decisions)")}
    assert {"q_rank", "q_population", "q_audit", "q_share", "q_weight"} <= cols
    df = store.estimation_decisions()
    assert list(df["path"]) == ["000.png"] and not df["audit"].any() and df["rank"].isna().all()
    q = _queue(0.3)
    c, _, _ = q.count(store)
    assert c.found == 1 and c.audits == 0 and c.source == "model"
    d = store.confirm("001.png", "Dr. New", "y", sampling=Sampling(rank=1, population=39, audit=True, share=0.3))
    df = store.estimation_decisions()
    assert d.id == 2 and df["audit"].tolist() == [False, True] and df["weight"].tolist() == [1.0, 1.0]
    # a weighted pick's weight is logged, and read back as its audit weight (0: a decision in order)
    store.confirm("002.png", "Dr. New", "y", sampling=Sampling(rank=2, population=38, audit=True, share=0.3,
                                                                weight=2.5))
    store.confirm("003.png", "Dr. New", "y", sampling=Sampling(rank=3, population=37, audit=False, share=0.3,
                                                                weight=9.0))
    assert store.estimation_decisions()["weight"].tolist()[-2:] == [2.5, 1.0]
    assert [r[4] for r in store.decisions_since(2)] == [2.5, 0.0]
    assert store.decision_in_effect("002.png")[4] == 2.5


def test_review_sim_and_count_on_a_tiny_run(trained_run, tmp_path, capsys):
    run = trained_run
    from sei_core.runs import Run

    data = Run(run).config()["data"]
    lab = pd.read_csv(data, dtype=str)
    truth = lab.rename(columns={"label": "true_label"})
    classes = sorted(lab["label"].unique())
    flip = np.arange(len(lab)) % 5 == 0  # the truth differs from the file on every fifth image
    truth.loc[flip, "true_label"] = [classes[(classes.index(v) + 1) % len(classes)] for v in lab.loc[flip, "label"]]
    truth[["path", "true_label"]].to_csv(tmp_path / "truth.csv", index=False)
    before = open(data, "rb").read()
    out = tmp_path / "sim.csv"
    assert cli.main(["review-sim", str(run), "--truth", str(tmp_path / "truth.csv"), "--decisions", "20",
                     "--repeats", "2", "--audit-share", "0.5", "--out", str(out)]) == 0
    assert open(data, "rb").read() == before  # the user's label file is untouched
    df = pd.read_csv(out)
    for col in ("replay", "decisions", "found", "estimate", "low", "high", "true_count", "static_found"):
        assert col in df.columns
    assert sorted(df["replay"].unique()) == [0, 1] and df["decisions"].max() == 20 and len(df) == 20
    assert (df["true_count"] == int(flip.sum())).all() and (df["found"] <= df["true_count"]).all()
    assert (df["low"] <= df["high"]).all()
    assert "rows (2 replays)" in capsys.readouterr().out
    # the checkpoint hook sees each recorded row with the decisions then in effect (other estimators
    # are compared on exactly these, benchmarks/count_estimators.py)
    from sei_core.review_sim import simulate

    seen = []
    rows = simulate(run, tmp_path / "truth.csv", 10, repeats=1, audit_share=0.5, workdir=tmp_path,
                    on_checkpoint=lambda row, q, store: seen.append(
                        (row["decisions"], len(q.audit(store).log_view(store)[1]))))
    assert [d for d, _ in seen] == rows["decisions"].tolist() == list(range(1, 11))
    assert all(n == d for d, n in seen)  # one decision in effect per decision made (no undo)
    # sei count on a copy of the run (it opens the run's review store)
    import shutil

    shutil.copytree(run, tmp_path / "run")
    shutil.copy(data, tmp_path / "labels.csv")
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    cfg["data"] = str(tmp_path / "labels.csv")
    (tmp_path / "run" / "config.json").write_text(json.dumps(cfg))
    assert cli.main(["count", str(tmp_path / "run"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["count"]["decisions"] == 0 and got["stop"]["run_length"] == 58
    assert "0 wrong labels found in 0 decisions" in got["sentence"]


class _CountingStore(ReviewStore):
    """The real store, counting how often the whole log is read for the count."""

    full_reads = 0

    def estimation_decisions(self):
        self.full_reads += 1
        return super().estimation_decisions()


def _fresh_view(store):
    """(id, rank, wrong, audit) from the whole log by a new queue, sorted by id."""
    view = _queue(0.0).audit(store).log_view(store)
    o = np.argsort(view[0])
    return tuple(v[o] for v in view)


def test_an_undo_updates_the_count_without_reading_the_whole_log_again(tmp_path):
    """Issue 18 item 7: the key after an undo costs what any other decision costs. The count's
    view of the log follows an undo by the undone image's own decisions (the path index), not
    by re-reading every decision; it stays equal to a view built from the whole log, also with
    several undos (of decisions old and new, on one image twice) between two counts."""
    f = tmp_path / "labels.csv"
    f.write_text("path,label\n" + "".join(f"{p},{'x' if i % 2 else 'y'}\n" for i, p in enumerate(IDS)))
    store = _CountingStore(f, classes=["x", "y"])
    q = _queue(0.0)
    q.follow(store)

    def decide(path, wrong):
        label, status = q.row(path)[:2]
        how = dict(expected_status=status, sampling=q.sampling(path, store))
        d = (store.relabel(path, "x" if label == "y" else "y", "Dr. A", label, **how)
             if wrong else store.confirm(path, "Dr. A", label, **how))
        q.apply(d.path, d.new_label, d.new_status, "Dr. A")

    def undo():
        u = store.undo("Dr. A")
        q.apply(u.path, u.new_label, u.new_status, "")

    for i in range(6):
        decide(IDS[i], i % 2 == 0)
    decide(IDS[1], True)  # a second decision on one image
    q.count(store)
    assert store.full_reads == 1  # the first count reads the log once
    steps = [[undo], [undo, undo], [lambda: decide(IDS[2], False), undo, undo], [lambda: decide(IDS[7], True)],
             [undo, lambda: decide(IDS[1], False)]]
    for step in steps:  # ← then U, and the key after it, as the page does them
        for act in step:
            act()
        reads = store.full_reads
        c, _, pts = q.count(store)
        assert store.full_reads == reads  # undos and the decisions after them: no whole-log read
        view = q.audit(store).log_view(store)
        o = np.argsort(view[0])
        for got, want in zip((v[o] for v in view), _fresh_view(store)):
            np.testing.assert_array_equal(got, want)
        assert c.found == int(store.estimation_decisions()["status"].isin(["relabeled", "discarded"]).sum())
    # Previous still walks back through the images decided, in the order decided (undone ones left out)
    assert q.previous_decided(None, store.decided_paths("Dr. A")) == IDS[1]


def test_decisions_needed_is_the_first_checkpoint_that_stays_within_the_tolerance():
    from sei_core.bench.count_sim import decisions_needed

    rows = []
    for rep in range(5):
        for d, est in ((10, 150), (20, 104 if rep else 130), (30, 80), (40, 110), (50, 95)):
            rows.append(dict(replay=rep, decisions=d, estimate=est, true_count=100))
    df = pd.DataFrame(rows)
    assert decisions_needed(df) == 40  # 20 holds for 4 of 5 replays, but 30 falls out again
    assert decisions_needed(df, tolerance=0.25) == 20
    assert decisions_needed(df[df["decisions"] < 40]) is None


def test_recalibration_recovers_a_logistic_curve_and_needs_both_outcomes():
    rng = np.random.default_rng(0)
    x = rng.normal(-2.0, 1.5, 4000)
    y = rng.random(x.size) < 1 / (1 + np.exp(-(0.5 + 1.2 * x)))
    a, b = recalibration(x, y)
    assert abs(a - 0.5) < 0.25 and abs(b - 1.2) < 0.2
    assert recalibration(x[:50], np.zeros(50, bool)) is None  # no wrong label yet: nothing to fit
    odds = wrong_log_odds(np.array([0.9, np.nan, 0.2]))
    assert odds[0] < 0 < odds[2] and np.isfinite(odds).all()  # NaN (unscored) gets the median
    assert wrong_log_odds(np.array([-3.0, 2.5])) is None  # not probabilities: no recalibration


def _replays(x_by_rank, wrong_by_rank, prior_picks, in_order=150, audits=25, reps=150):
    """Counts from ``in_order`` decisions at the top of the order and ``audits`` uniform picks among
    the rest, over ``reps`` draws of the picks."""
    n = wrong_by_rank.size
    rng = np.random.default_rng(1)
    given = np.zeros(n, dtype=np.int64)
    out = []
    for r in range(reps):
        picks = rng.choice(np.arange(in_order + 1, n), audits, replace=False)
        rank = np.concatenate([np.arange(in_order), picks])
        audit = np.arange(rank.size) >= in_order
        c = count_from_decisions(given, rank, wrong_by_rank[rank], audit, np.ones(rank.size), seed=r,
                                 x_by_rank=x_by_rank, prior_picks=prior_picks)
        assert c.source == "decisions" and c.low <= c.count <= c.high
        out.append(c)
    return out


def test_the_recalibrated_prior_narrows_the_count_and_the_picks_outweigh_a_wrong_model():
    """Issue 22: the model's share, recalibrated on every decision, lends each band κ picks. With a
    model whose log-odds are right the counts scatter less around the truth; with a model that
    says nothing (its log-odds shuffled, so the fit is the share wrong of the decisions in order,
    far above the rest's), the prior biases the count, less and less as the picks accumulate."""
    rng = np.random.default_rng(0)
    n = 2000
    x = np.sort(rng.normal(-2.5, 1.5, n))[::-1]  # the order: most suspicious first
    wrong = rng.random(n) < 1 / (1 + np.exp(-x))
    truth = int(wrong.sum())
    alone = np.array([c.count for c in _replays(x, wrong, 0.0)])
    lent = np.array([c.count for c in _replays(x, wrong, 10.0)])
    assert lent.std() < 0.85 * alone.std() and abs(lent.mean() - truth) < 0.05 * truth
    assert np.sqrt(((lent - truth) ** 2).mean()) < np.sqrt(((alone - truth) ** 2).mean())
    assert _replays(x, wrong, 10.0, reps=1)[0].prior_picks == 10.0
    assert "recalibrated" in _replays(x, wrong, 10.0, reps=1)[0].sentence()
    shuffled = rng.permutation(x)
    few = np.array([c.count for c in _replays(shuffled, wrong, 10.0, audits=100, reps=30)])
    many = np.array([c.count for c in _replays(shuffled, wrong, 10.0, audits=1200, reps=30)])
    assert abs(many.mean() - truth) < 0.5 * abs(few.mean() - truth) and abs(many.mean() - truth) < 0.05 * truth


def test_bands_are_thinner_where_the_recalibrated_model_anchors_them():
    """One band per 10 picks where each band's share is shrunk towards the model's recalibrated
    one (measured on the grid: a smaller error, coverage kept), per 20 on Jeffreys' prior alone
    (whose half pick would overstate a thin band of a few per cent)."""
    rng = np.random.default_rng(0)
    n = 2000
    x = np.sort(rng.normal(-2.5, 1.5, n))[::-1]
    wrong = rng.random(n) < 1 / (1 + np.exp(-x))
    truth = int(wrong.sum())
    lent, alone = _replays(x, wrong, 10.0, audits=40, reps=60), _replays(x, wrong, 0.0, audits=40, reps=60)
    assert {len(c.bands) for c in lent} == {4} and {len(c.bands) for c in alone} == {2}
    rng = np.random.default_rng(1)
    thick = []
    for r in range(60):  # the same picks as _replays draws, counted in bands of 20 picks
        picks = rng.choice(np.arange(151, n), 40, replace=False)
        rank = np.concatenate([np.arange(150), picks])
        thick.append(count_from_decisions(np.zeros(n, dtype=np.int64), rank, wrong[rank], np.arange(rank.size) >= 150,
                                          seed=r, x_by_rank=x, prior_picks=10.0, audits_per_band=20).count)
    rmse = [np.sqrt(np.mean((np.array(v) - truth) ** 2)) for v in ([c.count for c in lent], thick)]
    assert rmse[0] < rmse[1]


def test_a_misleading_model_cannot_narrow_the_interval_below_what_the_picks_support():
    """The model's recalibrated share moves the estimate, but the interval shown is the hull of
    the interval with it and the picks' own: with a model that says nothing (log-odds shuffled,
    the fit far above the unreviewed images' share), the estimate is pulled up and the interval
    still holds the truth about as often as the picks' alone."""
    rng = np.random.default_rng(0)
    n = 2000
    x = np.sort(rng.normal(-2.5, 1.5, n))[::-1]
    wrong = rng.random(n) < 1 / (1 + np.exp(-x))
    truth = int(wrong.sum())
    shuffled = rng.permutation(x)
    lent = _replays(shuffled, wrong, 10.0, audits=100, reps=60)
    alone = _replays(shuffled, wrong, 0.0, audits=100, reps=60)
    assert np.mean([c.count for c in lent]) > 1.3 * truth  # the prior's pull
    held = [np.mean([c.low <= truth <= c.high for c in cs]) for cs in (lent, alone)]
    assert held[0] >= 0.8 and held[0] >= held[1] - 0.05

"""The scored result kept in the run directory (sei_core.score_cache): hit, miss, invalidation,
crash safety, and that what it keeps equals what scoring the records gives."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sei_core import dynamics, plots, score_cache
from sei_core.files import atomic_write
from sei_core.ranking import score_run
from sei_core.runs import Run
from sei_core.scores import choose_aux_sets, epoch_statistics, softmax

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["a", "b", "c"]


def _epoch(run: Run, r: int, aux: np.ndarray, given: np.ndarray, true: np.ndarray, e: int, epochs: int,
           seed: int) -> None:
    rng = np.random.default_rng(seed * 1000 + r * 100 + e)
    n, k = len(given), len(CLASSES)
    target = given.copy()
    target[aux] = k
    logits = rng.normal(0, 1, (n, k + 1)).astype(np.float32)
    logits[np.arange(n), true] += 3 * min(1.0, 2 * e / epochs)
    logits[np.arange(n), target] += 5 * max(0.0, e / epochs - 0.6)
    run.records(r, keep_probs=2).write_epoch(e, epoch_statistics(logits, target), softmax(logits).astype(np.float32),
                                              loss=1.0, accuracy=0.5)


def make_run(path: Path, n: int = 90, epochs: int = 6, seed: int = 0) -> tuple[Run, dict]:
    """A small two-run training written with the project's own writers (like training)."""
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    true = rng.integers(0, k, n)
    given = true.copy()
    wrong = rng.random(n) < 0.2
    given[wrong] = (true[wrong] + 1) % k
    run = Run(path)
    run.write_config({"data": "", "classes": CLASSES, "runs": 2, "epochs": epochs + 2, "keep_probs": 2})
    run.write_samples([f"img/{i:03d}.png" for i in range(n)], [CLASSES[g] for g in given])
    auxes = choose_aux_sets(n, k, 2, seed=seed)
    for r, aux in enumerate(auxes, start=1):
        run.sub_run(r).mkdir(parents=True, exist_ok=True)
        atomic_write(run.sub_run(r) / "aux.npy", lambda f, a=aux: np.save(f, a))
        for e in range(1, epochs + 1):
            _epoch(run, r, aux, given, true, e, epochs + 2, seed)
    return run, dict(auxes=auxes, given=given, true=true, epochs=epochs, seed=seed)


def test_the_first_scoring_keeps_the_result_and_the_next_reads_it(tmp_path):
    run, _ = make_run(tmp_path / "run")
    first = score_cache.scored(run)
    assert not first.from_cache and first.path is not None and first.path.is_dir()
    again = score_cache.scored(run)
    assert again.from_cache and again.path == first.path
    fresh = score_run(run)
    for name in score_cache._COLUMNS:
        np.testing.assert_array_equal(np.asarray(getattr(again.scores, name)), np.asarray(getattr(fresh, name)))
    assert again.scores.ids == fresh.ids and again.scores.classes == fresh.classes
    assert again.scores.run_thresholds == fresh.run_thresholds and again.scores.epochs == fresh.epochs
    assert again.scores.sei_run_thresholds == fresh.sei_run_thresholds
    assert (again.scores.count is None) == (fresh.count is None)
    if fresh.count is not None:
        assert again.scores.count.describe() == fresh.count.describe()
        np.testing.assert_array_equal(again.scores.count.per_class_k(), fresh.count.per_class_k())
    # the per-epoch arrays still come from the records, sample by sample or whole
    np.testing.assert_array_equal(again.scores.signed_entropy, fresh.signed_entropy)
    for i in (0, 17, len(fresh.ids) - 1):
        np.testing.assert_array_equal(score_cache.sample_values(again.scores, "signed_entropy", i),
                                      fresh.signed_entropy[:, i])
        np.testing.assert_array_equal(score_cache.sample_values(first.scores, "prediction", i), fresh.prediction[:, i])
    assert again.scores.table().equals(fresh.table())


def test_the_summary_equals_the_dynamics_computed_on_the_whole_arrays(tmp_path):
    run, _ = make_run(tmp_path / "run", n=120)
    s = score_run(run)
    # tiny ranges, so the range-by-range sums are really exercised
    summary = score_cache.summarise(s, cells=7 * s.epochs)
    scored = np.isfinite(s.score)
    groups = dynamics.sample_groups(s.prediction, s.labels, s.flagged, scored=scored)
    np.testing.assert_array_equal(summary.groups, groups)
    ints = dynamics.integral_scores(s.signed_entropy, s.entropy)
    np.testing.assert_allclose(summary.integral_signed, ints["signed"])
    np.testing.assert_allclose(summary.integral_unsigned, ints["unsigned"])
    for k in (-1, 0, 2):
        g = groups if k < 0 else np.where(s.labels == k, groups, dynamics.UNSCORED)
        mean, std, count = dynamics.group_mean_curves(s.signed_entropy, g)
        m2, s2, c2 = summary.group_curves(k)
        np.testing.assert_array_equal(c2, count)
        np.testing.assert_allclose(m2, mean, atol=1e-5)
        np.testing.assert_allclose(s2, std, atol=1e-4)
        np.testing.assert_allclose(summary.alignment(k), dynamics.alignment_timeline(s.prediction, s.labels, g),
                                   atol=1e-9)
        mask = np.ones(len(s.ids), bool) if k < 0 else s.labels == k
        want = plots.entropy_trajectories(s.entropy, s.flagged, mask & scored).data
        got = summary.entropy_figure(k).data
        assert len(got) == len(want) and [t.name for t in got] == [t.name for t in want]
        for a, b in zip(got, want):
            np.testing.assert_allclose(np.asarray(a.y, dtype=float), np.asarray(b.y, dtype=float), atol=1e-4)
    order = np.lexsort((np.arange(len(s.ids)), np.nan_to_num(s.score, nan=np.inf)))
    np.testing.assert_array_equal(summary.order, order)


def test_a_new_epoch_or_another_method_is_a_miss_and_old_entries_go(tmp_path):
    run, info = make_run(tmp_path / "run")
    first = score_cache.scored(run)
    other = score_cache.scored(run, "sei")
    assert not other.from_cache and other.path != first.path
    assert score_cache.scored(run, "sei").from_cache
    assert set(score_cache.entries(run)) == {first.path, other.path}
    # training goes on: epoch 7 of each run
    for r, aux in enumerate(info["auxes"], start=1):
        _epoch(run, r, aux, info["given"], info["true"], info["epochs"] + 1, info["epochs"] + 2, info["seed"])
    later = score_cache.scored(run)
    assert not later.from_cache and later.scores.epochs == info["epochs"] + 1
    np.testing.assert_array_equal(np.asarray(later.scores.score), score_run(run).score)
    assert not first.path.exists()  # the stale entry of the same method was removed
    assert other.path.exists()  # another method's entry stays until that method is scored again
    assert not score_cache.scored(run, "sei").from_cache
    assert len(score_cache.entries(run)) == 2


def test_an_entry_that_does_not_match_its_run_is_never_read(tmp_path):
    run, _ = make_run(tmp_path / "run")
    first = score_cache.scored(run)
    meta = json.loads((first.path / "meta.json").read_text())
    meta["key"]["samples"] = ["samples.csv", 1, 2]  # as if written for another sample list
    (first.path / "meta.json").write_text(json.dumps(meta))
    assert not score_cache.scored(run).from_cache
    # a replaced sample list (same name, new file) is a different key
    ids, labels = run.samples()
    time.sleep(0.01)
    run.write_samples(ids, labels)
    assert not score_cache.scored(run).from_cache


_KILL_WHILE_WRITING = """
import os, signal, sys
import numpy as np
sys.path.insert(0, {root!r})
from sei_core import score_cache
from sei_core.runs import Run
real, written = np.save, []
def save(f, a, *args, **kw):
    written.append(f)
    if len(written) == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(f, a, *args, **kw)
np.save = save
score_cache.scored(Run({run!r}))
"""


def test_a_writer_killed_mid_write_leaves_no_torn_entry(tmp_path):
    run, _ = make_run(tmp_path / "run")
    code = _KILL_WHILE_WRITING.format(root=str(ROOT), run=str(run.path))
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == -signal.SIGKILL
    assert score_cache.entries(run) == []  # nothing a reader could take for an entry
    left = [p for p in (run.path / score_cache.FOLDER).iterdir() if p.name.startswith(".")]
    assert len(left) == 1 and left[0].name.endswith(".tmp")
    got = score_cache.scored(run)
    assert not got.from_cache and score_cache.scored(run).from_cache
    np.testing.assert_array_equal(np.asarray(got.scores.score), score_run(run).score)
    # the killed writer's folder is removed by a later write once it is old
    os.utime(left[0], (time.time() - 7200, time.time() - 7200))
    score_cache.scored(run, "sei")
    assert not left[0].exists()


def test_a_write_that_fails_leaves_nothing_and_the_result_is_still_given(tmp_path, monkeypatch):
    run, _ = make_run(tmp_path / "run")

    def fail(target, fill):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(score_cache, "atomic_write_dir", fail)
    got = score_cache.scored(run)
    assert got.path is None and not got.from_cache
    np.testing.assert_array_equal(np.asarray(got.scores.flagged), score_run(run).flagged)
    assert score_cache.entries(run) == []


def test_training_s_end_writes_scores_csv_and_the_entry_from_one_scoring(tmp_path):
    run, _ = make_run(tmp_path / "run")
    df = score_cache.write_finished(run)
    assert (run.path / "scores.csv").is_file() and len(df) == 90
    assert score_cache.scored(run).from_cache
    assert score_cache.scored(run, "sei").from_cache  # the Explore page's other score
    assert df.equals(score_run(run).table())


@pytest.mark.slow  # a process that imports torch
def test_a_training_process_does_not_import_plotly():
    """Scoring a run at the end of training must not need the app's figure library."""
    import subprocess
    import sys

    code = ("import sys, sei_core.train, sei_core.score_cache, sei_core.ranking; "
            "assert 'plotly' not in sys.modules, [m for m in sys.modules if m.startswith('plotly')][:3]")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]

"""Retrain from a review, held-out evaluation (with the leak refusal) and the retrain benchmark,
on tiny generated data."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sei_core import cli
from sei_core.evaluate import EVALUATION_FILE, EvaluationError, evaluate, find_leaks
from sei_core.metrics import classification_report
from sei_core.ranking import score_run
from sei_core.retrain import TRAINING_TABLE, read_reviewed
from sei_core.review import STATE_FILTERS, ReviewQueue, ReviewStore, review_columns, review_label_file
from sei_core.runs import Run
from sample_data.make_sample_data import generate

from conftest import TINY_TRAIN, bench_args, train_args


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture(scope="module")
def test_set(tmp_path_factory):
    """Held-out images of the tiny data's classes, drawn with another seed (other pixels)."""
    return generate(tmp_path_factory.mktemp("heldout"), n_per_class=5, image_size=32, noise_rate=0.0, seed=9)


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A private copy of the session's trained run, checkpoints included."""
    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst, ignore=shutil.ignore_patterns(".lock"))
    return Run(dst)


# ------------------------------------------------------------------------------ metrics


def test_classification_report_matches_sklearn():
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, recall_score, roc_auc_score

    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 200)
    y[y == 3] = 2  # class 3 absent from the truth, yet predicted sometimes
    probs = rng.dirichlet(np.ones(4), 200)
    probs[np.arange(200), y] += 0.3
    pred = probs.argmax(1)
    r = classification_report(y, probs, ["a", "b", "c", "d"])
    assert r["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert r["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert r["per_class"]["b"]["recall"] == pytest.approx(recall_score(y, pred, labels=[1], average="macro"))
    aucs = [roc_auc_score(y == c, probs[:, c]) for c in (0, 1, 2)]
    assert r["macro_auroc"] == pytest.approx(np.mean(aucs))
    assert np.isnan(r["per_class"]["d"]["recall"]) and r["per_class"]["d"]["n"] == 0


# ------------------------------------------------------------------------------ evaluation


def test_evaluate_writes_the_test_scores_of_the_final_model(run_copy, test_set, capsys):
    assert cli.main(["evaluate", str(run_copy.path), "--test", str(test_set)]) == 0
    out = capsys.readouterr().out
    assert "balanced accuracy" in out and "macro-F1" in out
    ev = json.loads((run_copy.path / EVALUATION_FILE).read_text())
    assert ev["n_images"] == 20
    assert set(ev["per_class"]) == set(run_copy.config()["classes"])
    assert ev["checkpoint_epochs"] == [TINY_TRAIN["epochs"]] * 2  # the final model of both runs
    for m in ("accuracy", "balanced_accuracy", "macro_f1"):
        assert 0.0 <= ev[m] <= 1.0
    # the stored numbers are those of the predictions (recomputed from the confusion matrix)
    conf = np.array(ev["confusion"])
    assert conf.sum() == 20 and ev["accuracy"] == pytest.approx(np.trace(conf) / 20)


def test_a_test_image_that_is_a_training_image_is_refused(run_copy, tiny_data, test_set, tmp_path, capsys):
    # same path: a test file listing two of the training images among held-out ones
    train_rows = pd.read_csv(tiny_data).head(2)
    held = pd.read_csv(test_set)
    held["path"] = [str(test_set.parent / p) for p in held["path"]]
    mixed = pd.concat([held, train_rows.assign(path=[str(tiny_data.parent / p) for p in train_rows["path"]])])
    mixed.to_csv(tmp_path / "mixed.csv", index=False)
    assert cli.main(["evaluate", str(run_copy.path), "--test", str(tmp_path / "mixed.csv")]) == 1
    err = capsys.readouterr().err
    assert "2 of the 22 test images" in err and "also training images" in err and "Traceback" not in err
    assert not (run_copy.path / EVALUATION_FILE).exists()

    # same content under another name: a copy of a training image
    (tmp_path / "copies").mkdir()
    shutil.copyfile(tiny_data.parent / train_rows["path"][0], tmp_path / "copies" / "renamed.png")
    pd.concat([held, pd.DataFrame({"path": [str(tmp_path / "copies" / "renamed.png")],
                                   "label": [train_rows["label"][0]]})]).to_csv(tmp_path / "copy.csv", index=False)
    with pytest.raises(EvaluationError, match="1 of the 21 test images .* same file as training image"):
        evaluate(run_copy, tmp_path / "copy.csv")


def test_find_leaks_hashes_only_files_of_a_shared_size(tmp_path):
    from sei_core import dataset as ds_mod

    for name, data in [("a.bin", b"x" * 10), ("b.bin", b"y" * 10), ("c.bin", b"z" * 11), ("d.bin", b"x" * 10)]:
        (tmp_path / name).write_bytes(data)

    def ds(ids):
        return ds_mod.LabeledImages(kind="csv", source=tmp_path / "l.csv", root=tmp_path, ids=ids,
                                    labels=np.zeros(len(ids), dtype=np.int64), classes=["k"])

    leaks = find_leaks(ds(["a.bin", "c.bin"]), ds(["b.bin", "c.bin", "d.bin"]))
    assert leaks == [(1, 1, "same path"), (2, 0, "same content")]


def test_evaluate_refuses_a_run_without_its_final_model(run_copy, test_set, capsys):
    run_copy.checkpoint(2).unlink()
    assert cli.main(["evaluate", str(run_copy.path), "--test", str(test_set)]) == 1
    assert "no longer has its final model" in capsys.readouterr().err


def test_unknown_test_labels_are_listed(run_copy, test_set, tmp_path, capsys):
    t = pd.read_csv(test_set)
    t["path"] = [str(test_set.parent / p) for p in t["path"]]
    t.loc[:2, "label"] = "freckle"
    t.to_csv(tmp_path / "t.csv", index=False)
    assert cli.main(["evaluate", str(run_copy.path), "--test", str(tmp_path / "t.csv")]) == 1
    assert "'freckle' (3 images)" in capsys.readouterr().err


# ------------------------------------------------------------------------------ retrain


def _review_some(run: Run) -> dict:
    """Relabel, discard and confirm one flagged-or-not image each; returns what was decided."""
    s = score_run(run)
    order = np.argsort(s.score)
    paths = [s.ids[i] for i in order[:3]]
    given = [s.classes[s.labels[i]] for i in order[:3]]
    other = next(c for c in s.classes if c != given[0])
    with ReviewStore(review_label_file(run), **review_columns(run)) as store:
        store.relabel(paths[0], other, "ann", given[0])
        store.discard(paths[1], "ann", given[1])
        store.confirm(paths[2], "ann", given[2])
    return {"relabeled": (paths[0], other), "discarded": paths[1], "confirmed": paths[2]}


@pytest.fixture(scope="module")
def reviewed_parent(tiny_data, tmp_path_factory):
    """A 2-epoch run of a copy of the tiny data, reviewed (:func:`_review_some`): the data and
    the run in one folder, and what was decided. Read-only: tests take :func:`reviewed_run`."""
    root = tmp_path_factory.mktemp("reviewed")
    shutil.copytree(tiny_data.parent, root / "data")
    out = root / "runs" / "parent"
    assert cli.main(train_args(root / "data" / tiny_data.name, out, epochs=2)) == 0
    return root, _review_some(Run(out))


@pytest.fixture
def reviewed_run(reviewed_parent, tmp_path):
    """A private copy of :func:`reviewed_parent` (its data, label file and run): the run and
    what was decided. One training serves every test that retrains from a review."""
    root, decided = reviewed_parent
    shutil.copytree(root / "data", tmp_path / "data")
    run = Run(tmp_path / "runs" / "parent")
    shutil.copytree(root / "runs" / "parent", run.path, ignore=shutil.ignore_patterns(".lock"))
    cfg = run.config()
    cfg["data"] = str(tmp_path / "data" / Path(cfg["data"]).name)
    run.write_config(cfg)
    assert review_label_file(run) == tmp_path / "data" / Path(cfg["data"]).name
    return run, decided


@pytest.mark.slow
def test_retrain_trains_on_the_labels_as_reviewed_and_records_its_lineage(reviewed_run, test_set, capsys):
    parent, decided = reviewed_run
    label_file = review_label_file(parent)
    before = _sha(label_file)
    child_dir = parent.path.parent / "child"
    assert cli.main(["train", "--from-review", str(parent.path), "--out", str(child_dir), "--no-progress",
                     "--test", str(test_set)]) == 0
    assert "1 relabeled, 1 discarded left out, 1 confirmed" in capsys.readouterr().err
    child = Run(child_dir)
    assert _sha(label_file) == before  # the user's label file was only read
    ids, labels = child.samples()
    parent_ids, _ = parent.samples()
    assert len(ids) == len(parent_ids) - 1 and decided["discarded"] not in ids
    path, new = decided["relabeled"]
    assert labels[ids.index(path)] == new
    cfg, pcfg = child.config(), parent.config()
    for key in ("model", "epochs", "image_size", "lr", "batch_size", "seed", "data", "classes"):
        assert cfg[key] == pcfg[key], key
    lin = cfg["lineage"]
    assert lin["parent_run"] == str(parent.path.resolve()) and lin["label_file_sha256"] == before
    assert (lin["decisions"], lin["relabeled"], lin["discarded"], lin["confirmed"]) == (3, 1, 1, 1)
    assert (child.path / EVALUATION_FILE).is_file()  # --test evaluated at the end

    # a second round reviews into the same label file and skips what the first decided
    assert review_label_file(child) == label_file
    s = score_run(child)
    everything = np.ones(len(s.ids), dtype=bool)
    with ReviewStore(label_file, **review_columns(child)) as store:
        q = ReviewQueue(s.ids, s.labels, s.score, everything, status_table=store.status_table())
    to_review = {q.ids[i] for i in q.select(STATE_FILTERS["to review"])}
    assert path not in to_review and decided["confirmed"] not in to_review
    assert len(to_review) == len(ids) - 2


@pytest.mark.slow
def test_a_killed_retrain_resumes_on_the_same_samples(reviewed_run, tmp_path):
    parent, decided = reviewed_run
    child_dir = tmp_path / "runs" / "child"
    cmd = [sys.executable, "-m", "sei_core.cli", "train", "--from-review", str(parent.path), "--out", str(child_dir),
           "--no-progress", "--epochs", "3"]
    proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (child_dir / "run1" / "records").is_dir() or len(Run(child_dir).records(1).epochs()) < 2:
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    child = Run(child_dir)
    assert child.status()["state"] == "interrupted"
    table = pd.read_csv(child_dir / TRAINING_TABLE)
    # the review goes on meanwhile: the resumed retrain still trains on the snapshot it started from
    with ReviewStore(review_label_file(parent), **review_columns(parent)) as store:
        store.discard(decided["confirmed"], "ann", store.status_table().set_index("path")["label"][decided["confirmed"]],
                      expected_status="confirmed")
    assert cli.main(["resume", str(child_dir), "--no-progress"]) == 0
    assert child.status()["state"] == "finished"
    ids, labels = child.samples()
    assert ids == table["path"].tolist() and labels == table["label"].tolist()
    assert child.config()["epochs"] == 3  # an explicit option overrides the parent's setting
    assert read_reviewed(review_label_file(parent), **review_columns(parent)).counts()["discarded"] == 2


def test_retrain_refuses_a_taken_out_and_a_missing_run(run_copy, capsys):
    parent = run_copy  # refused before any review is read: the session's run serves
    assert cli.main(["train", "--from-review", str(parent.path), "--out", str(parent.path)]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main(["train", "--from-review", str(parent.path / "nope")]) == 1
    assert "not a run directory" in capsys.readouterr().err


# ------------------------------------------------------------------------------ the benchmark


@pytest.mark.slow
def test_bench_retrain_writes_four_test_rows_per_cell(tiny_data, test_set, tmp_path):
    out = tmp_path / "bench"
    args = bench_args(tiny_data, out, dict(TINY_TRAIN), ["--methods", "confidence", "--retrain", "--test",
                                                          str(test_set)])
    assert cli.main(args) == 0
    rows = pd.read_csv(out / "retrain.csv")
    assert sorted(rows["variant"]) == sorted(["noisy", "minus_flagged", "reviewed", "clean"])
    by = rows.set_index("variant")
    assert by.loc["clean", "n_wrong_in_train"] == 0
    assert by.loc["minus_flagged", "n_train"] == by.loc["noisy", "n_train"] - by.loc["minus_flagged", "discarded"]
    assert by.loc["reviewed", "n_wrong_in_train"] == by.loc["noisy", "n_wrong_in_train"] - by.loc["reviewed", "relabeled"]
    assert (rows["n_test"] == 20).all()
    assert "gap closed" in (out / "retrain.md").read_text()
    # the cell's noisy label file is untouched: the simulated reviews wrote into copies
    cell = next(out.glob("cells/*/*/rate*/seed*"))
    assert "review_status" not in pd.read_csv(cell / "labels.csv").columns

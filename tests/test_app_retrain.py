"""AppTest: "Train again on the reviewed labels" (Review page), "Evaluate on a test set" (Train
page, with the leak refusal) and the Compare page of a run and its retrained child."""

import shutil
import time

import pandas as pd
import pytest

from sei_core import jobs
from sei_core.evaluate import EVALUATION_FILE
from sei_core.ranking import score_run
from sei_core.review import ReviewStore, review_columns, review_label_file
from sei_core.runs import Run, list_runs
from sample_data.make_sample_data import generate


@pytest.fixture
def env(app_env, trained_run):
    """The app's run with its checkpoints (app_env leaves them out) and a held-out test set."""
    for i in (1, 2):
        shutil.copyfile(trained_run / f"run{i}" / "checkpoint.pt", app_env.run / f"run{i}" / "checkpoint.pt")
    app_env.test = generate(app_env.root / "heldout", n_per_class=4, image_size=32, noise_rate=0.0, seed=11)
    yield app_env
    for run in list_runs(app_env.runs):
        if run.is_locked():
            jobs.stop(run)


def _button(at, label):
    return next(b for b in at.button if b.label == label)


def _frame(at, column: str) -> pd.DataFrame:
    """The first table on the page with this column."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_evaluate_on_a_test_set_and_the_leak_refusal(open_app, env):
    at = open_app("pages/train.py")
    at.text_input(key="eval_test").input(str(env.test)).run()
    _button(at, "Evaluate").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert (env.run / EVALUATION_FILE).is_file()
    table = _frame(at, "measure")
    assert "balanced accuracy" in set(table["measure"]) and "macro-F1" in set(table["measure"])

    at.text_input(key="eval_test").input(str(env.labels)).run()  # the training labels themselves
    _button(at, "Evaluate").click().run()
    assert not at.exception
    assert any("also training images of the run" in e.value for e in at.error)


@pytest.mark.slow
def test_train_again_then_compare(open_app, env):
    run = Run(env.run)
    s = score_run(run)
    i, j = int(s.score.argmin()), int(s.score.argmax())
    with ReviewStore(review_label_file(run), **review_columns(run)) as store:
        other = next(c for c in s.classes if c != s.classes[s.labels[i]])
        store.relabel(s.ids[i], other, "ann", s.classes[s.labels[i]])
        store.discard(s.ids[j], "ann", s.classes[s.labels[j]])
    before = review_label_file(run).read_bytes()
    at = open_app("pages/review.py")
    at.text_input(key="retrain_name").input("child").run()
    _button(at, "Train again").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Training child in the background" in s.value for s in at.success)
    child = Run(env.runs / "child")
    deadline = time.monotonic() + 240
    while child.status().get("state") != "finished":
        assert child.status().get("state") != "failed", child.status().get("error")
        assert time.monotonic() < deadline, child.status()
        time.sleep(0.5)
    assert review_label_file(run).read_bytes() == before
    assert len(child.samples()[0]) == len(s.ids) - 1
    assert child.config()["lineage"]["relabeled"] == 1

    at = open_app("pages/train.py")
    at.sidebar.selectbox(key="run_name").select("child").run()
    assert any("Retrained from" in c.value and "1 relabeled, 1 discarded" in c.value for c in at.caption)
    at.switch_page("pages/compare.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    fate = _frame(at, "what became of them").set_index("what became of them")["images"]
    assert fate["flagged in the parent"] == int(s.flagged.sum())
    groups = _frame(at, "group")
    assert list(groups.columns) == ["group", run.name, "child"]
    assert groups["child"].sum() == len(s.ids) - 1
    classes = _frame(at, "child flagged")
    assert classes[f"{run.name} images"].sum() == len(s.ids) and classes["child images"].sum() == len(s.ids) - 1

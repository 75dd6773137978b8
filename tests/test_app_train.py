"""AppTest: the Train page — settings, starting a background run, live progress, stop, resume,
a failed run's error in words, and the list of runs."""

import json
import time

import pytest

from sei_core import jobs
from sei_core.runs import Run, list_runs

TRAIN = "pages/train.py"


@pytest.fixture
def stop_all(app_env):
    yield
    for run in list_runs(app_env.runs):
        if run.is_locked():
            jobs.stop(run)


def wait_for(run: Run, predicate, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = run.status()
        if predicate(st):
            return st
        if st.get("state") == "failed" and not predicate(st):
            raise AssertionError(f"the run failed: {st.get('error')}")
        time.sleep(0.3)
    raise AssertionError(f"timed out; status {run.status()}")


def start(at, name: str, **fields):
    for key, value in fields.items():
        if key in ("tr_epochs", "tr_batch_size", "tr_image_size"):
            at.number_input(key=key).set_value(value)
        elif key == "tr_weights_mode":
            at.selectbox(key=key).select(value).run()  # shows the checkpoint field
        else:
            at.text_input(key=key).input(value)
    at.text_input(key="tr_name").input(name)
    [b for b in at.button if b.label == "Start training"][0].click().run()
    assert not at.exception
    return at


def test_finished_run_shows_its_result_curve_and_the_run_list(open_app, app_env):
    at = open_app(TRAIN)
    assert not at.error
    from sei_core.config import PRESETS, choose_preset

    assert at.selectbox(key="tr_model").value == PRESETS[choose_preset().preset].settings["model"]  # this machine's
    assert at.radio(key="tr_preset").value == choose_preset().preset
    assert any("Finished:" in s.value and "flagged" in s.value for s in at.success)
    curve = json.loads(at.get("plotly_chart")[0].proto.spec)  # the training curve: loss and accuracy per run
    history = Run(app_env.run).status()["history"]
    losses = [t for t in curve["data"] if t.get("yaxis", "y") == "y"]
    assert sum(len(t["x"]) for t in losses) == len(history)  # one point per finished epoch
    runs_table = at.dataframe[-1].value
    assert list(runs_table["run"]) == [app_env.run.name] and list(runs_table["state"]) == ["finished"]


@pytest.mark.slow  # trains in another process (interpreter, torch and training each time)
def test_start_stop_and_resume_a_background_run(open_app, app_env, stop_all):
    at = open_app(TRAIN)
    start(at, "long", tr_epochs=300, tr_batch_size=16, tr_image_size=32)
    run = Run(app_env.runs / "long")
    assert run.exists()
    assert at.sidebar.selectbox(key="run_name").value == "long"  # the new run is selected
    wait_for(run, lambda st: st.get("state") == "running" and (st.get("epoch") or 0) >= 1)
    at.run()
    assert any(b.label == "Stop" for b in at.button)
    assert {m.label for m in at.metric} >= {"Epoch", "Loss", "Accuracy", "Time left"}
    assert "epoch" in at.get("progress")[0].proto.text
    at.button(key="stop_run").click().run()
    assert run.status()["state"] == "stopped"
    at.run()
    assert any("Stopped" in i.value for i in at.info)
    epoch, first_pid = run.status()["epoch"], run.status()["pid"]
    at.button(key="resume_run").click().run()
    st = wait_for(run, lambda st: st.get("state") == "running")  # a new process holds the run
    assert st["epoch"] >= epoch and st["pid"] != first_pid
    jobs.stop(run)


@pytest.mark.slow  # trains in another process (interpreter, torch and training each time)
def test_a_failed_run_shows_its_error_in_words(open_app, app_env, stop_all):
    at = open_app(TRAIN)
    start(at, "bad", tr_epochs=1, tr_weights_mode="local checkpoint", tr_weights_file="/nowhere/clip.bin")
    run = Run(app_env.runs / "bad")
    wait_for(run, lambda st: st.get("state") == "failed", timeout=90)
    at.run()
    assert any("Training failed" in e.value and "clip.bin" in e.value.replace("\\", "") for e in at.error)
    failed = [e.value.replace("\\", "") for e in at.error if "Training failed" in e.value]
    assert "Weights “none”" in failed[0] and "--" not in failed[0]  # the page's words; the CLI says --weights none
    assert "--weights none" in run.status()["error"]
    assert any(b.label == "Resume" for b in at.button)
    assert not at.exception


def test_bad_settings_are_refused_before_starting(open_app, app_env):
    at = open_app(TRAIN)
    at.text_input(key="tr_name").input("no spaces allowed").run()
    [b for b in at.button if b.label == "Start training"][0].click().run()
    assert any("run name" in e.value for e in at.error)
    at.text_input(key="tr_name").input(app_env.run.name).run()
    [b for b in at.button if b.label == "Start training"][0].click().run()
    assert any("exists already" in e.value for e in at.error)
    assert [r.name for r in list_runs(app_env.runs)] == [app_env.run.name]

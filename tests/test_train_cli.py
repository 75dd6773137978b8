"""Real (short) training through the CLI, kill-and-resume, and bad input at the CLI."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from sei_core import cli
from sei_core.methods import DEFAULT_METHOD
from sei_core.ranking import score_run
from sei_core.runs import Run

from conftest import train_args


_args = train_args


@pytest.fixture
def finished_run(trained_run):
    return Run(trained_run)


def test_training_writes_a_complete_run(finished_run, tiny_data):
    run = finished_run
    st = run.status()
    assert st["state"] == "finished" and st["epoch"] == 4 and len(st["history"]) == 8
    cfg = run.config()
    assert cfg["milestones"] == [2, 3]  # the paper's 75/115 of 150, scaled to 4 epochs
    assert cfg["prompts"][-1] == "A dermoscopic image showing other lesions."
    for r in (1, 2):
        assert run.records(r).epochs() == [1, 2, 3, 4]
        assert len(list((run.sub_run(r) / "records").glob("probs_*.npy"))) == 4
        assert run.checkpoint(r).is_file()
    aux1, aux2 = run.aux_indices(1), run.aux_indices(2)
    assert len(aux1) == len(aux2) == 48 // 5 and not set(aux1) & set(aux2)
    table = pd.read_csv(run.path / "scores.csv")
    assert len(table) == 48 and table["sei"].notna().all()  # two runs: every sample scored
    assert table[DEFAULT_METHOD].is_monotonic_increasing  # ranked by the default method, SEI beside it
    truth = pd.read_csv(tiny_data.parent / "truth.csv")
    assert set(table["path"]) == set(truth["path"])


def test_records_hold_signed_entropy_consistent_with_predictions(finished_run):
    rec = finished_run.records(1).load()
    se, h, pred = rec["signed_entropy"], rec["entropy"], rec["prediction"]
    assert se.shape == (4, 48)
    assert np.allclose(np.abs(se), h, atol=1e-6)
    ids, labels = finished_run.samples()
    classes = finished_run.config()["classes"]
    target = np.array([classes.index(lab) for lab in labels])
    target[finished_run.aux_indices(1)] = len(classes)
    assert np.array_equal(se >= 0, pred == target) or np.all((se >= 0) == (pred == target) | (h == 0))


def test_flags_and_status_commands(finished_run, capsys, tmp_path):
    assert cli.main(["status", str(finished_run.path)]) == 0
    assert "finished" in capsys.readouterr().out
    out = tmp_path / "flags.csv"
    assert cli.main(["flags", str(finished_run.path), "--all", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    extra = [] if DEFAULT_METHOD == "sei" else ["sei", "sei_threshold", "sei_flagged"]
    assert list(df.columns) == ["path", "given_label", DEFAULT_METHOD, "threshold", "flagged", *extra,
                                "suggested_label", "suggested_probability", "scored_by_run"]
    assert (df["flagged"] == (df[DEFAULT_METHOD] < df["threshold"])).all()
    assert cli.main(["flags", str(finished_run.path), "--top", "3"]) == 0
    assert "given_label" in capsys.readouterr().out
    # --method: the paper's SEI alone
    assert cli.main(["flags", str(finished_run.path), "--all", "--method", "sei", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["path", "given_label", "sei", "threshold", "flagged", "suggested_label",
                                "suggested_probability", "scored_by_run"]
    assert (df["flagged"] == (df["sei"] < df["threshold"])).all() and df["sei"].is_monotonic_increasing
    assert cli.main(["flags", str(finished_run.path), "--method", "magic"]) == 1
    assert "unknown method 'magic'" in capsys.readouterr().err


@pytest.mark.slow  # trains in another process (interpreter, torch and training each time)
def test_killed_run_resumes_to_the_same_scores(tiny_data, trained_run, tmp_path):
    ref = trained_run  # the reference: the session's uninterrupted run of the same command
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "sei_core.cli", *_args(tiny_data, killed)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while len(Run(killed).records(1).epochs()) < 2:  # of 4: killed in the first run's second half
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = Run(killed)
    assert run.status()["state"] == "interrupted"
    assert not run.is_done(1)

    assert cli.main(["resume", str(killed), "--no-progress"]) == 0
    a, b = score_run(Run(ref)), score_run(run)
    assert a.ids == b.ids
    np.testing.assert_allclose(b.score, a.score, rtol=0, atol=1e-5)
    assert np.array_equal(a.flagged, b.flagged)
    assert run.status()["state"] == "finished"


@pytest.mark.slow  # trains in another process (interpreter, torch and training each time)
def test_stop_signal_leaves_a_resumable_run(tiny_data, tmp_path):
    out = tmp_path / "stopped"
    proc = subprocess.Popen([sys.executable, "-m", "sei_core.cli", *_args(tiny_data, out, epochs=40)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not Run(out).records(1).epochs():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "resume" in err
    assert Run(out).status()["state"] == "stopped"


def test_bad_input_gives_a_message_not_a_traceback(tmp_path, capsys):
    bad = tmp_path / "labels.csv"
    bad.write_text("file,class\na.png,x\n")
    assert cli.main(["train", str(bad), "--out", str(tmp_path / "r"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "no column 'path' or 'label'" in err and "Traceback" not in err
    st = Run(tmp_path / "r").status()
    assert st["state"] == "failed" and "no column" in st["error"]
    assert cli.main(["status", str(tmp_path / "nowhere")]) == 1
    assert cli.main(["train", str(bad), "--out", str(tmp_path / "r2"), "--epochs", "0"]) == 1
    assert "epochs must be at least 1" in capsys.readouterr().err


def test_existing_run_is_not_overwritten(finished_run, tiny_data, capsys):
    before = (finished_run.path / "scores.csv").read_bytes()
    assert cli.main(_args(tiny_data, finished_run.path)) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert (finished_run.path / "scores.csv").read_bytes() == before


@pytest.mark.slow
def test_resume_refuses_changed_data(tiny_copy, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_args(tiny_copy, out, epochs=1)) == 0
    Run(out).update_status(state="stopped")
    text = tiny_copy.read_text().splitlines()
    tiny_copy.write_text("\n".join(text[:-1]) + "\n")  # one row fewer
    assert cli.main(["resume", str(out), "--no-progress"]) == 1
    assert "the data changed since this run started (48 samples then, 47 now" in capsys.readouterr().err


def test_a_run_on_chosen_columns_records_them_for_review(tiny_data, tmp_path, capsys):
    from conftest import write_mapped_labels
    from sei_core.review import ReviewStore, review_columns, review_label_file

    f = write_mapped_labels(tiny_data, tmp_path / "derm.csv")
    assert cli.main(["validate", str(f)]) == 1  # without the columns: named, with the fix
    err = capsys.readouterr().err
    assert "its columns are 'image_id', 'diagnosis' and 'age'" in err and "--path-column" in err
    columns = ["--path-column", "image_id", "--label-column", "diagnosis"]
    assert cli.main(["validate", str(f), *columns]) == 0
    assert "48 images, 4 classes (image paths from column 'image_id', labels from 'diagnosis')" in capsys.readouterr().out
    out = tmp_path / "run"
    assert cli.main([*_args(f, out, epochs=1), "--single-run", *columns]) == 0
    run = Run(out)
    cfg = run.config()
    assert (cfg["path_column"], cfg["label_column"]) == ("image_id", "diagnosis")
    assert run.samples()[0][0].startswith(os.path.relpath(tiny_data.parent, tmp_path))  # ids: the image_id cells
    # the run's review writes to the diagnosis column of the data set's own file
    assert review_label_file(run) == f
    assert review_columns(run) == {"path_column": "image_id", "label_column": "diagnosis"}
    before = f.read_text().splitlines()
    sid, given = run.samples()[0][0], run.samples()[1][0]
    other = next(c for c in cfg["classes"] if c != given)
    with ReviewStore(review_label_file(run), classes=cfg["classes"], **review_columns(run)) as store:
        store.relabel(sid, other, "ann", expected_label=given)
    after = f.read_text().splitlines()
    assert after[0] == "image_id;diagnosis;age;original_label;review_status;reviewed_by"
    row = next(k for k, line in enumerate(before) if line.startswith(sid + ";"))
    image, _, age = before[row].split(";")
    assert after[row] == f"{image};{other};{age};{given};relabeled;ann"

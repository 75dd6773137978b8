"""Errors say their reason and their fix in two vocabularies: the command line's (flags and
``sei`` commands, ``str(e)``) and the app's (its buttons and fields, ``e.said(app=True)``).
Each error below comes from the real code path that raises it."""

import pickle

import pytest
import torch
from PIL import Image

from sei_core import dataset
from sei_core.config import TrainConfig, pick_device
from sei_core.dataset import DataError, Problem
from sei_core.decode import decode_images
from sei_core.errors import SKIP_UNREADABLE, Fix, SeiError
from sei_core.evaluate import EvaluationError, final_checkpoints
from sei_core.labels import TableError, read_table
from sei_core.models import ModelError, build_model
from sei_core.retrain import prepare_retrain
from sei_core.review import LabelFileError, ReviewStore
from sei_core.runs import Run, RunError, State, status_error
from sei_core.train import init_run

PROMPTS = ["a cat", "a dog", "something else"]


def says_both(e: SeiError, flag: str) -> str:
    """``e`` names ``flag`` on the command line and no flag or command in the app; the reason
    is the same in both. Returns the app's text."""
    cli, app = str(e), e.said(app=True)
    assert flag in cli, cli
    assert "--" not in app and "`sei" not in app, app
    assert cli.startswith(e.reason) and app.startswith(e.reason)
    return app


def test_a_fix_is_said_in_either_vocabulary_and_joins_text():
    fix = "replace the file, or " + SKIP_UNREADABLE
    assert fix.cli == "replace the file, or use --skip-unreadable to leave it out"
    assert fix.said(app=True) == "replace the file, or tick “Leave out unreadable images” on the Train page to leave it out"
    plain = Fix.of("check the path")
    assert plain.said() == plain.said(app=True) == str(plain) == "check the path" and plain.app is None
    assert not Fix() and (Fix() + "x").app is None
    e = SeiError("it broke", fix)
    assert str(e) == "it broke; " + fix.cli and e.said(app=True) == "it broke; " + fix.app
    assert str(SeiError("no fix")) == SeiError("no fix").said(app=True) == "no fix"
    assert pickle.loads(pickle.dumps(Problem("a.csv line 2", "bad", fix))).fix == fix


def test_weights_errors(tmp_path):
    with pytest.raises(ModelError) as e:
        build_model("RN50", PROMPTS, weights=str(tmp_path / "nowhere" / "clip.bin"), image_size=64)
    assert "Weights “none”" in says_both(e.value, "--weights none")
    with pytest.raises(ModelError) as e:
        build_model("RN50", PROMPTS, weights="no-such-tag", image_size=64)
    assert "Weights “none”" in says_both(e.value, "--weights none")
    with pytest.raises(ModelError) as e:  # offline: the download fails
        build_model("RN50", PROMPTS, weights="openai", image_size=64)
    app = says_both(e.value, "--weights /path/to/file")
    assert "--weights none" in str(e.value) and "“local checkpoint”" in app and "Weights “none”" in app


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_missing_gpu():
    with pytest.raises(RunError) as e:
        pick_device("cuda")
    assert "Device “cpu”" in says_both(e.value, "--device cpu")


def test_run_folder_errors(tmp_path, tiny_data):
    with pytest.raises(RunError) as e:
        Run(tmp_path / "none").config()
    assert "Train page" in says_both(e.value, "--out")
    busy = Run(tmp_path / "busy")
    fd = busy.acquire()
    try:
        with pytest.raises(RunError) as e:
            busy.acquire(creating=True)
        assert "run name" in says_both(e.value, "--out")
        with pytest.raises(RunError) as e:
            busy.acquire()
        assert "Stop button" in says_both(e.value, "`sei stop`")
    finally:
        Run.release(fd)

    config = TrainConfig(data=str(tiny_data), model="SEI-Tiny-RN", image_size=32, epochs=1)
    for state, flag, words in [(State.FINISHED, "--out", "run name"), (State.STOPPED, "`sei resume", "Resume button")]:
        run = Run(tmp_path / state.value)
        run.write_config({"data": str(tiny_data), "epochs": 1})
        run.update_status(state=state.value, history=[{"epoch": 1}], epoch=1)
        with pytest.raises(RunError) as e:
            init_run(config, run.path)
        assert words in says_both(e.value, flag)
        with pytest.raises(RunError) as e:  # a retrain into it
            prepare_retrain(tmp_path / "parent", run.path)
        assert "Resume button" in says_both(e.value, "`sei resume")
    with pytest.raises(EvaluationError) as e:
        final_checkpoints(Run(tmp_path / State.STOPPED.value))
    assert "Resume button" in says_both(e.value, "`sei resume")
    with pytest.raises(EvaluationError) as e:  # finished, its checkpoints removed
        final_checkpoints(Run(tmp_path / State.FINISHED.value))
    assert "train it again" in says_both(e.value, "--keep-checkpoints")


def test_a_failed_run_keeps_its_error_in_both_vocabularies(tmp_path):
    run = Run(tmp_path / "run")
    run.write_config({"epochs": 1})
    error = RunError("out of memory", Fix("lower --batch-size", "lower “Batch size”"))
    run.mark_failed(error)
    st = run.status()
    assert st["error"] == str(error) and status_error(st) == str(error)
    assert status_error(st, app=True) == "out of memory; lower “Batch size”"
    run.mark_created(error=None)  # resumed (as jobs.resume does): the old error goes in both
    assert status_error(run.status(), app=True) is None and status_error(run.status()) is None
    run.mark_failed("plain words")
    assert status_error(run.status(), app=True) == status_error(run.status()) == "plain words"


def test_data_problems(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (24, 24), "red").save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("RGB", (300, 300), "red").save(tmp_path / "big.png")
    f = tmp_path / "labels.csv"
    f.write_text("path,label\na.png,x\nb.png,y\nc.png,x\nbroken.png,y\nbig.png,y\ngone.png,x\n")
    with pytest.raises(DataError) as e:
        dataset.load(f, max_pixels=50_000)
    flags = {"broken.png": "--skip-unreadable", "big.png": "--max-pixels", "gone.png": "--image-dir"}
    assert sorted(p.where.split("(")[1].rstrip(")") for p in e.value.problems) == sorted(flags)
    for p in e.value.problems:
        flag = flags[p.where.split("(")[1].rstrip(")")]
        assert flag in str(p) and flag in p.fix.cli
        assert "--" not in p.said(app=True) and "--" not in p.fix.app and p.fix.app
    app = e.value.said(app=True)
    assert "--" not in app and "“Leave out unreadable images”" in app and "“Image folders”" in app
    assert "--max-pixels" in str(e.value)


def test_an_image_that_opens_but_does_not_decode(tmp_path):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (24, 24), "red").save(tmp_path / name)
    good = (tmp_path / "a.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(good[: len(good) // 2])  # the header reads, the pixels do not
    f = tmp_path / "labels.csv"
    f.write_text("path,label\na.png,x\nb.png,y\ncut.png,y\n")
    ds = dataset.load(f, check_images=False)
    with pytest.raises(DataError) as e:
        decode_images(ds, 16, cache_dir=tmp_path / "cache")
    (p,) = e.value.problems
    assert "--skip-unreadable" in p.fix.cli and "“Leave out unreadable images”" in p.fix.app
    assert "--" not in e.value.said(app=True)


def test_column_errors(tmp_path):
    f = tmp_path / "labels.csv"
    f.write_text("Path,Label\na.png,x\n")
    with pytest.raises(TableError) as e:
        read_table(f)
    app = e.value.said(app=True)
    assert "--path-column Path --label-column Label" in str(e.value) and "Data page" in str(e.value)
    assert "--" not in app and "path column “Path”, label column “Label”" in app
    f.write_text("path,review_status\na.png,x\n")
    with pytest.raises(LabelFileError) as e:
        ReviewStore(f, label_column="review_status")
    assert "Data page" in says_both(e.value, "--label-column")

"""The run directory under concurrency: one creator per --out, one copy of each log line."""

import json
import os
import subprocess
import sys
import time

import pytest

from sei_core import jobs
from sei_core.runs import Run, RunError, duration_text
from sei_core.config import TrainConfig
from sei_core.train import init_run


def _train_cmd(data, out, seed, tiny):
    args = [sys.executable, "-m", "sei_core.cli", "train", str(data), "--out", str(out), "--no-progress",
            "--seed", str(seed)]
    for k, v in {**tiny, "epochs": 1}.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def test_lock_is_taken_before_anything_is_written(tiny_data, tiny_train, tmp_path):
    out = tmp_path / "run"
    holder = Run(out).acquire()  # another process creating the run holds the lock
    try:
        with pytest.raises(RunError, match="being created or trained by another process"):
            init_run(TrainConfig(data=str(tiny_data), **tiny_train), out)
        assert not (out / "config.json").exists() and not (out / "status.json").exists()
    finally:
        Run.release(holder)
    init_run(TrainConfig(data=str(tiny_data), **tiny_train), out)  # free again: creates it
    assert Run(out).exists()


@pytest.mark.slow  # trains in another process (interpreter, torch and training each time)
def test_two_trains_on_one_out_started_at_once(tiny_data, tiny_train, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs = {seed: subprocess.Popen(_train_cmd(tiny_data, out, seed, tiny_train), env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for seed in (11, 22)}
    results = {seed: (p.wait(timeout=300), p.stderr.read()) for seed, p in procs.items()}
    for p in procs.values():
        p.stdout.close()
        p.stderr.close()
    winners = [s for s, (rc, _) in results.items() if rc == 0]
    losers = [s for s, (rc, _) in results.items() if rc != 0]
    assert len(winners) == 1 and len(losers) == 1, results
    rc, err = results[losers[0]]
    assert rc == 1 and "sei: error:" in err and "Traceback" not in err
    assert ("already holds a run" in err) or ("being created or trained by another process" in err)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == winners[0]  # the loser wrote nothing over the winner's config
    assert Run(out).status()["state"] == "finished"


@pytest.mark.slow  # trains in another process (interpreter, torch and training each time)
def test_background_run_writes_each_log_line_once(tiny_data, tiny_train, tmp_path):
    run = jobs.start(TrainConfig(data=str(tiny_data), **{**tiny_train, "epochs": 1}), tmp_path / "bg")
    deadline = time.monotonic() + 240
    while run.status()["state"] not in ("finished", "failed", "interrupted"):
        assert time.monotonic() < deadline, "background training did not finish"
        time.sleep(0.2)
    while run.is_locked() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run.status()["state"] == "finished", run.status()
    lines = [ln for ln in run.log_file.read_text().splitlines() if ln.strip()]
    starting = [ln for ln in lines if "starting run" in ln or "resuming run" in ln]
    assert len(starting) == 1, lines
    finished = [ln for ln in lines if "scores written to scores.csv" in ln]
    assert len(finished) == 1, lines
    bare = [ln.split("] ", 1)[1] for ln in lines if ln.startswith("[") and "] " in ln]
    assert not set(bare) & set(lines), "a line was written both with and without its time stamp"


def test_a_checkpoint_write_still_running_is_not_waited_for(tmp_path):
    """A slow disk never stalls training: while a checkpoint is being written, the next
    epoch's is skipped (nothing copied), and the file always holds a complete checkpoint."""
    import threading

    import torch

    from sei_core.files import atomic_write
    from sei_core.train import CheckpointWriter

    release = threading.Event()

    def slow_save(path, state):
        release.wait(timeout=30)  # the disk is busy until the test lets it go
        atomic_write(path, lambda f: torch.save(state, f))

    ckpt = tmp_path / "checkpoint.pt"
    saver = CheckpointWriter(slow_save)
    assert saver.submit(ckpt, {"epoch": 1, "w": torch.ones(3)})
    # had it waited for the blocked write, it would return True after the 30 s timeout
    assert not saver.submit(ckpt, {"epoch": 2, "w": torch.full((3,), 2.0)})
    assert not ckpt.exists()  # the first write is still held
    release.set()
    saver.wait()
    assert torch.load(ckpt)["epoch"] == 1
    assert saver.submit(ckpt, {"epoch": 3, "w": torch.full((3,), 3.0)})
    saver.close()
    saver.wait()
    assert torch.load(ckpt)["epoch"] == 3 and (saver.written, saver.skipped) == (2, 1)


def test_a_failed_checkpoint_write_is_raised_in_training(tmp_path):
    from sei_core.train import CheckpointWriter

    def broken(path, state):
        raise OSError("No space left on device")

    saver = CheckpointWriter(broken)
    saver.submit(tmp_path / "c.pt", {"epoch": 1})
    saver.close()
    with pytest.raises(OSError, match="No space left"):
        saver.wait()


def test_a_duration_is_said_to_the_second():
    assert duration_text(5.4) == "5 s" and duration_text(125) == "2 min 05 s"
    assert duration_text(3600 + 5 * 60 + 59.6) == "1 h 06 min"
    assert duration_text(None) == "—" and duration_text(None, "?") == "?"


def test_each_transition_writes_its_state_and_what_goes_with_it(tmp_path):
    from sei_core.runs import STATES, State

    assert STATES == ("created", "running", "finished", "failed", "stopped", "interrupted", "missing")
    assert all(State(s) == s for s in STATES)  # the strings status.json holds and the app reads
    run = Run(tmp_path / "run")
    assert run.state() == State.MISSING and not run.state().resumable
    run.write_config({"epochs": 2})
    st = run.mark_created(epochs=2, n_runs=2)
    assert (st["state"], st["phase"], st["epochs"]) == ("created", "waiting to start", 2) and "error" not in st
    fd = run.acquire()
    try:
        st = run.mark_running(pid=os.getpid())
        assert (st["state"], st["error"], st["pid"]) == ("running", None, os.getpid()) and st["started_at"]
        st = run.mark_failed("out of memory", eta_seconds=None)
        assert (st["state"], st["error"], st["eta_seconds"]) == ("failed", "out of memory", None)
        st = run.mark_stopped(error=None)
        assert (st["state"], st["phase"], st["error"]) == ("stopped", "stopped", None)
        st = run.mark_finished(epochs=2)
        assert (st["state"], st["phase"], st["eta_seconds"], st["epochs"]) == ("finished", "finished", 0, 2)
        assert st["finished_at"]
        run.mark_running()
        assert run.status()["state"] == "running"
    finally:
        Run.release(fd)
    assert run.status()["state"] == "interrupted"  # running, and nobody holds the lock
    assert run.state() == State.INTERRUPTED and run.state().resumable and not run.state().active
    assert json.loads((run.path / "status.json").read_text())["state"] == "running"
    run.update_status(state="paused")  # a foreign tool's word: read as a failure that says so
    assert run.state() == State.FAILED and "unknown state 'paused'" in run.status()["error"]


def test_the_auxiliary_samples_are_kept_where_they_are_read(tmp_path):
    import numpy as np

    run = Run(tmp_path / "run")
    run.write_aux(2, np.array([5, 1, 3]))
    assert run.aux_file(2) == run.sub_run(2) / "aux.npy"
    assert run.aux_indices(2).tolist() == [5, 1, 3]


@pytest.mark.slow  # builds two models: about 4 s
def test_a_checkpoint_restores_the_training_state_it_was_written_from(tmp_path):
    import torch

    from sei_core.train import TrainingState, run_seed

    cfg = TrainConfig(data="unused", model="SEI-Tiny-RN", image_size=32, epochs=4, lr=0.02)
    cpu = torch.device("cpu")
    a = TrainingState.build(cfg, ["a", "b", "c"], 1, cpu)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    torch.nn.functional.cross_entropy(a.model(x), y).backward()
    a.opt.step()
    a.sched.step()
    torch.randperm(10, generator=a.order_gen)
    torch.save(a.checkpoint(1, [{"run": 1, "epoch": 1}]), tmp_path / "checkpoint.pt")
    b = TrainingState.build(cfg, ["a", "b", "c"], 2, cpu)  # another seed: every part differs until restored
    assert run_seed(cfg.seed, 2) == cfg.seed * 1000 + 2
    assert not torch.equal(a.order_gen.get_state(), b.order_gen.get_state())
    assert b.restore(tmp_path / "checkpoint.pt") == (1, [{"run": 1, "epoch": 1}])
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(p, q)
    assert torch.equal(a.order_gen.get_state(), b.order_gen.get_state())
    assert torch.equal(a.aug_gen.get_state(), b.aug_gen.get_state())
    assert b.sched.state_dict() == a.sched.state_dict()
    sa, sb = a.opt.state_dict()["state"], b.opt.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["momentum_buffer"], sb[i]["momentum_buffer"]) for i in sa)
    weights, epoch = TrainingState.read_model(tmp_path / "checkpoint.pt")
    assert epoch == 1 and weights.keys() == a.model.state_dict().keys()

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

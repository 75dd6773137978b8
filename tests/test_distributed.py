"""Training with several processes under torchrun (gloo on CPU), killed and resumed.

SEI-Tiny-ViT (LayerNorm, no BatchNorm) is used so that one process and two can be compared
tightly: every sample gets the same augmentation and gradient weight in both (see
``Stepper``), and what remains is the order of floating-point sums (the gradient all-reduce
adds two half-batch gradients instead of one full batch). With BatchNorm models on CPU the
two also differ by the per-process batch statistics (SyncBatchNorm is used on CUDA only).
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from sei_core.jobs import descendants
from sei_core.records import RecordStore
from sei_core.ranking import score_run
from sei_core.runs import Run
from sei_core.config import TrainConfig
from sei_core.train import train

#: several training processes each (torchrun, torch.multiprocessing): costly
pytestmark = pytest.mark.slow

DIST = dict(model="SEI-Tiny-ViT", image_size=32, epochs=3, batch_size=16, lr=0.02, workers=2, device="cpu", seed=3)
#: scores of two processes and of one agree to this (measured: 1e-6; float summation order)
TOLERANCE = 1e-4


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _opts():
    args = ["--no-progress"]
    for k, v in DIST.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def test_two_processes_killed_resumed_agree_with_one(tiny_data, tmp_path):
    single = tmp_path / "single"
    train(TrainConfig(data=str(tiny_data), **DIST), single, progress_bar=False, log=lambda m: None)

    out = tmp_path / "two"
    # torchrun as a user starts it by hand (the multi-node form, here on one machine)
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             "-m", "sei_core.cli", "train", str(tiny_data), "--out", str(out), *_opts()],
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(RecordStore(out / "run1" / "records").epochs()) < 2:
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.05)
    victims = descendants(proc.pid)  # torchrun puts each training process in a session of its own
    assert len(victims) >= 2
    for pid in [proc.pid, *victims]:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while Run(out).is_locked() and time.monotonic() < deadline:  # the kernel frees the lock on exit
        time.sleep(0.05)
    run = Run(out)
    assert run.status()["state"] == "interrupted" and run.status()["world_size"] == 2
    assert run.config()["nproc_per_node"] == 2

    # `sei resume` starts torchrun with the run's two processes again
    res = subprocess.run([sys.executable, "-m", "sei_core.cli", "resume", str(out), "--no-progress"],
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("samples flagged as likely mislabeled") == 1  # one report, not one per process
    st = run.status()
    assert st["state"] == "finished" and st["world_size"] == 2
    log = run.log_file.read_text()
    assert "with 2 processes" in log and "resuming after epoch" in log

    # complete: every sample scored exactly once, every epoch recorded
    for r in (1, 2):
        assert run.records(r).epochs() == [1, 2, 3]
    table = pd.read_csv(out / "scores.csv")
    assert len(table) == 48 and table["path"].is_unique and table["sei"].notna().all()
    a, b = score_run(Run(single)), score_run(run)
    assert a.ids == b.ids
    np.testing.assert_allclose(b.score, a.score, rtol=0, atol=TOLERANCE)
    near = np.abs(a.score - a.threshold) < TOLERANCE
    assert np.array_equal(a.flagged[~near], b.flagged[~near])
    ra, rb = Run(single).records(1).load(), run.records(1).load()
    np.testing.assert_allclose(rb["entropy"], ra["entropy"], atol=TOLERANCE)


def _reduce_worker(rank: int, world: int, port: int, results) -> None:
    import torch
    import torch.distributed as dist

    from sei_core.records import Recorder

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        logits, targets = torch.randn(10, 3), torch.randint(0, 3, (10,))
        rec = Recorder(10, 3)
        rec.update(torch.full((10, 3), 99.0), targets, torch.arange(10))  # a stale epoch, reset below
        rec.reset()
        for overlap in (False, True):
            mine = torch.arange(rank, 10, world)  # each process owns every other sample
            if overlap and rank == 1:
                mine = torch.cat([mine, torch.tensor([0])])  # like DistributedSampler padding
            rec.update(logits[mine], targets[mine], mine)
            try:
                rec.reduce()
                stats, probs = rec.finalize()
                results[(rank, overlap)] = ("ok", np.allclose(rec.logits.numpy(), logits.numpy()), probs.shape)
            except RuntimeError as e:
                results[(rank, overlap)] = ("error", str(e), None)
    finally:
        dist.destroy_process_group()


def test_recorder_reduce_gathers_each_sample_exactly_once():
    import socket

    import torch.multiprocessing as tmp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = tmp.Manager().dict()
    tmp.spawn(_reduce_worker, args=(2, port, results), nprocs=2)
    for rank in (0, 1):
        assert results[(rank, False)] == ("ok", True, (10, 3))  # gathered, stale rows gone
        kind, msg, _ = results[(rank, True)]
        assert kind == "error" and "more than one process" in msg  # a padded duplicate is refused

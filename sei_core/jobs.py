"""Training as a background OS process that outlives the app that started it.

The app (or anyone) calls :func:`start` to launch ``python -m sei_core.cli resume RUN`` in its
own session, detached from the caller; progress is read from the run directory, so page
reloads, closed browsers and restarted servers lose nothing. :func:`stop` asks the process
to stop at once (SIGTERM); the run keeps its last complete epoch and can be resumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .config import TrainConfig
from .runs import Run, RunError, State
from .train import init_run


def _launch(run: Run) -> int:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(run.log_file, "a", encoding="utf-8") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sei_core.cli", "resume", str(run.path), "--no-progress"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, cwd=Path.cwd(),
        )
    run.update_status(pid=proc.pid, launched_at=time.time())
    return proc.pid


def start(config: TrainConfig, out: str | Path) -> Run:
    """Create a run and train it in a background process; returns at once."""
    run = init_run(config, out)
    _launch(run)
    return run


def resume(run: Run | str | Path) -> Run:
    """Continue a stopped, interrupted or failed run in a background process."""
    run = run if isinstance(run, Run) else Run(run)
    if run.is_locked():
        raise RunError(f"{run.path} is already training")
    if run.state() == State.FINISHED:
        raise RunError(f"{run.path} has already finished")
    run.mark_created(error=None)
    _launch(run)
    return run


def stop(run: Run | str | Path, timeout: float = 10.0) -> bool:
    """Stop a running training process; True if it was running and has stopped."""
    run = run if isinstance(run, Run) else Run(run)
    pid = run.locked_pid() if run.is_locked() else None
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and run.is_locked():
        time.sleep(0.1)
    if run.is_locked():  # did not react in time (e.g. stuck in a long native call)
        os.kill(pid, signal.SIGKILL)
        while run.is_locked() and time.monotonic() < deadline + 5:
            time.sleep(0.1)
        run.mark_stopped()
    return True


def descendants(pid: int) -> list[int]:
    """Every process started, directly or not, by ``pid`` (Linux ``/proc``; empty elsewhere):
    a torchrun job's training processes, say, which run in sessions of their own."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out

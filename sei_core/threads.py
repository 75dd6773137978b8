"""How this library's processes wait for CPU threads: one policy, set before PyTorch loads.

PyTorch's CPU kernels run on OpenMP threads (GNU ``libgomp`` in the Linux wheels). By
default a thread that finishes its share of a parallel region *spins* (busy-waits, about
300,000 polls) for the others before it sleeps. On an idle machine that saves a wake-up; on
a busy one the thread still working has been descheduled, so the spinning thread burns a
core the working thread needs, and the CPU time of a training grows with the load: the
cpu-demo preset, 2 × 3 epochs on the sample data with two threads on two cores, took 346 s
wall and 133 s CPU beside other work (load 6-9) against 44 s and 25 s with passive
waiting, to the same losses (``benchmarks/busy_machine.py``, docs/benchmarks.md).

:data:`OPENMP_DEFAULTS` is therefore applied to the environment when ``sei_core`` is
imported (``sei_core/__init__.py``): ``OMP_WAIT_POLICY=PASSIVE``, waiting threads sleep at
once. It only fills variables the user has not set (``OMP_WAIT_POLICY=ACTIVE sei train …``
still spins), it does not change the number of threads (which changes the order of
floating-point sums, so results), and OpenMP reads it when its library loads: it takes
effect in every process that imports ``sei_core`` before ``torch`` — the ``sei`` commands,
the app's training processes (``sei_core.jobs``), torchrun workers and ``sei bench`` —
and in the processes they start, which inherit the environment. A program that imports
``torch`` first keeps OpenMP's default; set the variable before starting it.
"""

from __future__ import annotations

import os
from typing import MutableMapping

#: environment variables read by the OpenMP runtime at load time, and this library's values
OPENMP_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set every :data:`OPENMP_DEFAULTS` variable that ``environ`` lacks; returns those set."""
    added = {k: v for k, v in OPENMP_DEFAULTS.items() if k not in environ}
    environ.update(added)
    return added

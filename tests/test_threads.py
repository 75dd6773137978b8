"""The OpenMP waiting policy of this library's processes (sei_core.threads)."""

import os
import subprocess
import sys
from pathlib import Path

from sei_core import threads

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_fill_only_what_the_user_left_unset():
    env = {"OMP_WAIT_POLICY": "ACTIVE", "OTHER": "1"}
    assert threads.apply_defaults(env) == {}
    assert env == {"OMP_WAIT_POLICY": "ACTIVE", "OTHER": "1"}
    env = {"OTHER": "1"}
    assert threads.apply_defaults(env) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert env == {"OTHER": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _policy_after_import(**extra) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(extra, PYTHONPATH=str(ROOT))
    code = ("import sys, sei_core, os; assert 'torch' not in sys.modules; "
            "print(os.environ.get('OMP_WAIT_POLICY'))")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_sei_core_sets_passive_waiting_before_torch_loads():
    """A process that imports sei_core first (every ``sei`` command, the app's training
    process, torchrun workers) has the policy in its environment before torch is imported,
    and passes it on to the processes it starts; a user's own value is kept."""
    assert _policy_after_import() == "PASSIVE"
    assert _policy_after_import(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"

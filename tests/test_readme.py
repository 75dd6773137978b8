"""Every `sei` command in README.md's bash blocks runs as written and succeeds.

The commands are read from the README itself, so the test follows it when it changes. Each
runs as ``python -m sei_core.cli …`` in its own process, in README order, in one temporary
working directory (so ``runs/first``, ``bench/pilot`` and ``flags.csv`` land there), offline,
with an empty weights folder. The only substitution is :data:`PLACEHOLDERS`; a README line
with any other capitalised placeholder (``NAME``, ``N`` …) fails here: write a runnable
example instead. Lines that are not `sei` commands (the install line with `streamlit run`,
`pytest`) are not run — the app has its own tests.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: README placeholder → what the test puts in its place ({data}: the tiny generated label file)
PLACEHOLDERS = {"DATA": "{data}", "TEST": "{test}"}
#: commands that train (seconds to a minute each): marked slow
TRAINING = {"train", "status", "flags", "resume", "stop", "demo", "bench", "evaluate"}
# not training, but each starts a process that imports torch and open_clip (5-7 s on 2 cores)
COSTLY = TRAINING | {"models", "weights"}


def readme_commands() -> list[str]:
    """The `sei …` commands of README.md's bash blocks, one per entry (``a; b`` gives two)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():  # a trailing backslash continues the line
            for part in line.split(";"):
                words = shlex.split(part, comments=True)
                if words and words[0] == "sei":
                    commands.append(" ".join(shlex.quote(w) for w in words))
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_the_documented_commands():
    names = {shlex.split(c)[1] for c in COMMANDS}
    assert {"validate", "train", "status", "flags", "resume", "stop", "demo", "models", "weights",
            "bench"} <= names


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_data):
    from sample_data.make_sample_data import generate

    d = tmp_path_factory.mktemp("readme")
    test = generate(d / "heldout", n_per_class=4, image_size=32, noise_rate=0.0, seed=9)  # images no run trains on
    return d, {"data": str(tiny_data), "test": str(test)}


@pytest.mark.parametrize("command", [
    pytest.param(c, marks=[pytest.mark.slow] if shlex.split(c)[1] in COSTLY else [], id=c) for c in COMMANDS])
def test_readme_command_runs_as_written(command, workdir):
    cwd, values = workdir
    words = shlex.split(command)[1:]
    args = [PLACEHOLDERS[w].format(**values) if w in PLACEHOLDERS else w for w in words]
    leftover = [w for w in args if re.fullmatch(r"[A-Z][A-Z_]*", w)]
    assert not leftover, f"placeholder(s) {leftover} in README command {command!r}: add to PLACEHOLDERS"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "SEI_WEIGHTS_DIR": str(cwd / "weights"),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sei_core.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"`{command}` failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    if words[0] == "train" and "--background" not in words and "--from-review" not in words:  # a retrain: the parent's
        assert "found no GPU" in proc.stderr or "found a" in proc.stderr  # it says what it chose and why
        assert "estimated training time" in proc.stderr
    if words[0] == "demo":
        assert "flagged" in proc.stdout and "given_label" in proc.stdout  # the summary and the table
    if words[0] == "flags" and "--out" in words:
        assert (cwd / words[words.index("--out") + 1]).is_file()

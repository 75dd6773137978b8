"""benchmarks/gpu_check.py runs end to end (on the CPU, with small settings) and writes its page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_and_writes_its_table(tmp_path):
    doc = tmp_path / "gpu.md"
    doc.write_text("# Page\n\nBefore.\n\n<!-- gpu_check: begin -->\nold table\n<!-- gpu_check: end -->\n\nAfter.\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--model", "SEI-Tiny-RN",
         "--image-size", "32", "--n", "64", "--batch-size", "16", "--epochs", "1", "--workers", "1",
         "--write-doc", str(doc)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "recorder overhead (ram)" in proc.stdout and "recorder overhead (memmap)" in proc.stdout
    table = [ln for ln in doc.read_text().splitlines() if ln.startswith("| ram") or ln.startswith("| memmap")]
    assert len(table) == 4  # two feeds, with and without recording
    assert all(float(ln.split("|")[3]) > 0 for ln in table)  # images/s measured
    text = doc.read_text()  # the measured section replaced, the rest of the page kept
    assert text.startswith("# Page\n\nBefore.\n") and text.endswith("\n\nAfter.\n") and "old table" not in text

"""Which small model for a CPU? Detection F1 per CPU-minute of a few candidate settings.

Makes a stratified subset of a labelled data set with seeded symmetric label noise (truth
file beside it), then trains each candidate with ``sei train`` in its own process — the
first candidate, ``default``, is ``sei train DATA --out RUN`` with no options, the setting a
new user gets on this machine — and prints, side by side: wall time, CPU time of the
training process, and the F1 of the flags of the app's ranking method and of SEI against
the injected noise.

    OMP_NUM_THREADS=2 nice -n 10 python benchmarks/cpu_models.py \\
        --data ../shared/data/derm-ham10000/labels.csv --n 1400 --rate 0.2 --out /tmp/cpu-models

Re-running skips candidates whose run has finished (delete the folder to measure again).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sei_core.bench import noise  # noqa: E402
from sei_core.labels import truth_columns, truth_for  # noqa: E402
from sei_core.bench import stratified_subset  # noqa: E402
from sei_core.metrics import auroc, precision_recall_f1  # noqa: E402
from sei_core.methods import DEFAULT_METHOD  # noqa: E402
from sei_core.ranking import score_run  # noqa: E402
from sei_core.runs import Run, State  # noqa: E402

#: name → `sei train` options (``default``: none at all; on a CPU the ``cpu`` preset,
#: SEI-Tiny-RN at 32 px for 20 epochs, batch 64, lr 0.02)
CANDIDATES = {
    "default": [],
    "tiny-rn-32px-40ep": ["--model", "SEI-Tiny-RN", "--image-size", "32", "--epochs", "40", "--batch-size", "64",
                          "--lr", "0.02"],
    "tiny-rn-64px-20ep": ["--model", "SEI-Tiny-RN", "--image-size", "64", "--epochs", "20", "--batch-size", "64",
                          "--lr", "0.02"],
    "resnet18-64px-20ep": ["--model", "resnet18", "--image-size", "64", "--epochs", "20", "--batch-size", "64",
                           "--lr", "0.02"],
}


def make_noisy_subset(data: Path, n: int, rate: float, seed: int, out: Path) -> Path:
    """A stratified ``n``-image subset of ``data`` with ``rate`` symmetric noise: labels.csv, truth.csv."""
    labels_csv = out / "labels.csv"
    if labels_csv.is_file():
        return labels_csv
    table = noise.read_label_table(data)
    table["path"] = [str((data.parent / p).resolve()) for p in table["path"]]
    classes = sorted(table["label"].astype(str).unique())
    y = np.array([classes.index(c) for c in table["label"].astype(str)])
    keep = np.sort(stratified_subset(y, n, seed=seed))
    table = table.iloc[keep].reset_index(drop=True)
    noisy = noise.symmetric_noise(y[keep], len(classes), rate, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    noise.write_noisy_label_file(table, [classes[k] for k in noisy], labels_csv, out / "truth.csv")
    return labels_csv


def measure(name: str, options: list[str], labels: Path, out: Path) -> dict:
    run_dir = out / "runs" / name
    row = {"candidate": name, "options": " ".join(options) or "(none)"}
    if not (Run(run_dir).exists() and Run(run_dir).state() == State.FINISHED):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "sei_core.cli", "train", str(labels), "--out", str(run_dir), "--no-progress",
               *options]
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode:
            return {**row, "error": proc.stderr.strip().splitlines()[-1]}
        (run_dir / "measured.txt").write_text(
            f"{time.monotonic() - t0:.1f} {after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime:.1f}\n")
    wall, cpu = (float(x) for x in (run_dir / "measured.txt").read_text().split())
    cfg = Run(run_dir).config()
    s = score_run(Run(run_dir))
    truth_csv = labels.parent / "truth.csv"
    is_noisy = truth_for(s.ids, truth_columns(truth_csv), truth_csv)
    prf = precision_recall_f1(s.flagged, is_noisy)
    f1, f1_sei = prf["f1"], precision_recall_f1(s.sei_flagged, is_noisy)["f1"]
    scored = ~np.isnan(s.score)
    return {**row, "model": cfg["model"], "px": cfg["image_size"], "epochs": cfg["epochs"],
            "wall_min": wall / 60, "cpu_min": cpu / 60, f"f1_{DEFAULT_METHOD}": f1,
            "precision": prf["precision"], "recall": prf["recall"],
            "auroc": auroc(s.score[scored], is_noisy[scored]), "f1_sei": f1_sei,
            "f1_per_cpu_min": f1 / (cpu / 60)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a label CSV")
    ap.add_argument("--n", type=int, default=1400)
    ap.add_argument("--rate", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    a = ap.parse_args()
    labels = make_noisy_subset(a.data.resolve(), a.n, a.rate, a.seed, a.out)
    rows = []
    for name in a.candidates:
        rows.append(measure(name, CANDIDATES[name], labels, a.out))
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
        print(flush=True)


if __name__ == "__main__":
    main()

"""Records at scale: bytes on disk per sample-epoch, and `sei flags` time and peak memory.

For each N it writes a valid synthetic run directory with the project's own writers (``Run``,
``RecordStore.write_epoch``; K classes plus the auxiliary class, T epochs, R complementary
runs, 15 % of the labels wrong, learning curves in which the clean samples are learned early
and the wrong labels memorised late), then runs ``sei flags RUN --out FILE`` as a child
process and reads its wall time and peak resident memory (``os.wait4``'s rusage).

``--baseline SRC`` measures a second source tree the same way in the same run (for instance
the previous version: ``git archive <rev> | tar -x -C /tmp/old``): this script runs itself
with ``PYTHONPATH=SRC``, so the run directory is written by that version's record store and
flagged by that version's CLI. Only APIs both versions have are used.

    python benchmarks/scale.py --sizes 100000 1000000 --baseline /tmp/old --baseline-max 100000

Run directories are deleted after each measurement unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _epoch_stats(rng, t: int, n_epochs: int, target: np.ndarray, true: np.ndarray, speed: np.ndarray,
                 k_out: int):
    """Synthetic statistics of epoch ``t`` (0-based) and its (N, K') probabilities."""
    from sei_core.scores import EpochStatistics

    n = len(target)
    progress = (t + 1) / n_epochs
    wrong = target != true
    # clean samples: p(target) rises early; wrong labels stay low until memorised late
    logit = np.where(wrong, 8.0 * (progress - 0.75), 6.0 * (progress * speed - 0.2))
    logit = logit + rng.normal(0.0, 0.7, n)
    p = (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    rest = (1.0 - p) / (k_out - 1)
    probs = np.repeat(rest[:, None], k_out, axis=1)
    probs[np.arange(n), target] = p
    # where a wrong label is not yet memorised, the true class takes most of the rest
    lift = np.where(wrong, 0.8 * (1.0 - p), 0.0).astype(np.float32)
    probs[np.arange(n), true] += lift
    probs /= probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    h = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)
    p_label = probs[np.arange(n), target]
    others = probs.copy()
    others[np.arange(n), target] = 0
    margin = np.log(np.clip(p_label, 1e-12, None)) - np.log(np.clip(others.max(axis=1), 1e-12, None))
    stats = EpochStatistics(
        signed_entropy=np.where(pred == target, h, -h).astype(np.float32), entropy=h.astype(np.float32),
        prediction=pred.astype(np.int16), p_label=p_label.astype(np.float32), margin=margin.astype(np.float32))
    return stats, probs


def make_run(path: Path, n: int, n_epochs: int, n_runs: int, k: int, noise: float = 0.15, seed: int = 0) -> None:
    """A synthetic run directory of ``n`` samples written with the project's own writers."""
    from sei_core.runs import Run
    from sei_core.scores import choose_aux_sets

    rng = np.random.default_rng(seed)
    classes = [f"class{c}" for c in range(k)]
    true = rng.integers(0, k, n)
    given = true.copy()
    flip = rng.random(n) < noise
    given[flip] = (true[flip] + rng.integers(1, k, int(flip.sum()))) % k
    run = Run(path)
    run.write_config({"data": "synthetic", "classes": classes, "runs": n_runs, "epochs": n_epochs,
                      "keep_probs": 5})
    run.write_samples([f"images/{i:07d}.png" for i in range(n)], [classes[c] for c in given])
    speed = rng.uniform(0.6, 1.6, n)
    for r, aux in enumerate(choose_aux_sets(n, k, n_runs, seed=seed), 1):
        run.write_aux(r, aux)
        target, truth = given.copy(), true.copy()
        target[aux] = truth[aux] = k  # the auxiliary class: a clean label, learned more slowly
        speed_r = np.where(np.isin(np.arange(n), aux), 0.7 * speed, speed)
        store = run.records(r, 5)
        for t in range(n_epochs):
            stats, probs = _epoch_stats(rng, t, n_epochs, target, truth, speed_r, k + 1)
            store.write_epoch(t + 1, stats, probs, loss=0.0, accuracy=0.0)
        (run.sub_run(r) / "done").write_text("synthetic")
    run.update_status(state="finished", epoch=n_epochs, epochs=n_epochs, n_runs=n_runs)


_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import sei_core.cli as cli
t1 = time.perf_counter()
rc = cli.main(["flags", sys.argv[1], "--out", sys.argv[2]])
print(json.dumps({"import_s": t1 - t0, "work_s": time.perf_counter() - t1, "rc": rc}))
"""


def _flags(run: Path, src: Path) -> dict:
    """``sei flags RUN --out FILE`` in a child process: its wall and CPU seconds, the part
    spent after importing the CLI, its peak RSS (GB, ``os.wait4``) and the rows written."""
    out = run / "flags.csv"
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    with open(run / "flags.out", "w+") as fo, open(run / "flags.err", "w+") as fe:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(run), str(out)], env=env, stdout=fo, stderr=fe)
        _, _, usage = os.wait4(proc.pid, 0)  # reaps the child and gives its own rusage
        seconds = time.perf_counter() - t0
        proc.returncode = 0
        fo.seek(0)
        fe.seek(0)
        stdout, stderr = fo.read(), fe.read()
    try:
        inner = json.loads(stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"sei flags failed: {stderr[-2000:]}") from None
    if inner["rc"] != 0:
        raise RuntimeError(f"sei flags failed: {stderr[-2000:]}")
    return {"flags_s": seconds, "flags_cpu_s": usage.ru_utime + usage.ru_stime,
            "flags_work_s": inner["work_s"], "flags_peak_gb": usage.ru_maxrss / 1024 ** 2,
            "flagged": sum(1 for _ in open(out)) - 1}


def import_floor(src: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of importing the CLI alone (Python, NumPy, torch …)."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", "import sei_core.cli"], env=env)
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t0, usage.ru_maxrss / 1024 ** 2


def measure(n: int, n_epochs: int, n_runs: int, k: int, src: Path, work: Path, keep: bool) -> dict:
    """Write one run directory with the record store on the path, measure it, delete it."""
    path = work / f"scale_{n}"
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    make_run(path, n, n_epochs, n_runs, k)
    write_s = time.perf_counter() - t0
    total = cols = 0
    for r in range(1, n_runs + 1):
        for f in (path / f"run{r}" / "records").iterdir():
            size = min(f.stat().st_size, f.stat().st_blocks * 512)
            total += size
            cols += 0 if f.name.startswith("probs_") else size
    flags = _flags(path, src)
    if not keep:
        shutil.rmtree(path, ignore_errors=True)
    cells = n * n_epochs * n_runs
    return {"n": n, "epochs": n_epochs, "runs": n_runs, "write_s": write_s, "records_bytes": total,
            "bytes_per_sample_epoch": total / cells, "column_bytes_per_sample_epoch": cols / cells,
            **flags}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--baseline", type=Path, help="another source tree to measure the same way")
    ap.add_argument("--baseline-max", type=int, default=100_000, help="largest N for the baseline")
    ap.add_argument("--dir", type=Path, default=None, help="where to write run directories (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    work = a.dir or Path(tempfile.mkdtemp(prefix="sei-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    src = Path(os.environ.get("SEI_SCALE_SRC", ROOT))
    if a.worker:  # one measurement under the source tree on PYTHONPATH, as a JSON line
        for n in a.sizes:
            print(json.dumps(measure(n, a.epochs, a.runs, a.classes, src, work, a.keep)), flush=True)
        return 0
    rows = []
    for n in a.sizes:
        variants = [("this tree", ROOT)]
        if a.baseline and n <= a.baseline_max:
            variants.insert(0, ("baseline", a.baseline))
        for name, tree in variants:
            env = {**os.environ, "PYTHONPATH": str(tree), "SEI_SCALE_SRC": str(tree)}
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--sizes", str(n),
                   "--epochs", str(a.epochs), "--runs", str(a.runs), "--classes", str(a.classes),
                   "--dir", str(work)] + (["--keep"] if a.keep else [])
            out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
            row = {"records": name, **json.loads(out.strip().splitlines()[-1])}
            rows.append(row)
            print(f"{name:9s} N={n:>9,}: {row['bytes_per_sample_epoch']:.2f} B/sample-epoch, flags "
                  f"{row['flags_s']:.1f} s ({row['flags_work_s']:.1f} s after import) / {row['flags_peak_gb']:.2f} GB",
                  file=sys.stderr, flush=True)
    if not a.keep and a.dir is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{a.epochs} epochs, {a.runs} complementary runs, K = {a.classes} classes + auxiliary; "
          f"`sei flags RUN --out FILE` as a child process\n")
    floor_s, floor_gb = import_floor(ROOT)
    print(f"Importing the CLI alone (torch included) takes {floor_s:.1f} s and {floor_gb:.2f} GB; "
          f"both are inside the `sei flags` wall time and peak RSS (\"after import\" leaves it out).\n")
    print(f"Load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n")
    print("| records | N | on disk | bytes / sample-epoch (columns only) | `sei flags` wall | CPU | "
          "after import | peak RSS | flagged |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['records']} | {r['n']:,} | {r['records_bytes'] / 1e9:.2f} GB | "
              f"{r['bytes_per_sample_epoch']:.2f} ({r['column_bytes_per_sample_epoch']:.2f}) | "
              f"{r['flags_s']:.1f} s | {r['flags_cpu_s']:.1f} s | {r['flags_work_s']:.1f} s | "
              f"{r['flags_peak_gb']:.2f} GB | {r['flagged']:,} |")
    base = {r["n"]: r for r in rows if r["records"] == "baseline"}
    for r in rows:
        b = base.get(r["n"])
        if b and r["records"] != "baseline":
            print(f"\nN = {r['n']:,}: {b['bytes_per_sample_epoch'] / r['bytes_per_sample_epoch']:.1f}× fewer bytes, "
                  f"`sei flags` {b['flags_cpu_s'] / r['flags_cpu_s']:.1f}× less CPU time "
                  f"({b['flags_work_s'] / r['flags_work_s']:.1f}× after the import) with "
                  f"{b['flags_peak_gb'] / r['flags_peak_gb']:.1f}× less peak memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())

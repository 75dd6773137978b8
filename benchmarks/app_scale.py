"""How the app's pages scale with the number of images: time, memory and bytes sent per page.

For each N it writes a valid data set and run directory with the project's own writers
(``sei_core.runs.Run``, ``RecordStore.write_epoch``): N images in K classes (one tiny PNG,
hard-linked N times, so the data set opens like a real one), 15 % of the labels wrong,
two complementary runs of T epochs whose synthetic logits learn the true class and
memorise a wrong label late. Then it drives the app with Streamlit's AppTest, in this
process, and prints one table:

- Data page: first load (reads and checks the N-row label file),
- Explore and Review: first load and a rerun with nothing changed; on Explore also the
  class filter set to one class and the score switched to the paper's SEI,
- one review decision and the next image (a click on "Confirm label"),
- the process's memory (resident now, and its peak),
- the CPU time of the first loads (the machine may be shared: wall times then grow, CPU times
  much less) and the load average while the pages ran,
- bytes sent per page, approximated by the size of the element protobufs AppTest received.

    python benchmarks/app_scale.py --n 10000 100000 [--epochs 150] [--keep DIR]

Generating 1M samples writes ~2.3 GB and takes about six minutes; check ``free -g`` first and
use nice. The run is finished as training finishes one (``sei_core.score_cache.write_finished``:
``scores.csv`` and the scored cache the pages open), so the pages' first loads are what a user
sees after training. Importing the app's modules (torch among them) is timed apart: a server
pays it once when it starts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app_server import loadavg  # noqa: E402  (benchmarks/)
from sei_core.runs import Run  # noqa: E402
from sei_core.score_cache import scored, write_finished  # noqa: E402
from sei_core.scores import choose_aux_sets, epoch_statistics, softmax  # noqa: E402

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def make_data(folder: Path, n: int, k: int, noise: float, seed: int) -> tuple[Path, np.ndarray, np.ndarray]:
    """A label file of ``n`` rows (paths to hard links of one 8×8 PNG) with ``noise`` wrong labels.

    Returns the label file, the true and the given label of every row."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    given = true.copy()
    wrong = rng.random(n) < noise
    given[wrong] = (true[wrong] + rng.integers(1, k, int(wrong.sum()))) % k
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    paths = [f"images/img_{i:07d}.png" for i in range(n)]
    per_file = 50_000  # file systems cap the links to one file (ext4: 65,000)
    for start in range(0, n, per_file):
        one = folder / f"source_{start // per_file}.png"
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(one)
        for p in paths[start:start + per_file]:
            dst = folder / p
            if not dst.exists():
                os.link(one, dst)
    names = np.array(CLASSES[:k] if k <= len(CLASSES) else [f"class_{c}" for c in range(k)])
    labels = folder / "labels.csv"
    # a kept folder starts each benchmark unreviewed: no decision log, no backup of an older file
    shutil.rmtree(folder / ".sei_review", ignore_errors=True)
    (folder / "labels.csv.sei-backup").unlink(missing_ok=True)
    labels.write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in zip(paths, names[given])))
    (folder / "truth.csv").write_text("path,is_noisy\n" + "".join(f"{p},{int(w)}\n" for p, w in zip(paths, wrong)))
    return labels, true, given


def make_run(path: Path, labels_file: Path, true: np.ndarray, given: np.ndarray, k: int, epochs: int,
             seed: int) -> Run:
    """A finished two-run training of ``epochs`` epochs, written epoch by epoch like a real one."""
    n = len(given)
    names = CLASSES[:k] if k <= len(CLASSES) else [f"class_{c}" for c in range(k)]
    run = Run(path)
    run.write_config({"data": str(labels_file), "split": "train", "classes": names, "runs": 2, "epochs": epochs,
                      "keep_probs": 5, "model": "synthetic", "seed": seed})
    import csv  # the sample list as training writes it (id, label, line)
    ids = [r["path"] for r in csv.DictReader(open(labels_file, newline=""))]
    run.write_samples(ids, [names[g] for g in given], rows=np.arange(n))
    rng = np.random.default_rng(seed + 1)
    speed = rng.uniform(0.5, 1.5, n).astype(np.float32)  # how fast each image is learned
    for r, aux in enumerate(choose_aux_sets(n, k, 2, seed=seed), start=1):
        run.write_aux(r, aux)
        target = given.copy()
        target[aux] = k
        store = run.records(r, keep_probs=5)
        rows = np.arange(n)
        for e in range(1, epochs + 1):
            a = np.float32(e / epochs)
            logits = rng.normal(0, 1, (n, k + 1)).astype(np.float32)
            logits[rows, true] += 4 * np.minimum(1, a * speed * 2)  # the true class is learned …
            logits[rows, target] += 7 * max(0.0, float(a) - 0.6)  # … and the given one memorised late
            stats = epoch_statistics(logits, target)
            store.write_epoch(e, stats, softmax(logits).astype(np.float32), loss=1.0, accuracy=0.5)
        run.mark_done(r)
    t0 = time.perf_counter()
    write_finished(run)  # as training does when it finishes: scores.csv and the scored cache
    print(f"  scoring at the end of training (scores.csv and the app's cache): {time.perf_counter() - t0:.1f} s",
          flush=True)
    run.update_status(state="finished", phase="finished", epoch=epochs, epochs=epochs, n_runs=2)
    return run


def sent_bytes(at) -> int:
    """Approximate bytes the page sent: the serialised size of every element in AppTest's tree."""
    total = 0
    stack = [at._tree]
    while stack:
        node = stack.pop()
        proto = getattr(node, "proto", None)
        if proto is not None and hasattr(proto, "ByteSize"):
            total += proto.ByteSize()
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            stack.extend(children.values())
    return total


def rss_mb() -> tuple[float, float]:
    """Resident memory now and at its peak, in MB."""
    now = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            now = int(line.split()[1]) / 1024
    return now, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(step):
    t0 = time.perf_counter()
    at = step()
    dt = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(f"the page failed: {[e.value for e in at.exception]}")
    return dt, at


def import_app() -> float:
    """Import what the app's pages import (torch among it), once per process, and return the
    seconds it took: a server pays it once when it starts, not per page."""
    import importlib

    t0 = time.perf_counter()
    for m in ("pages._common", "sei_core.ranking", "sei_core.score_cache", "sei_core.review", "sei_core.plots"):
        importlib.import_module(m)
    return time.perf_counter() - t0


def drive(runs_dir: Path, labels_file: Path) -> dict:
    from streamlit.testing.v1 import AppTest

    (runs_dir / "recent.json").write_text(json.dumps({"data": [{"path": str(labels_file), "split": "train"}]}))
    os.environ["SEI_RUNS_DIR"] = str(runs_dir)
    out = {}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=1800)
    c0 = time.process_time()
    out["data first"], at = timed(at.run)
    out["data cpu"] = time.process_time() - c0
    out["data bytes"] = sent_bytes(at)
    c0 = time.process_time()
    out["explore first"], at = timed(lambda: at.switch_page("pages/explore.py").run())
    out["explore cpu"] = time.process_time() - c0
    out["explore rerun"], at = timed(at.run)
    out["explore bytes"] = sent_bytes(at)
    out["explore filter"], at = timed(lambda: at.selectbox(key="explore_class").set_value(0).run())
    out["explore sei"], at = timed(lambda: at.radio(key="explore_method").set_value("sei").run())
    c0 = time.process_time()
    out["review first"], at = timed(lambda: at.switch_page("pages/review.py").run())
    out["review cpu"] = time.process_time() - c0
    out["review rerun"], at = timed(at.run)
    at.text_input(key="reviewer").input("Dr. Bench").run()
    steps = []
    for _ in range(5):
        dt, at = timed(lambda: at.button(key="act_confirm").click().run())
        steps.append(dt)
    out["decision + next"] = float(np.median(steps))
    out["review bytes"] = sent_bytes(at)
    out["rss now"], out["rss peak"] = rss_mb()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--classes", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--noise", type=float, default=0.15)
    ap.add_argument("--keep", type=Path, help="write the data and runs here and keep them (default: a temp folder)")
    args = ap.parse_args()
    rows = []
    print(f"importing the app's modules (once per server): {import_app():.1f} s", flush=True)
    for n in args.n:
        base = (args.keep / f"n{n}") if args.keep else Path(tempfile.mkdtemp(prefix=f"app_scale_{n}_"))
        try:
            t0 = time.perf_counter()
            labels_file, true, given = make_data(base / "data", n, args.classes, args.noise, seed=0)
            run_path = base / "runs" / f"synthetic-{n}"
            if not (run_path / "status.json").is_file():
                make_run(run_path, labels_file, true, given, args.classes, args.epochs, seed=0)
            elif not (scored(Run(run_path)).from_cache & scored(Run(run_path), "sei").from_cache):
                print("  the kept run was scored again for the app's cache (as training's end does)", flush=True)
            size = sum(f.stat().st_size for f in run_path.rglob("*") if f.is_file())
            print(f"N={n:,}: data and run written in {time.perf_counter() - t0:.0f} s "
                  f"(run directory {size / 1e6:,.0f} MB)", flush=True)
            # a fresh interpreter per N would isolate memory; in one process the peak only grows
            load = loadavg()
            r = drive(base / "runs", labels_file)
            r["load"] = f"{load}–{loadavg()}"
            rows.append((n, r))
        finally:
            if not args.keep:
                shutil.rmtree(base, ignore_errors=True)
    cols = [("load", "load average", "{}"),
            ("data first", "Data first load (s)", "{:.2f}"), ("data cpu", "(CPU s)", "{:.2f}"),
            ("explore first", "Explore first (s)", "{:.2f}"), ("explore cpu", "(CPU s)", "{:.2f}"),
            ("explore rerun", "Explore rerun (s)", "{:.2f}"), ("explore filter", "one class (s)", "{:.2f}"),
            ("explore sei", "switch to SEI (s)", "{:.2f}"), ("review first", "Review first (s)", "{:.2f}"),
            ("review cpu", "(CPU s)", "{:.2f}"),
            ("review rerun", "Review rerun (s)", "{:.2f}"), ("decision + next", "decision+next (s)", "{:.3f}"),
            ("rss now", "RSS (MB)", "{:,.0f}"), ("rss peak", "peak RSS (MB)", "{:,.0f}"),
            ("data bytes", "Data sent (kB)", "{:,.0f}"), ("explore bytes", "Explore sent (kB)", "{:,.0f}"),
            ("review bytes", "Review sent (kB)", "{:,.0f}")]
    print()
    print(" | ".join(["N"] + [c[1] for c in cols]))
    for n, r in rows:
        vals = [fmt.format(r[key] / 1000 if key.endswith("bytes") else r[key]) for key, _, fmt in cols]
        print(" | ".join([f"{n:,}"] + vals))


if __name__ == "__main__":
    main()

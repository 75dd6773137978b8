"""Resident memory of `sei train` against the number of images: does it stay flat?

For each N (a seeded random subset of the label file; image paths are made absolute, no
image is copied) this runs a real ``sei train`` process at the given image size and memory
budget, and samples every 20 ms the anonymous resident memory (``RssAnon`` in
``/proc/PID/status``: heap, arrays, tensors; not the page cache of the memory-mapped image
file) of the training process and of its whole process tree (with the decode workers).

It prints, per N, the decoded data's size, the peaks, and the ratio the scale goal is
judged by: growth of the peak RssAnon between the smallest and the largest N divided by the
growth of the decoded data (goal: under 1/3 with a small budget; with a budget the cache
fits in, the in-RAM path is taken and the ratio is about 1).

``--mode feed`` measures the same data path without the model, for machines where training
at 224 px is too slow to repeat: the same kind of process loads and validates the label file,
decodes into the same on-disk cache (parallel, resumable), builds the same
:class:`~sei_core.feed.ImageFeed` from the budget and reads one epoch of shuffled batches
through it, augmented as in training, plus a :class:`~sei_core.records.Recorder` of the
run's size. What training adds on top (model, optimiser, activations) does not depend on N.

Usage (HAM10000, 224 px, a tiny model, one epoch)::

    nice python benchmarks/train_memory.py --data ../shared/data/derm-ham10000/labels.csv \\
        --sizes 1000 7496 --image-size 224 --memory-budget 64M [--mode feed]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from sei_core.jobs import descendants


def rss_anon(pid: int) -> int:
    """``RssAnon`` of ``pid`` in bytes (0 once it has exited)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def subset_csv(labels: Path, n: int, out: Path) -> int:
    """A label file with ``n`` random rows of ``labels`` (seed 0), paths made absolute."""
    with open(labels, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    pick = np.sort(np.random.default_rng(0).permutation(len(rows))[: min(n, len(rows))])
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for i in pick:
            p = Path(rows[i]["path"])
            w.writerow([str(p if p.is_absolute() else (labels.parent / p).resolve()), rows[i]["label"]])
    return len(pick)


def measure(cmd: list[str]) -> dict:
    """Run ``cmd``; peak RssAnon of the process and of its process tree, and the wall time."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = {"main": 0, "tree": 0}
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    while proc.poll() is None:
        main = rss_anon(proc.pid)
        tree = main + sum(rss_anon(p) for p in descendants(proc.pid))
        peak["main"], peak["tree"] = max(peak["main"], main), max(peak["tree"], tree)
        time.sleep(0.02)
    reader.join()
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({proc.returncode}):\n{''.join(err)[-3000:]}")
    return {**peak, "seconds": time.monotonic() - t0, "log": "".join(err)}


FEED_SCRIPT = """
import sys, numpy as np, torch
from sei_core import dataset, decode, feed
from sei_core.records import Recorder
from sei_core.train import augment_batch
labels, cache, size, budget, batch, workers = sys.argv[1:7]
size, batch = int(size), int(batch)
ds = dataset.load(labels)
images, _ = decode.decode_images(ds, size, workers=int(workers), cache_dir=cache)
f = feed.ImageFeed(images, torch.device("cpu"), feed.memory_budget(budget))
print("run 1: image cache " + f.describe().split("image cache ", 1)[1], file=sys.stderr)
rec = Recorder(len(ds), len(ds.classes) + 1)
gen = torch.Generator().manual_seed(0)
perm = torch.randperm(len(ds), generator=gen)
for idx, x in f.batches(torch.split(perm, batch)):
    x = augment_batch(x, "paper", gen)
    rec.update(torch.randn(len(idx), len(ds.classes) + 1), torch.from_numpy(ds.labels[idx.numpy()]), idx)
rec.finalize()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "sample_data" / "labels.csv"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--memory-budget", default="64M")
    ap.add_argument("--model", default="SEI-Tiny-RN")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", default=None, help="keep the runs and caches in this folder")
    ap.add_argument("--mode", choices=["train", "feed"], default="train",
                    help="train: a real `sei train` (1 epoch, one run); feed: its data path without the model")
    a = ap.parse_args()

    work = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="sei-train-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    env_note = f"{os.cpu_count()} CPUs"
    results = []
    for n in a.sizes:
        labels = work / f"labels_{n}.csv"
        n = subset_csv(Path(a.data), n, labels)
        out = work / f"run_{n}_{a.memory_budget}"
        cmd = [sys.executable, "-m", "sei_core.cli", "train", str(labels), "--out", str(out), "--no-progress",
               "--model", a.model, "--image-size", str(a.image_size), "--epochs", "1", "--single-run",
               "--batch-size", str(a.batch_size), "--workers", str(a.workers), "--device", "cpu",
               "--memory-budget", a.memory_budget, "--no-amp"]
        if a.mode == "feed":
            cmd = [sys.executable, "-c", FEED_SCRIPT, str(labels), str(out / "cache"), str(a.image_size),
                   a.memory_budget, str(a.batch_size), str(a.workers)]
        r = measure(cmd)
        feed = next((ln.split(": ", 1)[1] for ln in r["log"].splitlines() if ln.startswith("run 1: image cache")), "?")
        results.append({"n": n, "decoded": n * 3 * a.image_size ** 2, **r, "feed": feed})
        print(f"N={n}: peak RssAnon {r['main'] / 2**20:.0f} MiB (tree {r['tree'] / 2**20:.0f} MiB), "
              f"{r['seconds']:.0f}s — {feed}", flush=True)

    what = f"`sei train` ({a.model}, 1 epoch)" if a.mode == "train" else "the training data path (no model)"
    print(f"\n{what} at {a.image_size}px, budget {a.memory_budget}, batch {a.batch_size}, {env_note}")
    print("      N   decoded MiB   peak RssAnon MiB   tree peak MiB   wall s")
    for r in results:
        print(f"{r['n']:7d}   {r['decoded'] / 2**20:11.0f}   {r['main'] / 2**20:16.0f}   "
              f"{r['tree'] / 2**20:13.0f}   {r['seconds']:6.0f}")
    if len(results) >= 2:
        lo, hi = results[0], results[-1]
        grow_data = hi["decoded"] - lo["decoded"]
        grow_main, grow_tree = hi["main"] - lo["main"], hi["tree"] - lo["tree"]
        print(f"\ndecoded data grows by {grow_data / 2**20:.0f} MiB; peak RssAnon by {grow_main / 2**20:.0f} MiB "
              f"(ratio {grow_main / grow_data:.3f}), tree peak by {grow_tree / 2**20:.0f} MiB "
              f"(ratio {grow_tree / grow_data:.3f}); goal: ratio < 0.333")


if __name__ == "__main__":
    main()

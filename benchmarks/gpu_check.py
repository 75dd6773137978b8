"""GPU check: the paper's setting on this machine's accelerator, measured.

Trains the paper's model — CLIP with a ResNet-50 image tower (open_clip ``RN50``), 224 px,
AMP, batch 128, SGD — for a few epochs with sei-review's own training step, image feed and
recorder, and prints, per variant:

- images/s per GPU (median epoch, after a warm-up epoch);
- peak GPU memory allocated and reserved;
- the share of the epoch the training loop spent waiting for the next batch of images;
- the recorder's overhead, ``record / no-record − 1`` (goal: under 3 %).

Variants: the image cache on the GPU (the fast path when it fits) and read from disk through
the memory map with prefetch (``--memory-budget 0``, the path for data larger than RAM),
each with and without recording. ``--write-doc docs/gpu.md`` writes the table to the docs.

Real images travel to a GPU machine only in small numbers; without ``--data`` the images are
generated (random colour blobs), which costs the GPU the same. Weights do not change the
cost: the model is randomly initialised unless ``--weights FILE`` is given.

Usage (on a GPU machine)::

    python benchmarks/gpu_check.py --n 4096 --epochs 3 --write-doc docs/gpu.md
    python benchmarks/gpu_check.py --data ../shared/data/derm-ham10000/labels.csv --n 2000

On a CPU it runs too (``--device cpu --model SEI-Tiny-RN --image-size 32 --n 256``), which is
how the test suite keeps it working.
"""

from __future__ import annotations

import argparse
import collections
import platform
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sei_core import dataset, decode
from sei_core.config import pick_device
from sei_core.feed import ImageFeed, format_size, memory_budget
from sei_core.models import build_model, on_device
from sei_core.records import Recorder, RecordStore
from sei_core.train import Stepper, batch_count


class TimedFeed:
    """An :class:`ImageFeed` that adds up how long the training loop waits for each batch."""

    def __init__(self, feed: ImageFeed):
        self.feed, self.waited = feed, 0.0

    def batches(self, index_batches):
        it = self.feed.batches(index_batches)
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            self.waited += time.perf_counter() - t0
            yield item


def _generated(n: int, size: int, k: int, folder: Path) -> Path:
    """A label file of ``n`` generated PNGs of ``k`` classes (a colour blob per class)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (folder / "images").mkdir(parents=True)
    rows = ["path,label"]
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        c = i % k
        cx, cy = rng.uniform(0.3, 0.7, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.02 + 0.01 * c))
        img = np.clip(rng.normal(0.35, 0.05, (size, size, 3)) + blob[..., None] * np.eye(3)[c % 3] * 0.6, 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / "images" / f"{i:06d}.png")
        rows.append(f"images/{i:06d}.png,class{c}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder / "labels.csv"


class SyncCounter:
    """Counts the calls that make the host wait for the GPU (``torch.cuda.set_sync_debug_mode``)
    inside a ``with`` block, and where they come from. A training step should make none:
    each one stops the host from queueing the next batch while the GPU works."""

    def __init__(self, device: torch.device, active: bool = True):
        self.active = active and device.type == "cuda"
        self.count, self._where = 0, collections.Counter()

    def __enter__(self):
        if self.active:
            self._catch = warnings.catch_warnings(record=True)
            self._seen = self._catch.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        if self.active:
            torch.cuda.set_sync_debug_mode("default")
            self._catch.__exit__(*exc)
            for w in self._seen:
                if "synchronizing" in str(w.message):
                    self.count += 1
                    self._where[f"{Path(w.filename).name}:{w.lineno}"] += 1
        return False

    def where(self) -> str:
        return ", ".join(f"{k} ×{v}" for k, v in self._where.most_common(3))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="a label file (default: generated images)")
    ap.add_argument("--n", type=int, default=4096, help="images (a seeded subset of --data, or generated)")
    ap.add_argument("--model", default="RN50")
    ap.add_argument("--weights", default=None, help="a local checkpoint file (default: random init, same cost)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per variant (the first is a warm-up)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=8, help="decoding processes")
    ap.add_argument("--write-doc", help="write the results as Markdown to this file (e.g. docs/gpu.md)")
    a = ap.parse_args()

    device = pick_device(a.device)
    tmp = Path(tempfile.mkdtemp(prefix="sei-gpu-check-"))
    labels = Path(a.data) if a.data else _generated(a.n, max(a.image_size, 64), 7, tmp / "generated")
    data = dataset.load(labels, check_images=False)
    keep = np.sort(np.random.default_rng(0).permutation(len(data))[: min(a.n, len(data))])
    data = dataset.subset(data, keep)
    t0 = time.perf_counter()
    images, problems = decode.decode_images(data, a.image_size, workers=a.workers, cache_dir=tmp / "cache")
    decode_s = time.perf_counter() - t0
    if problems:
        raise SystemExit(f"{len(problems)} images could not be decoded, e.g. {problems[0]}")
    n, k = len(data), len(data.classes)
    prompts = data.prompts().for_classes(data.classes)
    targets = data.labels.copy()
    targets[np.random.default_rng(1).permutation(n)[: n // (k + 1)]] = k  # the auxiliary class, as in a run
    y_all = torch.from_numpy(targets).to(device)
    use_amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    n_batches = batch_count(n, a.batch_size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"{n} images ({'generated' if not a.data else labels}) at {a.image_size} px, {a.model}, batch "
          f"{a.batch_size}, AMP {amp_dtype if use_amp else 'off'}, device {device} ({name}); "
          f"decoded in {decode_s:.1f} s", flush=True)

    # (host budget, cache on the GPU): the GPU cache when it fits, else RAM; and the memory map
    feeds = {"gpu" if device.type == "cuda" else "ram": (memory_budget(), True), "memmap": (0, False)}
    results = []
    for feed_name, (budget, gpu_cache) in feeds.items():
        for recording in (False, True):
            torch.manual_seed(0)
            model = on_device(build_model(a.model, prompts, weights=a.weights, image_size=a.image_size), device)
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
            scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
            gen = torch.Generator(device=device).manual_seed(1)
            step = Stepper(model, opt, scaler, device, "paper", gen, use_amp, amp_dtype)
            feed = TimedFeed(ImageFeed(images, device, budget, gpu_cache=gpu_cache))
            recorder = Recorder(n, k + 1, device) if recording else None
            store = RecordStore(tmp / f"records-{feed_name}-{recording}")
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times, waits = [], []
            for epoch in range(1, a.epochs + 1):
                feed.waited = 0.0
                _sync(device)
                t0 = time.perf_counter()
                with SyncCounter(device, active=epoch == 1) as syncs:  # the warm-up epoch only
                    loss, acc = step.epoch(feed, y_all, torch.randperm(n), n_batches, recorder)
                if recorder is not None:
                    stats, probs = recorder.finalize()
                    store.write_epoch(epoch, stats, probs, loss=loss, accuracy=acc)
                _sync(device)
                if epoch == 1:
                    sync_info = (syncs.count / n_batches, syncs.where())
                if epoch > 1 or a.epochs == 1:
                    times.append(time.perf_counter() - t0)
                    waits.append(feed.waited / times[-1])
            mem = ((torch.cuda.max_memory_allocated(device), torch.cuda.max_memory_reserved(device))
                   if device.type == "cuda" else (0, 0))
            t = statistics.median(times)
            results.append(dict(feed=feed.feed.mode, recording=recording, epoch_s=t, images_s=n / t,
                                wait=statistics.median(waits), mem=mem, syncs=sync_info[0]))
            print(f"  feed {feed.feed.mode:<6} recording {'yes' if recording else 'no ':<3}  "
                  f"{n / t:8.1f} images/s  epoch {t:7.2f} s  waiting for data {statistics.median(waits):6.1%}  "
                  f"GPU memory {format_size(mem[0])} allocated, {format_size(mem[1])} reserved  "
                  f"host waits per batch {sync_info[0]:.2f}{' at ' + sync_info[1] if sync_info[1] else ''}",
                  flush=True)
            del model, opt, step, feed, recorder
            if device.type == "cuda":
                torch.cuda.empty_cache()

    overhead = {}
    for feed_name in dict.fromkeys(r["feed"] for r in results):
        plain, rec = (next(r for r in results if r["feed"] == feed_name and r["recording"] == x) for x in (False, True))
        overhead[feed_name] = rec["epoch_s"] / plain["epoch_s"] - 1
        print(f"recorder overhead ({feed_name}): record/no-record - 1 = {overhead[feed_name]:+.2%} (goal < 3%)")

    if a.write_doc:
        lines = [
            f"Measured by `benchmarks/gpu_check.py` on {time.strftime('%Y-%m-%d')}: {name}, PyTorch "
            f"{torch.__version__}, CUDA {torch.version.cuda}.",
            "",
            f"Setting: {a.model} at {a.image_size} px, batch {a.batch_size}, AMP "
            f"{str(amp_dtype).removeprefix('torch.') if use_amp else 'off'}, {n} "
            f"{'generated' if not a.data else 'real'} images, {a.epochs} epochs per variant (the first a warm-up), "
            f"one process.",
            "",
            "| image feed | recording | images/s per GPU | epoch (s) | waiting for data | host waits for the GPU per batch | peak GPU memory (allocated / reserved) |",
            "|---|---|---:|---:|---:|---:|---|",
        ]
        for r in results:
            lines.append(f"| {r['feed']} | {'yes' if r['recording'] else 'no'} | {r['images_s']:.0f} | "
                         f"{r['epoch_s']:.2f} | {r['wait']:.1%} | {r['syncs']:.2f} | "
                         f"{format_size(r['mem'][0])} / {format_size(r['mem'][1])} |")
        lines += ["", "Recorder overhead (record / no-record − 1): "
                  + ", ".join(f"{f}: {v:+.1%}" for f, v in overhead.items()) + "."]
        write_section(Path(a.write_doc), "\n".join(lines))
        print(f"wrote {a.write_doc}")


BEGIN, END = "<!-- gpu_check: begin -->", "<!-- gpu_check: end -->"


def write_section(doc: Path, text: str) -> None:
    """Put ``text`` between the page's ``BEGIN``/``END`` markers, keeping the rest of the page
    (docs/gpu.md holds other measurements too); a page without them is written whole."""
    old = doc.read_text() if doc.is_file() else ""
    if BEGIN in old and END in old.split(BEGIN, 1)[1]:
        head, rest = old.split(BEGIN, 1)
        doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}")
    else:
        doc.write_text(f"# sei-review on a GPU\n\n{BEGIN}\n{text}\n{END}\n")


if __name__ == "__main__":
    main()

"""Training speed: the cost of SEI recording, and the pipeline against a bare loop.

Four variants train the same model on the same images, interleaved epoch by epoch in one
process so that machine noise hits them alike (the first round is a warm-up and dropped; the order rotates every round):

- ``bare``: a bare loop over float tensors already in memory (forward, loss, backward, step);
- ``no-record``: sei-review's epoch (uint8 cache → float, batched augmentation, AMP) without
  recording;
- ``record``: the same plus the recorder's ``update`` per batch, ``finalize`` and the
  atomic per-epoch record write;
- ``full``: everything a real epoch does, i.e. ``record`` plus the checkpoint (written in a
  background thread, as in training) and the status.

It prints median epoch times and two ratios: the recording overhead
``record / no-record - 1`` (goal: under 3 %) and the throughput ``bare / full`` (goal: at
least 0.9).

Usage::

    python benchmarks/training_speed.py --data ../shared/data/derm-ham10000/labels.csv \\
        --n 2048 --model SEI-Tiny-RN --image-size 32 --batch-size 128 --rounds 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sei_core import dataset, decode
from sei_core.models import build_model
from sei_core.records import Recorder, RecordStore
from sei_core.runs import Run
from sei_core.feed import ImageFeed, memory_budget
from sei_core.config import pick_device
from sei_core.train import CheckpointWriter, Stepper, batch_count


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "sample_data" / "labels.csv"))
    ap.add_argument("--n", type=int, default=2048, help="number of images (a random subset)")
    ap.add_argument("--model", default="SEI-Tiny-RN")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=4, help="epochs per variant (first is warm-up)")
    ap.add_argument("--augment", default="paper")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args()

    device = pick_device(a.device)
    data = dataset.load(a.data, check_images=False)
    keep = np.sort(np.random.default_rng(0).permutation(len(data))[: min(a.n, len(data))])
    data = dataset.subset(data, keep)
    images_np, _ = decode.decode_images(data, a.image_size, workers=4)
    n, k = len(data), len(data.classes)
    prompts = data.prompts().for_classes(data.classes)
    y_np = data.labels.copy()
    y_np[: n // (k + 1)] = k  # an auxiliary class, as in a real run
    images = ImageFeed(images_np, device, memory_budget())  # the fast path training takes when it fits
    y_all = torch.from_numpy(y_np).to(device)
    x_float = (torch.from_numpy(images_np).float() / 255).to(device)
    use_amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    n_batches = batch_count(n, a.batch_size)
    print(f"{n} images at {a.image_size}px, {a.model}, batch {a.batch_size}, device {device}, "
          f"{torch.get_num_threads()} CPU threads")

    def new_model():
        torch.manual_seed(0)
        m = build_model(a.model, prompts, image_size=a.image_size).to(device)
        opt = torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
        return m, opt

    tmp = Path(tempfile.mkdtemp(prefix="sei-bench-"))
    run = Run(tmp / "run")
    run.path.mkdir(parents=True)
    variants = {}

    # bare loop: float tensors in memory, nothing but the optimisation step
    m_b, o_b = new_model()

    def bare(epoch: int) -> None:
        m_b.train()
        perm = torch.randperm(n)
        for idx in torch.tensor_split(perm, n_batches):
            idx = idx.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                loss = F.cross_entropy(m_b(x_float[idx]).float(), y_all[idx])
            o_b.zero_grad(set_to_none=True)
            loss.backward()
            o_b.step()

    variants["bare"] = bare

    def stepper():
        m, o = new_model()
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
        gen = torch.Generator(device=device).manual_seed(1)
        return Stepper(m, o, scaler, device, a.augment, gen, use_amp, amp_dtype)

    s_plain, s_rec, s_full = stepper(), stepper(), stepper()
    rec_r, rec_f = Recorder(n, k + 1, device), Recorder(n, k + 1, device)
    store_r, store_f = RecordStore(tmp / "r"), RecordStore(tmp / "f")

    variants["no-record"] = lambda e: s_plain.epoch(images, y_all, torch.randperm(n), n_batches)

    def record(epoch: int) -> None:
        loss, acc = s_rec.epoch(images, y_all, torch.randperm(n), n_batches, rec_r)
        stats, probs = rec_r.finalize()
        store_r.write_epoch(epoch, stats, probs, loss=loss, accuracy=acc)

    variants["record"] = record

    def full(epoch: int) -> None:
        loss, acc = s_full.epoch(images, y_all, torch.randperm(n), n_batches, rec_f)
        stats, probs = rec_f.finalize()
        store_f.write_epoch(epoch, stats, probs, loss=loss, accuracy=acc)
        saver.submit(tmp / "ckpt.pt", {"model": s_full.model.state_dict(), "optimizer": s_full.opt.state_dict(),
                                       "epoch": epoch})
        run.update_status(epoch=epoch, loss=loss, accuracy=acc)

    variants["full"] = full
    saver = CheckpointWriter()

    times: dict[str, list[float]] = {v: [] for v in variants}
    names = list(variants)
    for r in range(a.rounds):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate: no variant always runs first
        for name in order:
            fn = variants[name]
            _sync(device)
            t0 = time.perf_counter()
            fn(r + 1)
            _sync(device)
            if r > 0:
                times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}/{a.rounds}" + (" (warm-up)" if r == 0 else ""), flush=True)

    saver.wait()
    med = {v: statistics.median(t) for v, t in times.items()}
    print("\nvariant      median epoch s   images/s   all rounds (s)")
    for v, t in med.items():
        print(f"{v:<12} {t:14.3f} {n / t:10.0f}   {' '.join(f'{x:.2f}' for x in times[v])}")
    print(f"\nrecording overhead  record/no-record - 1 = {med['record'] / med['no-record'] - 1:+.2%}  (goal < 3%)")
    print(f"throughput          bare/full            = {med['bare'] / med['full']:.3f}   (goal >= 0.9)")
    print(f"pipeline only       bare/no-record       = {med['bare'] / med['no-record']:.3f}")


if __name__ == "__main__":
    main()

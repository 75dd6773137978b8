"""Training images/s of the paper's model on a GPU in four layouts, side by side in one run.

RN50 at 224 px, bf16 autocast, batch 128, with sei-review's own training step
(:class:`sei_core.train.Stepper`) on random images held on the GPU: the memory format of the
model (contiguous NCHW, or channels-last as :func:`sei_core.models.on_device` puts it on a
CUDA device) × ``torch.backends.cudnn.benchmark`` off/on. Prints images/s (best of the
epochs after a warm-up) and each ratio to the first row.

Usage (on a GPU machine): ``python benchmarks/gpu_memory_format.py [--n 2048] [--epochs 3]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sei_core.feed import ImageFeed
from sei_core.models import build_model, on_device
from sei_core.train import Stepper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2048, help="images per epoch")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per variant (the first a warm-up)")
    ap.add_argument("--model", default="RN50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=128)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    device, k = torch.device("cuda"), 7
    images = np.random.default_rng(0).integers(0, 256, (a.n, 3, a.image_size, a.image_size), dtype=np.uint8)
    y = torch.randint(0, k + 1, (a.n,), device=device)
    prompts = [f"a photo of class {i}" for i in range(k)] + ["an image of nothing"]
    rows = []
    for bench in (False, True):
        for channels_last in (False, True):
            torch.backends.cudnn.benchmark = bench
            torch.manual_seed(0)
            model = build_model(a.model, prompts, weights=None, image_size=a.image_size)
            model = on_device(model, device) if channels_last else model.to(device)  # what training does, or plain
            opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            step = Stepper(model, opt, torch.amp.GradScaler("cuda", enabled=False), device, "paper",
                           torch.Generator(device=device).manual_seed(1), True, torch.bfloat16)
            feed = ImageFeed(images, device, 1 << 40)
            times = []
            for _ in range(a.epochs):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                step.epoch(feed, y, torch.randperm(a.n), a.n // a.batch_size)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            rows.append((bench, channels_last, a.n / min(times[1:] or times)))
            del model, opt, step, feed
            torch.cuda.empty_cache()
    print(f"{a.model} {a.image_size} px, batch {a.batch_size}, bf16, {torch.cuda.get_device_name(device)}, "
          f"PyTorch {torch.__version__}")
    for bench, cl, ips in rows:
        print(f"cudnn.benchmark {'on ' if bench else 'off'}  {'channels-last' if cl else 'NCHW         '}  "
              f"{ips:7.0f} images/s  x{ips / rows[0][2]:.2f}")


if __name__ == "__main__":
    main()

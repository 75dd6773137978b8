"""SEI in your own PyTorch training loop: a plain loop plus four lines of sei_core.

Generates a tiny labelled image set with injected label noise (the project's sample-data
generator), trains a small CNN on it with an ordinary loop, records every epoch with
:class:`sei_core.run_writer.RunWriter`, and writes a run directory. Then:

    python examples/own_training_loop.py --out own-loop     # a minute on a laptop CPU
    sei flags own-loop/run                                  # the flagged images, ranked
    SEI_RUNS_DIR=own-loop streamlit run app.py              # Explore and Review them

The lines marked ``# SEI`` are all a loop of your own needs.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from sample_data.make_sample_data import generate
from sei_core.run_writer import RunWriter


def load_images(label_file: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """Paths, labels and the images as a float tensor (N, 3, S, S) in [0, 1]."""
    with open(label_file, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    images = [np.asarray(Image.open(label_file.parent / r["path"]).convert("RGB")) for r in rows]
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return [r["path"] for r in rows], [r["label"] for r in rows], x


def small_cnn(n_outputs: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, n_outputs),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("own-loop"), help="folder for the data and the run")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--per-class", type=int, default=40, help="images per class of the generated data")
    a = ap.parse_args()

    label_file = generate(a.out / "data", n_per_class=a.per_class, image_size=32, noise_rate=0.2, seed=0)
    ids, labels, x = load_images(label_file)
    classes = sorted(set(labels))
    torch.manual_seed(0)

    writer = RunWriter(a.out / "run", ids, labels, classes, data=label_file,  # SEI
                       config={"model": "small CNN", "epochs": a.epochs}, epochs=a.epochs)
    y = torch.as_tensor(writer.targets)  # SEI: the given labels, the auxiliary samples as class K
    model = small_cnn(writer.n_outputs)  # SEI: K + 1 outputs
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    for epoch in range(a.epochs):
        model.train()
        total, correct = 0.0, 0
        for idx in torch.randperm(len(ids)).split(32):
            xb = x[idx]
            xb = torch.where(torch.rand(len(idx), 1, 1, 1) < 0.5, xb.flip(3), xb)  # random horizontal flip
            logits = model(xb)
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            writer.update(logits, y[idx], idx)  # SEI: record the batch
            total += float(loss) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        writer.end_epoch(loss=total / len(ids), accuracy=correct / len(ids))  # SEI: write the epoch
        print(f"epoch {epoch + 1}/{a.epochs}: loss {total / len(ids):.3f}, accuracy {correct / len(ids):.3f}")
    run = writer.finish()  # SEI: scores.csv
    print(f"wrote {run}; see the flagged images with `sei flags {run}`")


if __name__ == "__main__":
    main()

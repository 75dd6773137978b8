"""The un-noised HAM10000 subset of issue-style checks: real labels, no injected noise.

Usage: python benchmarks/ham_unnoised_subset.py OUT.csv [--data ../shared/data/derm-ham10000]
       [--total 1427] [--min-per-class 30] [--seed 0]

Writes a label file (``path,label,dx,lesion_id,source``) with absolute image paths, so it
can live anywhere (e.g. /tmp) and the read-only data is never copied. Only rows whose
``source`` is ``ham10000_train`` are used; the sample is stratified: every class gets
``max(min_per_class, round(f * n_class))`` images (all of them when it has fewer), with
``f`` chosen so that the total is ``--total``. HAM10000's diagnoses are mostly confirmed by
histopathology, so a good detector should flag few of these images: the flag rate per
class is a false-flag rate. Train it with ``sei train OUT.csv --out RUN`` (the defaults).
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

import numpy as np


def stratified_counts(sizes: dict[str, int], total: int, floor: int) -> dict[str, int]:
    """Images per class: ``max(floor, round(f * n))`` capped at ``n``, summing to ``total``."""
    if total > sum(sizes.values()):
        raise SystemExit(f"--total {total} is more than the {sum(sizes.values())} images available")
    lo, hi = 0.0, 1.0
    for _ in range(100):
        f = (lo + hi) / 2
        got = sum(min(n, max(floor, round(f * n))) for n in sizes.values())
        lo, hi = (f, hi) if got < total else (lo, f)
    counts = {c: min(n, max(floor, round(hi * n))) for c, n in sizes.items()}
    # rounding may leave a few over or under: the largest class absorbs them
    big = max(sizes, key=sizes.get)
    counts[big] += total - sum(counts.values())
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "data" / "derm-ham10000")
    ap.add_argument("--total", type=int, default=1427)
    ap.add_argument("--min-per-class", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = args.data.resolve()
    with open(root / "labels.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "ham10000_train"]
    by_class: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_class[r["label"]].append(r)
    counts = stratified_counts({c: len(v) for c, v in by_class.items()}, args.total, args.min_per_class)
    rng = np.random.default_rng(args.seed)
    chosen = []
    for c in sorted(by_class):
        idx = rng.choice(len(by_class[c]), size=counts[c], replace=False)
        chosen += [by_class[c][i] for i in sorted(idx)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "dx", "lesion_id", "source"])
        for r in chosen:
            w.writerow([str(root / r["path"]), r["label"], r["dx"], r["lesion_id"], r["source"]])
    for c in sorted(counts, key=counts.get, reverse=True):
        print(f"{counts[c]:5d}  {c}")
    print(f"{sum(counts.values()):5d}  in all -> {args.out}")


if __name__ == "__main__":
    main()

"""Cost of a review decision against a large label file: rewritten per decision vs coalesced.

Generates a label file of N rows (``path,label,site``), opens a ``ReviewStore`` on it and
makes the same decisions twice, side by side in one run:

- **per decision**: the label file rewritten within every decision (``coalesce_min_bytes``
  above the file's size: the behaviour for files under 1 MB);
- **coalesced**: the default for large files: the decision is committed to the log and the
  file follows in one background rewrite at most every ``coalesce_s``.

It prints the median time of one decision call, of a cached ``status_table()`` and of a
``progress()`` over the whole file, and the time until the label file holds every decision.

    python benchmarks/review_writeback.py --rows 100000 1000000 --decisions 20
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sei_core.review import ReviewStore

CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]


def make_file(folder: Path, n: int) -> Path:
    f = folder / "labels.csv"
    with open(f, "w", encoding="utf-8") as fh:
        fh.write("path,label,site\n")
        for i in range(n):
            fh.write(f"images/ISIC_{i:07d}.jpg,{CLASSES[i % 7]},site{i % 13}\n")
    return f


def run(n: int, decisions: int, coalesced: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        f = make_file(Path(tmp), n)
        t0 = time.perf_counter()
        store = ReviewStore(f, classes=CLASSES,
                            coalesce_min_bytes=(1 << 20) if coalesced else 1 << 62)
        open_s = time.perf_counter() - t0
        store.status_table()
        times, table_s = [], []
        for k in range(decisions):
            i = (k * 7919) % n
            t = time.perf_counter()
            store.relabel(f"images/ISIC_{i:07d}.jpg", CLASSES[(i + 1) % 7], "bench",
                          expected_label=CLASSES[i % 7])
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.status_table()
            table_s.append(time.perf_counter() - t)
            time.sleep(0.05)  # a reviewer is never this fast; keeps the background writer honest
        t = time.perf_counter()
        store.status_table()
        cached = time.perf_counter() - t
        t = time.perf_counter()
        store.progress(f"images/ISIC_{i:07d}.jpg" for i in range(0, n, 13))
        progress_s = time.perf_counter() - t
        t = time.perf_counter()
        while store.pending():
            time.sleep(0.01)
        settle = time.perf_counter() - t
        size = f.stat().st_size
        store.close()
    return {"rows": n, "mode": "coalesced" if coalesced else "per decision", "MB": size / 1e6,
            "open_s": open_s, "decision_ms": 1e3 * statistics.median(times),
            "decision_max_ms": 1e3 * max(times), "table_after_ms": 1e3 * statistics.median(table_s),
            "table_cached_ms": 1e3 * cached, "progress_ms": 1e3 * progress_s, "file_lag_s": settle}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--decisions", type=int, default=20)
    a = ap.parse_args()
    rows = [run(n, a.decisions, c) for n in a.rows for c in (False, True)]
    cols = list(rows[0])
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    for n in a.rows:
        per, co = [r for r in rows if r["rows"] == n]
        print(f"{n} rows: a decision takes {per['decision_ms'] / co['decision_ms']:.0f}x less time coalesced "
              f"({per['decision_ms']:.0f} ms -> {co['decision_ms']:.1f} ms median)")


if __name__ == "__main__":
    main()

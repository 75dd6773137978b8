"""What offering a label file's columns costs on the Data page, at N rows.

The Data page asks which columns hold the image path and the label when a file has no
``path``/``label`` (``image_id;diagnosis;age``). It needs the header and a few rows to
guess, not the whole file: ``sei_core.labels.column_choices`` reads the file's start only.
This prints, side by side in one run, that against reading every row with ``read_table``
and guessing from the table (what the page would do otherwise), and checks both agree.

    python benchmarks/column_choices.py --n 100000 1000000 [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sei_core.labels import column_choices, read_table, suggest_columns  # noqa: E402

CLASSES = ("nevus", "melanoma", "benign keratosis", "basal cell carcinoma")


def write(path: Path, n: int) -> None:
    """An ``image_id;diagnosis;age`` file of ``n`` rows, as a dermatology export might be."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("image_id;diagnosis;age\n")
        step = 100_000
        for lo in range(0, n, step):
            fh.write("".join(f"images/ISIC_{i:07d}.jpg;{CLASSES[i % 4]};{i % 90}\n" for i in range(lo, min(n, lo + step))))


def best(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    print(f"{'rows':>10} {'whole file (s)':>15} {'column_choices (ms)':>20} {'ratio':>7}  same answer")
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.n:
            f = Path(tmp) / f"labels_{n}.csv"
            write(f, n)

            def whole():
                t = read_table(f, required=())
                return (list(t.frame.columns), *suggest_columns(t))

            t_whole, got_whole = best(whole, a.repeat)
            t_head, got_head = best(lambda: column_choices(f), a.repeat)
            print(f"{n:>10,} {t_whole:>15.2f} {1000 * t_head:>20.1f} {t_whole / t_head:>6.0f}x  "
                  f"{tuple(got_whole) == tuple(got_head)}")


if __name__ == "__main__":
    main()

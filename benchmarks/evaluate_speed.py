"""How long held-out evaluation takes: ``sei_core.evaluate.evaluate`` on a finished run, cold
(test images decoded into a fresh cache folder) and warm (the cache reused), with the time of
each part (test file and leak check, decoding, prediction) and the load average.

    python benchmarks/evaluate_speed.py RUN --test TEST.csv [--repeat 2]

The goal of issue 19: the 1,512 ISIC 2018 test images at 32 px in under a minute on a 2-core
machine (run folder of ``sei bench --retrain`` on HAM10000, e.g.
``bench/cells/ham-train/symmetric/rate0.20/seed0/run``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from app_server import ROOT, loadavg  # benchmarks/

sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--test", required=True)
    ap.add_argument("--repeat", type=int, default=2, help="warm evaluations after the cold one")
    args = ap.parse_args()
    t0 = time.perf_counter()
    from sei_core.evaluate import evaluate
    from sei_core.runs import Run

    size = Run(args.run).config()["image_size"]

    imported = time.perf_counter() - t0
    print(f"load average {loadavg()}; importing torch and the library {imported:.1f} s")
    with tempfile.TemporaryDirectory(prefix="eval_cache_") as cache:
        for i in range(1 + args.repeat):
            t0 = time.perf_counter()
            ev = evaluate(args.run, args.test, cache_dir=cache, write=False)
            wall = time.perf_counter() - t0
            kind = "cold" if i == 0 else "warm"
            print(f"{kind}: {ev['n_images']} images at {size} px: {wall:.1f} s "
                  f"(file + leak check {ev['check_seconds']:.1f} s, decoding {ev['decode_seconds']:.1f} s, "
                  f"prediction {wall - ev['check_seconds'] - ev['decode_seconds']:.1f} s); "
                  f"accuracy {ev['accuracy']:.3f}, load {loadavg()}")


if __name__ == "__main__":
    main()

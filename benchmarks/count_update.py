"""The count from the decisions at a million images: the time to update the estimate after one
decision (issue 22's goal: at most 50 ms), as the Review page does it (``ReviewQueue.count``:
the decision log read, the ranks looked up, the estimator), and the estimator alone, with the
model's recalibrated prior and without it, side by side.

Builds a label file of ``--n`` rows in a temporary folder, a queue over them (10 % flagged),
logs ``--decisions`` decisions through the store with their sampling (30 % audit picks), then
times ``--repeats`` updates. Prints the median and the load average.

    python benchmarks/count_update.py [--n 1000000] [--decisions 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from sei_core.review import ReviewQueue, ReviewStore, Sampling
from sei_core.review_count import count_from_decisions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--decisions", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    ids = [f"img/{i:07d}.png" for i in range(a.n)]
    labels = rng.integers(0, 7, a.n)
    score = 1 / (1 + np.exp(-rng.normal(1.5, 1.5, a.n)))  # a confidence: the mean probability of the label
    flagged = score < np.quantile(score, 0.1)
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        f = Path(tmp) / "labels.csv"
        f.write_text("path,label\n" + "".join(f"{p},c{k}\n" for p, k in zip(ids, labels)))
        t0 = time.perf_counter()
        store = ReviewStore(f, classes=[f"c{k}" for k in range(7)])
        q = ReviewQueue(ids, labels, score, flagged, audit_share=0.3, seed=0)
        q.follow(store)
        q.audit(store)
        print(f"n = {a.n:,}: store opened and queue built in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        order = q.audit(store).order
        picks = rng.choice(np.arange(a.decisions, a.n), size=int(0.3 * a.decisions), replace=False)
        ranks = np.concatenate([np.arange(a.decisions - picks.size), picks])
        for r in ranks.tolist():
            i = int(order[r])
            lab = f"c{labels[i]}"
            audit = r >= a.decisions - picks.size
            smp = Sampling(rank=r, population=a.n, audit=audit, share=0.3)
            if rng.random() < 0.2:
                store.relabel(ids[i], f"c{(labels[i] + 1) % 7}", "bench", lab, sampling=smp)
            else:
                store.confirm(ids[i], "bench", lab, sampling=smp)
        print(f"{ranks.size} decisions logged in {time.perf_counter() - t0:.1f} s")
        store.flush()  # the label file's rewrite done (in the app it runs between decisions)
        q.follow(store)
        q.count(store)
        times, logged = [], []
        for j in range(a.repeats):  # one more decision, then the update the page makes
            i = int(order[a.decisions + j])
            t0 = time.perf_counter()
            store.confirm(ids[i], "bench", f"c{labels[i]}", sampling=q.sampling(ids[i], store))
            logged.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            c, stop, _ = q.count(store)
            times.append(time.perf_counter() - t0)
        given = labels[order]
        df = store.estimation_decisions()
        rk = q.audit(store).rank[q.audit(store)._index.get_indexer(df["path"].tolist())]
        wrong = df["status"].eq("relabeled").to_numpy()
        x = q.audit(store).x_by_rank
        est, bare = [], []
        for _ in range(a.repeats):  # the estimator with the model's recalibrated prior, and without
            t0 = time.perf_counter()
            count_from_decisions(given, rk, wrong, df["audit"].to_numpy(), n_classes=7, x_by_rank=x)
            est.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            count_from_decisions(given, rk, wrong, df["audit"].to_numpy(), n_classes=7, prior_picks=0)
            bare.append(time.perf_counter() - t0)
        store.close()
    print(f"update after a decision (ReviewQueue.count): median {1000 * statistics.median(times):.1f} ms "
          f"(min {1000 * min(times):.1f}; the decision itself {1000 * statistics.median(logged):.1f} ms); the estimator alone: median {1000 * statistics.median(est):.1f} ms "
          f"({1000 * statistics.median(bare):.1f} ms without the model's prior); "
          f"{c.audits_used} picks used, {c.source}; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

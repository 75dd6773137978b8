"""What the cleaning bought: held-out test scores of models trained before and after cleaning.

For one benchmark cell (noisy labels with a known truth, the cell's SEI run trained on them)
:func:`retrain_cell` measures on a held-out test set the final model of a run trained on

* ``noisy``: the noisy labels (the cell's own run);
* ``minus_flagged``: the noisy labels without the images the run flags (the paper's
  "discard the flagged" cleaning, section 4.3.4): every flagged image discarded by a
  simulated reviewer, then :mod:`sei_core.retrain`;
* ``reviewed``: the labels after a simulated review of the first ``D`` images of the review
  queue (most suspicious first) by a reviewer who knows the truth: a wrong label is relabeled
  to the true one, a right one confirmed; then :mod:`sei_core.retrain`;
* ``clean``: the true labels (the ceiling; one run per data set and seed, shared by the
  cells of that seed).

The simulated reviews go through :class:`sei_core.review.ReviewStore` on a copy of the cell's
label file, and the retrains through the product's own retrain path, so the benchmark
measures what a user gets. Rows (:data:`RETRAIN_COLUMNS`) go to the cell's ``retrain.csv``;
:func:`write_retrain_report` gathers them with the share of the ``noisy`` → ``clean`` gap each
cleaning closed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..files import atomic_write, atomic_write_csv
from ..runs import Run, State

VARIANTS = ("noisy", "minus_flagged", "reviewed", "clean")
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "macro_auroc")
RETRAIN_COLUMNS = ["dataset", "noise", "rate", "seed", "variant", "n_train", "n_wrong_in_train", "decisions",
                   "relabeled", "discarded", *METRICS, "n_test", "train_seconds", "eval_seconds"]


def _train_seconds(run: Run) -> float:
    return float(sum(h.get("seconds", 0.0) for h in run.status().get("history", [])))


def _finish(config, out: Path, progress_bar: bool, log) -> Run:
    from ..train import train

    run = Run(out)
    if not run.exists():
        return train(config, out, progress_bar=progress_bar, log=log)
    if run.state() != State.FINISHED:
        return train(config, out, resume=True, progress_bar=progress_bar, log=log)
    return run


def simulate_review(parent: Run, label_copy: Path, truth_label: dict[str, str], mode: str,
                    budget: int | None = None) -> dict:
    """Review ``label_copy`` (a fresh copy of the parent's label file) as a reviewer who knows
    ``truth_label`` (path → true label): the first ``budget`` images of the parent's review
    queue (all by default). ``mode`` ``"discard"`` discards each; ``"truth"`` relabels a wrong
    label to the true one and confirms a right one. Returns the decision counts."""
    from ..ranking import score_run
    from ..review import ReviewQueue, ReviewStore, review_columns

    s = score_run(parent)
    queue = ReviewQueue(s.ids, s.labels, s.score, s.flagged)
    take = queue.ids if budget is None else queue.ids[:budget]
    counts = {"decisions": 0, "relabeled": 0, "discarded": 0, "confirmed": 0}
    with ReviewStore(label_copy, **review_columns(parent)) as store:
        given = dict(zip(s.ids, (s.classes[k] for k in s.labels)))
        for path in take:
            now = given[path]
            if mode == "discard":
                store.discard(path, "simulated", now)
                counts["discarded"] += 1
            elif truth_label[path] != now:
                store.relabel(path, truth_label[path], "simulated", now)
                counts["relabeled"] += 1
            else:
                store.confirm(path, "simulated", now)
                counts["confirmed"] += 1
            counts["decisions"] += 1
    return counts


def _row(base: dict, variant: str, run: Run, ev: dict, truth_label: dict[str, str], counts: dict) -> dict:
    ids, labels = run.samples()
    wrong = sum(truth_label.get(i, lab) != lab for i, lab in zip(ids, labels))
    return {**base, "variant": variant, "n_train": len(ids), "n_wrong_in_train": int(wrong),
            "decisions": counts.get("decisions", 0), "relabeled": counts.get("relabeled", 0),
            "discarded": counts.get("discarded", 0), **{m: ev[m] for m in METRICS}, "n_test": ev["n_images"],
            "train_seconds": round(_train_seconds(run), 1), "eval_seconds": ev["seconds"]}


def retrain_cell(folder: Path, base: dict, clean_run_dir: Path, clean_config, test: str, truth_label: dict[str, str],
                 *, budget: int | None = None, progress_bar: bool = False,
                 log: Callable[[str], None] = print, keep_checkpoints: bool = True) -> list[dict]:
    """The four rows of one cell (resumable: rows already in ``retrain.csv`` are kept)."""
    from ..evaluate import evaluate, evaluation
    from ..retrain import prepare_retrain

    out_csv = folder / "retrain.csv"
    done = pd.read_csv(out_csv) if out_csv.is_file() else pd.DataFrame(columns=RETRAIN_COLUMNS)
    rows = done.to_dict("records")
    have = set(done["variant"]) if len(done) else set()
    parent = Run(folder / "run")

    def evaluated(run: Run) -> dict:
        ev = evaluation(run)
        if ev is None or ev.get("test_file") != str(Path(test).absolute()):
            ev = evaluate(run, test, log=log)
        if not keep_checkpoints:
            for r in range(1, run.n_sub_runs() + 1):
                run.checkpoint(r).unlink(missing_ok=True)
        return ev

    def save(row: dict) -> None:
        rows.append(row)
        atomic_write_csv(out_csv, pd.DataFrame(rows, columns=RETRAIN_COLUMNS))

    key = f"{base['dataset']}/{base['noise']}/rate{base['rate']:.2f}/seed{base['seed']}"
    if "noisy" not in have:
        save(_row(base, "noisy", parent, evaluated(parent), truth_label, {}))
    for variant, mode in (("minus_flagged", "discard"), ("reviewed", "truth")):
        if variant in have:
            continue
        sub = folder / "retrain" / variant
        run_dir = sub / "run"
        counts_file = sub / "decisions.json"
        if not Run(run_dir).exists():
            # a fresh copy of the noisy labels, reviewed from scratch (a killed review is redone)
            if sub.exists():
                shutil.rmtree(sub)
            sub.mkdir(parents=True)
            copy = sub / "labels.csv"
            shutil.copyfile(folder / "labels.csv", copy)
            counts = simulate_review(parent, copy, truth_label, mode, budget)
            atomic_write(counts_file, lambda f: f.write(pd.Series(counts).to_json().encode()))
            log(f"{key}: {variant}: {counts['decisions']} simulated decisions; retraining")
            config = prepare_retrain(parent, run_dir, copy)
        else:
            config = None
        import json

        counts = json.loads(counts_file.read_text())
        if config is None:
            from ..config import TrainConfig

            config = TrainConfig.from_dict(Run(run_dir).config())
        run = _finish(config, run_dir, progress_bar, log)
        save(_row(base, variant, run, evaluated(run), truth_label, counts))
    if "clean" not in have:
        if not Run(clean_run_dir).exists() or Run(clean_run_dir).state() != State.FINISHED:
            log(f"{key}: training on the true labels ({clean_run_dir})")
        run = _finish(clean_config, clean_run_dir, progress_bar, log)
        ev = evaluation(run)
        if ev is None or ev.get("test_file") != str(Path(test).absolute()):
            ev = evaluate(run, test, log=log)  # shared by the cells of this seed: checkpoints kept
        save(_row(base, "clean", run, ev, truth_label, {}))
    return rows


def second_round(cell: str | Path, truth_label: dict[str, str]) -> dict | None:
    """What a second round of review would get in one cell: the ``reviewed`` retrain's review
    queue (its own flags, most suspicious first) without the images the first round decided
    (they stay decided in the shared label file), and how many of those hold a wrong label.
    Trains nothing; None until the cell's ``reviewed`` run has finished."""
    from ..ranking import score_run
    from ..retrain import read_reviewed
    from ..review import ReviewQueue, review_columns

    run = Run(Path(cell) / "retrain" / "reviewed" / "run")
    if run.state() != State.FINISHED:
        return None
    s = score_run(run)
    rv = read_reviewed(Path(cell) / "retrain" / "reviewed" / "labels.csv", **review_columns(run))
    decided = set(rv.paths[(rv.status != "").to_numpy()])
    queue = ReviewQueue(s.ids, s.labels, s.score, s.flagged)
    given = dict(zip(s.ids, (s.classes[k] for k in s.labels)))
    todo = [i for i in queue.ids if i not in decided]
    wrong = {i for i in s.ids if truth_label.get(i, given[i]) != given[i]}
    return {"flagged": len(queue), "already_decided": len(queue) - len(todo), "to_review": len(todo),
            "wrong_in_to_review": sum(i in wrong for i in todo), "wrong_left": len(wrong)}


def gather(bench_dir: str | Path) -> pd.DataFrame:
    """Every cell's ``retrain.csv`` in one frame."""
    files = sorted(Path(bench_dir).glob("cells/*/*/rate*/seed*/retrain.csv"))
    frames = [pd.read_csv(f) for f in files]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RETRAIN_COLUMNS)


def gap_closed(rows: pd.DataFrame, metric: str = "macro_f1") -> pd.DataFrame:
    """Per cell: the metric of each variant and the share of the ``noisy`` → ``clean`` gap
    that ``minus_flagged`` and ``reviewed`` closed (``(x - noisy) / (clean - noisy)``; NaN
    where the true labels do not beat the noisy ones by at least 0.005: there is no gap to
    close)."""
    w = rows.pivot_table(index=["dataset", "noise", "rate", "seed"], columns="variant", values=metric)
    w = w.reindex(columns=list(VARIANTS))
    gap = w["clean"] - w["noisy"]
    for v in ("minus_flagged", "reviewed"):
        w[f"{v}_gap_closed"] = np.where(gap >= 0.005, (w[v] - w["noisy"]) / gap, np.nan)
    return w.reset_index()


def write_retrain_report(bench_dir: str | Path) -> list[Path]:
    """``retrain.csv`` (every row) and ``retrain.md`` (per noise type and rate, means over the
    seeds: each variant's macro-F1, balanced accuracy and accuracy, and the gap closed)."""
    bench_dir = Path(bench_dir)
    rows = gather(bench_dir)
    if rows.empty:
        return []
    atomic_write_csv(bench_dir / "retrain.csv", rows[RETRAIN_COLUMNS])
    lines = ["# Held-out test scores after cleaning", "",
             "One row per cell (seed), then the mean over the cells that have all four variants. Gap closed: "
             "(x − noisy) / (clean − noisy); 1 = as good as training on the true labels, 0 = no better than the "
             "noisy labels, below 0 = worse; – where a variant is missing or where the true labels do not beat the "
             "noisy ones by 0.005 (no gap to close).", ""]

    def f(x, fmt):
        return "–" if pd.isna(x) else format(x, fmt)

    for metric in ("macro_f1", "balanced_accuracy", "accuracy"):
        g = gap_closed(rows, metric)
        lines += [f"## {metric}", "",
                  "| data | noise | rate | seed | noisy | minus flagged | reviewed | clean | gap closed: minus flagged"
                  " | gap closed: reviewed |", "|---|---|---|---|---|---|---|---|---|---|"]
        for (d, n, r), part in g.groupby(["dataset", "noise", "rate"]):
            for _, m in part.iterrows():
                lines.append(f"| {d} | {n} | {r:.0%} | {m['seed']} | {f(m['noisy'], '.3f')} | "
                             f"{f(m['minus_flagged'], '.3f')} | {f(m['reviewed'], '.3f')} | {f(m['clean'], '.3f')} | "
                             f"{f(m['minus_flagged_gap_closed'], '+.2f')} | {f(m['reviewed_gap_closed'], '+.2f')} |")
            full = part.dropna(subset=list(VARIANTS))
            if len(full) > 1:
                m = full.mean(numeric_only=True)
                lines.append(f"| {d} | {n} | {r:.0%} | mean of {len(full)} | {m['noisy']:.3f} | "
                             f"{m['minus_flagged']:.3f} | {m['reviewed']:.3f} | {m['clean']:.3f} | "
                             f"{f(m['minus_flagged_gap_closed'], '+.2f')} | {f(m['reviewed_gap_closed'], '+.2f')} |")
        lines.append("")
    dec = rows[rows["variant"].isin(["minus_flagged", "reviewed"])].groupby(["noise", "rate", "variant"])[
        ["n_train", "n_wrong_in_train", "decisions", "relabeled", "discarded"]].mean()
    lines += ["## Training sets (means over seeds)", "", "| noise | rate | variant | images | wrong labels | decisions "
              "| relabeled | discarded |", "|---|---|---|---|---|---|---|---|"]
    for (n, r, v), m in dec.iterrows():
        lines.append(f"| {n} | {r:.0%} | {v} | {m['n_train']:.0f} | {m['n_wrong_in_train']:.0f} | "
                     f"{m['decisions']:.0f} | {m['relabeled']:.0f} | {m['discarded']:.0f} |")
    noisy = rows[rows["variant"] == "noisy"].groupby(["noise", "rate"])[["n_train", "n_wrong_in_train"]].mean()
    for (n, r), m in noisy.iterrows():
        lines.append(f"| {n} | {r:.0%} | noisy | {m['n_train']:.0f} | {m['n_wrong_in_train']:.0f} | 0 | 0 | 0 |")
    rounds = []
    for cell in sorted(bench_dir.glob("cells/*/*/rate*/seed*")):
        clean = bench_dir / "data" / cell.parts[-4] / "labels.csv"
        if not clean.is_file():
            continue
        t = pd.read_csv(clean, dtype=str, keep_default_na=False)
        r = second_round(cell, dict(zip(t["path"], t["label"])))
        if r is not None:
            rounds.append({"noise": cell.parts[-3], "rate": cell.parts[-2][4:], "seed": cell.parts[-1][4:], **r})
    if rounds:
        lines += ["", "## A second round of review (the `reviewed` retrain's queue; trains nothing)", "",
                  "| noise | rate | seed | flagged | decided in round 1 | left to review | wrong labels among them "
                  "| wrong labels left in the training set |", "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['noise']} | {r['rate']} | {r['seed']} | {r['flagged']} | {r['already_decided']} | "
                  f"{r['to_review']} | {r['wrong_in_to_review']} | {r['wrong_left']} |" for r in rounds]
    md = bench_dir / "retrain.md"
    text = "\n".join(lines) + "\n"
    atomic_write(md, lambda f: f.write(text.encode()))
    return [bench_dir / "retrain.csv", md]

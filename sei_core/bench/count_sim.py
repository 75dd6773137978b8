"""The count from the expert's decisions on the grid: a simulated truthful review of every cell.

For a finished cell (``run/`` and ``truth.csv``), :func:`simulate_cell` plays ``repeats``
truthful reviews of ``share_of_n × N`` decisions through the app's own queue, store (on a copy
of the label file) and estimator (:func:`sei_core.review_sim.simulate`) and summarises them
against the truth (:func:`sei_core.review_sim.summary`): the share of checkpoints whose 90 %
interval held the true count, the mean |relative error| and the share of replays within 15 %
at the last checkpoint, and the wrong labels found as a share of the static order's at the
worst checkpoint, beside the ranking's AUROC. ``sei bench --review-sim SHARE`` writes each
cell's replays to ``cells/…/review_sim.csv`` and the grid's table to ``review_sim.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..labels import truth_columns, truth_for
from ..metrics import auroc
from ..runs import Run

#: One row per cell of the grid's table.
SUMMARY_COLUMNS = ("cell", "n", "wrong", "auroc", "coverage", "checkpoints", "rel_error", "within15",
                   "min_found_ratio", "at", "replays", "needed")
CELL_FILE = "review_sim.csv"


def simulate_cell(folder: str | Path, share_of_n: float = 0.2, repeats: int = 10, **kw) -> tuple[pd.DataFrame, dict]:
    """The replays of one cell (``sei review-sim`` columns) and their summary row
    (:data:`SUMMARY_COLUMNS`). ``kw``: ``audit_share``, ``audit_boost``, ``seed`` of
    :func:`sei_core.review_sim.simulate`."""
    from ..review_sim import simulate
    from ..score_cache import scored

    folder = Path(folder)
    s = scored(Run(folder / "run"), write=False).scores
    n = len(s.ids)
    df = simulate(folder / "run", folder / "truth.csv", max(1, int(round(share_of_n * n))), repeats=repeats,
                  scores=s, **kw)
    return df, _summary_row(folder, df, s, share_of_n, repeats)


def decisions_needed(df: pd.DataFrame, share: float = 0.8, tolerance: float = 0.15) -> int | None:
    """The first checkpoint (decisions) from which at least ``share`` of the replays' estimates
    are within ``tolerance`` of the true count at every later checkpoint too; None if the
    replays never get there."""
    if not len(df):
        return None
    ok = ((df["estimate"] - df["true_count"]).abs() <= tolerance * df["true_count"].clip(lower=1))
    by = ok.groupby(df["decisions"]).mean().sort_index()
    good = by >= share
    bad = np.flatnonzero(~good.to_numpy())
    first = 0 if not bad.size else int(bad[-1]) + 1
    return int(by.index[first]) if first < len(by) else None


def _summary_row(folder: Path, df: pd.DataFrame, s, share_of_n: float, repeats: int) -> dict:
    from ..review_sim import summary

    wrong = truth_for(s.ids, truth_columns(folder / "truth.csv"), folder / "truth.csv")
    score = np.nan_to_num(np.asarray(s.score, dtype=float), nan=np.inf)
    n = len(s.ids)
    return dict(cell="/".join(folder.parts[-4:]), n=n, wrong=int(wrong.sum()), auroc=auroc(score, wrong),
                **summary(df, n, share_of_n), replays=repeats, needed=decisions_needed(df))


def write_cell(folder: str | Path, share_of_n: float = 0.2, repeats: int = 10, **kw) -> dict:
    """:func:`simulate_cell`, its replays written to ``folder/review_sim.csv`` (atomically);
    returns the summary row."""
    from ..files import atomic_write_csv

    df, row = simulate_cell(folder, share_of_n, repeats, **kw)
    atomic_write_csv(Path(folder) / CELL_FILE, df)
    return row


def grid_table(bench_dir: str | Path, share_of_n: float = 0.2) -> pd.DataFrame:
    """The summary row of every cell of ``bench_dir`` that has ``review_sim.csv`` (no replay
    is played again)."""
    from ..score_cache import scored

    rows = []
    for f in sorted(Path(bench_dir).glob(f"cells/*/*/rate*/seed*/{CELL_FILE}")):
        df = pd.read_csv(f)
        s = scored(Run(f.parent / "run"), write=False).scores
        rows.append(_summary_row(f.parent, df, s, share_of_n, int(df["replay"].nunique()) if len(df) else 0))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def table_markdown(t: pd.DataFrame) -> str:
    """The grid's table as Markdown, with the goals' summary line."""
    lines = ["| cell | AUROC | 90 % interval held the truth | mean \\|rel. error\\| | within 15 % | "
             "found / static order (worst checkpoint) | decisions until 80 % are within 15 % |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in t.itertuples():
        need = "not within the replays" if r.needed is None or pd.isna(r.needed) else \
            f"{int(r.needed)} ({100 * r.needed / r.n:.0f} % of N)"
        lines.append(f"| {r.cell} | {r.auroc:.3f} | {100 * r.coverage:.1f} % of {r.checkpoints} | "
                     f"{r.rel_error:.3f} | {100 * r.within15:.0f} % | {r.min_found_ratio:.2f} | {need} |")
    if len(t):
        lines += ["", f"{len(t)} cells: coverage {100 * t['coverage'].min():.0f}–{100 * t['coverage'].max():.0f} % "
                      f"({int(t['coverage'].between(0.85, 0.95).sum())} cells in 85–95 %), mean |relative error| "
                      f"{t['rel_error'].mean():.3f}, found / static order at least {t['min_found_ratio'].min():.2f}."]
    return "\n".join(lines) + "\n"


def write_report(bench_dir: str | Path, share_of_n: float = 0.2) -> list[Path]:
    """``review_sim.md`` (the table) and ``review_sim.csv`` (every replay row, with its cell)
    in ``bench_dir``; nothing when no cell has been simulated."""
    from ..files import atomic_write_bytes, atomic_write_csv

    bench_dir = Path(bench_dir)
    t = grid_table(bench_dir, share_of_n)
    if not len(t):
        return []
    rows = []
    for f in sorted(bench_dir.glob(f"cells/*/*/rate*/seed*/{CELL_FILE}")):
        df = pd.read_csv(f)
        df.insert(0, "cell", "/".join(f.parent.parts[-4:]))
        rows.append(df)
    md, csv = bench_dir / "review_sim.md", bench_dir / "review_sim.csv"
    atomic_write_bytes(md, (f"# The count from a simulated review ({share_of_n:.0%} of N decisions)\n\n"
                            + table_markdown(t)).encode("utf-8"))
    atomic_write_csv(csv, pd.concat(rows))
    return [md, csv]

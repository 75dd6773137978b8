"""Why does a ranking win or lose? Dissect SEI against AUM on one benchmark cell.

Reads a cell of `sei bench` (its SEI run and truth file) and prints, for the clean and the
noisy samples, what each epoch contributes:

- how often the prediction agrees with the given label, and the entropy in agreeing and in
  disagreeing epochs (SE = ±H, so a confident disagreement adds almost nothing to SEI);
- AUROC of every record-based method, overall and within each given class (SEI adds
  ``±log K'`` per early, near-uniform epoch, mostly with the sign of "is the given label the
  majority class", which a within-class AUROC removes);
- the "confidently wrong" noisy samples — the model predicts another class with low entropy
  in the last epochs — and where SEI and AUM place them among the clean samples;
- how much of SEI comes from the first and from the second half of training.

Usage::

    python benchmarks/sei_diagnostics.py bench/NAME/cells/<dataset>/<noise>/rate0.20/seed0
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sei_core.methods import METHODS  # noqa: E402
from sei_core.metrics import auroc  # noqa: E402
from sei_core.ranking import load_run, score_method  # noqa: E402
from sei_core.runs import Run  # noqa: E402


def _pct(x) -> str:
    return f"{100 * float(x):5.1f}%"


def diagnose(cell: Path, last: int = 5) -> str:
    run = Run(cell / "run")
    loaded = load_run(run)
    truth = pd.read_csv(cell / "truth.csv").set_index("path")
    noisy = truth.loc[loaded.ids, "is_noisy"].astype(str).str.lower().eq("true").to_numpy()
    scores = {m: score_method(loaded, m) for m in METHODS}
    src = scores["sei"].source_run - 1  # 0-based position of the run that scored each sample
    n = len(loaded.ids)
    cols = np.arange(n)

    def field(name: str) -> np.ndarray:  # (T, N) from each sample's scoring run
        t = min(r[name].shape[0] for r in loaded.records)
        return np.stack([r[name][-t:] for r in loaded.records])[src, :, cols].T.astype(np.float64)

    h, pred = field("entropy"), field("prediction")
    k_out = loaded.records[0]["probs_last"].shape[1]
    agree = pred == loaded.labels[None, :]
    t = h.shape[0]
    out = [f"{cell}: {n} samples, {int(noisy.sum())} noisy, {t} epochs, K' = {k_out} outputs "
           f"(log K' = {np.log(k_out):.2f})", ""]

    out.append("                      clean     noisy")
    out.append(f"agreeing epochs    {_pct(agree[:, ~noisy].mean())}   {_pct(agree[:, noisy].mean())}")
    for name, mask in (("H when agreeing", agree), ("H when disagreeing", ~agree)):
        vals = []
        for grp in (~noisy, noisy):
            m = mask[:, grp]
            vals.append(h[:, grp][m].mean() if m.any() else float("nan"))
        out.append(f"{name:<18} {vals[0]:6.3f}    {vals[1]:6.3f}")
    half = (t + 1) // 2
    se = np.where(agree, h, -h)
    for name, part in (("SEI, 1st half", se[:half]), ("SEI, 2nd half", se[half:])):
        s = part.sum(axis=0)
        out.append(f"{name:<18} {s[~noisy].mean():6.2f}    {s[noisy].mean():6.2f}")
    out.append("")

    classes = loaded.classes
    out.append("AUROC (noisy = positive; lower score = more suspicious)")
    header = "method                      all  " + " ".join(f"{c[:10]:>10}" for c in classes)
    out.append(header)
    for m, ms in scores.items():
        ok = np.isfinite(ms.score)
        row = [auroc(ms.score[ok], noisy[ok])]
        for k in range(len(classes)):
            g = ok & (loaded.labels == k)
            row.append(auroc(ms.score[g], noisy[g]) if 0 < noisy[g].sum() < g.sum() else float("nan"))
        out.append(f"{m:<26} {row[0]:5.3f} " + " ".join(f"{v:10.3f}" for v in row[1:]))
    out.append("")

    recent = slice(max(0, t - last), t)
    conf_wrong = noisy & (~agree[recent]).all(axis=0) & (h[recent].mean(axis=0) < 0.25 * np.log(k_out))
    out.append(f"confidently wrong noisy samples (last {last} epochs predict another class, "
               f"mean H < 0.25 log K'): {int(conf_wrong.sum())} of {int(noisy.sum())}")
    if conf_wrong.any():
        for m in ("sei", "sci", "aum"):
            s = scores[m].score
            clean_s = np.sort(s[~noisy & np.isfinite(s)])
            below = np.searchsorted(clean_s, s[conf_wrong]) / max(1, len(clean_s))
            out.append(f"  {m:<5} median percentile among clean samples: {_pct(np.median(below))}; "
                       f"flagged {_pct(scores[m].flagged[conf_wrong].mean())}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cell", type=Path, help="a cell folder of a bench directory")
    p.add_argument("--last", type=int, default=5, help="recent epochs for 'confidently wrong'")
    a = p.parse_args(argv)
    print(diagnose(a.cell, a.last))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""From a run's records to one ranked table: score, threshold, flag and suggested label.

Each complementary run scores every sample with the Signed Entropy Integral of its own
records and sets its threshold at the mean SEI of its auxiliary samples. A sample takes
the score of a run in which it kept its given label (:func:`sei_core.scores.combine_runs`).
The suggested label is the model's most frequent prediction over the last recorded epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .records import _atomic_save
from .runs import Run, RunError
from .scores import aux_threshold, combine_runs, signed_entropy_integral, suggested_labels


@dataclass
class RunScores:
    """Everything the CLI and the app show about a run's samples (arrays of length N)."""

    ids: list[str]
    classes: list[str]
    labels: np.ndarray  # given label index
    score: np.ndarray  # SEI (NaN where no run could score the sample)
    threshold: np.ndarray
    flagged: np.ndarray
    source_run: np.ndarray  # 1-based run index that scored the sample, 0 if none
    suggested: np.ndarray
    suggested_probability: np.ndarray
    signed_entropy: np.ndarray  # (T, N) from each sample's scoring run
    entropy: np.ndarray  # (T, N)
    prediction: np.ndarray  # (T, N)
    epochs: int
    run_thresholds: list[float]

    def table(self) -> pd.DataFrame:
        """The ranked table, most suspicious first (unscored samples last)."""
        k = len(self.classes)
        df = pd.DataFrame({
            "path": self.ids,
            "given_label": [self.classes[i] for i in self.labels],
            "sei": self.score,
            "threshold": self.threshold,
            "flagged": self.flagged,
            "suggested_label": [self.classes[i] if 0 <= i < k else "" for i in self.suggested],
            "suggested_probability": self.suggested_probability,
            "scored_by_run": self.source_run,
        })
        return df.sort_values("sei", kind="stable", na_position="last").reset_index(drop=True)


def score_run(run: Run) -> RunScores:
    """Score a run from whatever epochs it has recorded so far (finished or not)."""
    cfg = run.config()
    ids, names = run.samples()
    classes = list(cfg["classes"])
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[c] for c in names], dtype=np.int64)
    n, k = len(ids), len(classes)
    keep_probs = int(cfg.get("keep_probs", 5))
    usable, scores, thresholds, aux_masks, recs, probs = [], [], [], [], [], []
    for r in range(1, int(cfg.get("runs", 2)) + 1):
        store = run.records(r)
        if not store.epochs():
            continue
        rec = store.load()
        aux = np.zeros(n, dtype=bool)
        aux[run.aux_indices(r)] = True
        s = signed_entropy_integral(rec["signed_entropy"])
        usable.append(r)
        scores.append(s)
        thresholds.append(aux_threshold(s, aux))
        aux_masks.append(aux)
        recs.append(rec)
        probs.append(store.load_probs()[1][-keep_probs:])
    if not usable:
        raise RunError(f"{run.path} has no complete epoch yet; wait for the first epoch to finish")
    score, thr, src = combine_runs(np.stack(scores), np.array(thresholds), np.stack(aux_masks))
    t = min(r["signed_entropy"].shape[0] for r in recs)
    cols = np.arange(n)
    pick = np.clip(src, 0, None)

    def merged(field: str) -> np.ndarray:
        return np.stack([r[field][-t:] for r in recs])[:, :, cols][pick, :, cols].T

    last = min(p.shape[0] for p in probs)
    pred_last = np.stack([r["prediction"][-last:] for r in recs])[pick, :, cols].T
    probs_last = np.stack([p[-last:] for p in probs])[pick, :, cols].transpose(1, 0, 2)
    suggested, sp = suggested_labels(pred_last, probs_last, k)
    scored = src >= 0
    return RunScores(
        ids=ids, classes=classes, labels=labels, score=score, threshold=thr,
        flagged=np.where(scored, score < np.nan_to_num(thr, nan=-np.inf), False),
        source_run=np.where(scored, np.array(usable)[pick], 0),
        suggested=np.where(scored, suggested, -1), suggested_probability=np.where(scored, sp, np.nan),
        signed_entropy=merged("signed_entropy"), entropy=merged("entropy"),
        prediction=merged("prediction"), epochs=t, run_thresholds=thresholds,
    )


def write_scores(run: Run) -> pd.DataFrame:
    """Write ``scores.csv`` (the ranked table) into the run atomically and return it."""
    df = score_run(run).table()
    _atomic_save(run.path / "scores.csv", lambda f: f.write(df.to_csv(index=False).encode("utf-8")))
    return df

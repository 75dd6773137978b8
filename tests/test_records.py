"""The columnar record store: round trip, crash safety, sharded writes, old run directories,
size on disk, and scores computed range by range equal to scores over all samples."""

import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sei_core.methods import METHODS
from sei_core.ranking import load_run, method_scores, score_records, score_run
from sei_core.records import MANIFEST, Columns, Recorder, RecordStore, sample_range
from sei_core.runs import Run
from sei_core.scores import EpochStatistics, epoch_statistics, softmax

F16 = 2.0 ** -11  # float16's relative rounding error bound


def _epoch(rng, n, k_out, labels):
    logits = rng.normal(0, 3, (n, k_out))
    return epoch_statistics(logits, labels), softmax(logits).astype(np.float32)


def _fill(store, t, n=60, k_out=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k_out, n)
    stats, probs = [], []
    for e in range(1, t + 1):
        s, p = _epoch(rng, n, k_out, labels)
        store.write_epoch(e, s, p, loss=float(e), accuracy=0.5)
        stats.append(s)
        probs.append(p)
    return labels, stats, probs


def _stack(stats, field):
    return np.stack([getattr(s, field) for s in stats])


def _write_legacy(folder, stats, probs, keep_probs=5):
    """An old-format store, written as the previous RecordStore did."""
    folder.mkdir(parents=True, exist_ok=True)
    for e, (s, p) in enumerate(zip(stats, probs), 1):
        np.savez(folder / f"epoch_{e:04d}.npz", **{f: getattr(s, f) for f in EpochStatistics.FIELDS},
                 loss=np.asarray(float(e)), accuracy=np.asarray(0.5))
        if e > len(stats) - keep_probs:
            np.save(folder / f"probs_{e:04d}.npy", p.astype(np.float16))


def test_round_trip_and_derived_fields(tmp_path):
    store = RecordStore(tmp_path / "rec", keep_probs=2, capacity=5)
    labels, stats, probs = _fill(store, 5)
    assert store.epochs() == [1, 2, 3, 4, 5]
    assert store.scalars()[2] == {"loss": 3.0, "accuracy": 0.5}
    rec = store.load()
    assert isinstance(rec, Columns) and set(rec) == set(EpochStatistics.FIELDS)
    assert isinstance(rec["prediction"], np.memmap) and rec["margin"].shape == (5, 60)
    se_old = _stack(stats, "signed_entropy")
    se = rec["signed_entropy"]
    np.testing.assert_allclose(se, se_old, rtol=F16, atol=1e-7)
    # the derived entropy is exactly |SE|, and SE's sign is the old one (prediction == label)
    np.testing.assert_array_equal(rec["entropy"], np.abs(se))
    np.testing.assert_array_equal(np.signbit(se), np.signbit(se_old))
    np.testing.assert_array_equal(se >= 0, _stack(stats, "prediction") == labels)
    np.testing.assert_array_equal(rec["prediction"], _stack(stats, "prediction"))
    # p_label = exp(-nll), nll stored in float16: |Δp| ≤ p·nll·2^-11 (≤ 1.8e-4, at p = 1/e)
    p_old = _stack(stats, "p_label").astype(np.float64)
    assert np.all(np.abs(rec["p_label"] - p_old) <= p_old * -np.log(p_old) * F16 + 1e-7)
    np.testing.assert_allclose(rec["margin"], _stack(stats, "margin"), rtol=F16, atol=1e-7)
    epochs, p = store.load_probs()
    assert epochs == [4, 5] and p.dtype == np.float32
    np.testing.assert_allclose(p[1], probs[4], atol=1e-3)
    # only asked-for fields; a range of samples; pickles as a reference to the folder
    assert set(store.load(("p_label",))) == {"p_label"}
    part = rec.samples(10, 25)
    np.testing.assert_array_equal(part["entropy"], rec["entropy"][:, 10:25])
    back = pickle.loads(pickle.dumps(rec))
    assert len(pickle.dumps(rec)) < 1000 and np.array_equal(back["p_label"], rec["p_label"])


def test_columns_grow_past_the_preallocated_epochs(tmp_path):
    store = RecordStore(tmp_path / "rec", capacity=2)
    _, stats, _ = _fill(store, 5)
    assert store.manifest()["capacity"] >= 5
    np.testing.assert_array_equal(store.load()["prediction"], _stack(stats, "prediction"))


def test_records_take_at_most_ten_bytes_per_sample_and_epoch(tmp_path):
    n, t, k_out = 1000, 150, 8  # K = 7 classes and the auxiliary class, the paper's 150 epochs
    store = RecordStore(tmp_path / "rec", keep_probs=5, capacity=t)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, k_out, n)
    s, p = _epoch(rng, n, k_out, labels)
    for e in range(1, t + 1):
        store.write_epoch(e, s, p)
    sizes = {f: os.path.getsize(tmp_path / "rec" / f) for f in os.listdir(tmp_path / "rec")}
    columns = sum(v for f, v in sizes.items() if not f.startswith("probs_"))
    assert columns / (n * t) <= 7.1  # 2 + 1 + 2 + 2 bytes, headers and manifest
    assert sum(sizes.values()) / (n * t) <= 10
    assert len([f for f in sizes if f.startswith("probs_")]) == 5


def test_an_epoch_killed_mid_write_is_ignored_and_redone(tmp_path):
    folder = tmp_path / "rec"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from sei_core.records import RecordStore
        from sei_core.scores import epoch_statistics, softmax
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 4, 60)
        store = RecordStore({str(folder)!r}, capacity=4)
        for e in (1, 2):
            lg = rng.normal(0, 3, (60, 4))
            store.write_epoch(e, epoch_statistics(lg, labels), softmax(lg))
        lg = rng.normal(0, 3, (60, 4))
        store.begin_epoch(3, 60, 4)
        store.write_rows(3, slice(0, 30), epoch_statistics(lg[:30], labels[:30]), softmax(lg[:30]))
        os.kill(os.getpid(), signal.SIGKILL)  # killed before the epoch is committed
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == -9
    store = RecordStore(folder, capacity=4)
    assert store.epochs() == [1, 2]
    assert store.load()["p_label"].shape == (2, 60) and store.load_probs()[0] == [1, 2]
    before = np.array(store.load()["margin"])
    store.truncate(2)  # what a resumed run does
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 60)
    s, p = _epoch(rng, 60, 4, labels)
    store.write_epoch(3, s, p)
    assert store.epochs() == [1, 2, 3]
    np.testing.assert_array_equal(store.load()["margin"][:2], before)
    np.testing.assert_allclose(store.load()["margin"][2], s.margin, rtol=F16, atol=1e-7)
    # rewriting a complete epoch first forgets it and every later one
    store.begin_epoch(2, 60, 4)
    assert store.epochs() == [1]
    with pytest.raises(ValueError, match="cannot write epoch 4"):
        store.begin_epoch(4, 60, 4)


def _shard(folder, rank, world, epoch, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 101)
    s, p = _epoch(rng, 101, 5, labels)
    ids = np.arange(rank, 101, world)  # DistributedSampler's strided shard
    part = EpochStatistics(**{f: getattr(s, f)[ids] for f in EpochStatistics.FIELDS})
    RecordStore(folder).write_rows(epoch, ids, part, p[ids])


def test_ranks_fill_one_epoch_by_sample_id(tmp_path):
    sharded, whole = RecordStore(tmp_path / "sharded"), RecordStore(tmp_path / "whole")
    for e in (1, 2):
        sharded.begin_epoch(e, 101, 5)
        ctx = multiprocessing.get_context("fork")
        procs = [ctx.Process(target=_shard, args=(sharded.folder, r, 2, e, e)) for r in range(2)]
        for pr in procs:
            pr.start()
        for pr in procs:
            pr.join()
            assert pr.exitcode == 0
        sharded.commit_epoch(e, loss=1.0)
        rng = np.random.default_rng(e)
        s, p = _epoch(rng, 101, 5, rng.integers(0, 5, 101))
        whole.write_epoch(e, s, p, loss=1.0)
    a, b = sharded.load(), whole.load()
    for f in EpochStatistics.FIELDS:
        np.testing.assert_array_equal(a[f], b[f])
    np.testing.assert_array_equal(sharded.load_probs()[1], whole.load_probs()[1])


def test_old_run_directories_open_and_convert_once_when_written(tmp_path, capsys):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 60)
    stats, probs = zip(*[_epoch(rng, 60, 4, labels) for _ in range(6)])
    folder = tmp_path / "rec"
    _write_legacy(folder, stats, probs)
    store = RecordStore(folder, keep_probs=5)
    assert store.is_legacy() and store.epochs() == list(range(1, 7))
    rec = store.load()  # read as it is, nothing written
    np.testing.assert_array_equal(rec["signed_entropy"], _stack(stats, "signed_entropy"))
    assert store.load_probs()[0] == [2, 3, 4, 5, 6] and store.scalars()[5]["loss"] == 6.0
    assert not (folder / MANIFEST).exists()

    store.truncate(6)  # a resumed run: converted once, with a message
    assert "converted 6 epochs" in capsys.readouterr().err
    assert not store.is_legacy() and not list(folder.glob("epoch_*.npz"))
    new = store.load()
    np.testing.assert_allclose(new["signed_entropy"], _stack(stats, "signed_entropy"), rtol=F16, atol=1e-7)
    np.testing.assert_array_equal(new["prediction"], _stack(stats, "prediction"))
    assert store.load_probs()[0] == [2, 3, 4, 5, 6] and store.scalars()[5]["loss"] == 6.0
    s, p = _epoch(rng, 60, 4, labels)
    store.write_epoch(7, s, p)
    assert store.epochs() == list(range(1, 8)) and store.load_probs()[0] == [3, 4, 5, 6, 7]


def _records(t=9, n=50, k=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k + 1, n)
    stats = [epoch_statistics(rng.normal(0, 2, (n, k + 1)), labels) for _ in range(t)]
    rec = {f: _stack(stats, f) for f in EpochStatistics.FIELDS}
    rec.update(probs_last=softmax(rng.normal(0, 2, (n, k + 1))), labels=labels, is_aux=labels == k)
    return rec


@pytest.mark.parametrize("name", sorted(METHODS))
def test_scores_over_ranges_of_samples_equal_scores_over_all(name, tmp_path):
    """Every method marked per-sample gives the same numbers computed 7 samples at a time
    (from a dict or from memory-mapped records); the others are computed over all samples."""
    m = METHODS[name]
    rec = _records()
    np.testing.assert_array_equal(method_scores(m, rec, 50, chunk=7), np.asarray(m(rec), dtype=np.float64))
    store = RecordStore(tmp_path / "rec")
    for e in range(rec["prediction"].shape[0]):
        stats = EpochStatistics(**{f: rec[f][e] for f in EpochStatistics.FIELDS})
        store.write_epoch(e + 1, stats, rec["probs_last"])
    cols = store.load()
    cols.update(probs_last=rec["probs_last"], labels=rec["labels"], is_aux=rec["is_aux"])
    whole = {f: np.asarray(cols[f]) for f in cols}
    np.testing.assert_array_equal(method_scores(m, cols, 50, chunk=7), np.asarray(m(whole), dtype=np.float64))
    assert sample_range(rec, 7, 14, 50)["probs_last"].shape == (7, 4)


def _synthetic_run(path, stats_by_run, probs_by_run, legacy=False, n=60, k=3):
    run = Run(path)
    run.write_config({"classes": [f"c{i}" for i in range(k)], "runs": 2, "epochs": len(stats_by_run[0]),
                      "keep_probs": 5})
    rng = np.random.default_rng(5)
    run.write_samples([f"img{i}.png" for i in range(n)], [f"c{i}" for i in rng.integers(0, k, n)])
    for r, (stats, probs) in enumerate(zip(stats_by_run, probs_by_run), 1):
        run.sub_run(r).mkdir(parents=True, exist_ok=True)
        np.save(run.sub_run(r) / "aux.npy", np.arange((r - 1) * 10, r * 10))
        if legacy:
            _write_legacy(run.records(r).folder, stats, probs)
        else:
            for e, (s, p) in enumerate(zip(stats, probs), 1):
                run.records(r).write_epoch(e, s, p)
    return run


def test_score_run_on_old_and_new_records(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 60)
    stats = [[_epoch(rng, 60, 4, labels) for _ in range(8)] for _ in range(2)]
    s_by_run = [[s for s, _ in run] for run in stats]
    p_by_run = [[p for _, p in run] for run in stats]
    old = score_run(_synthetic_run(tmp_path / "old", s_by_run, p_by_run, legacy=True))
    new = score_run(_synthetic_run(tmp_path / "new", s_by_run, p_by_run))
    np.testing.assert_allclose(new.score, old.score, atol=1e-3)
    np.testing.assert_allclose(new.sei, old.sei, atol=8 * 2 * np.log(4) * F16)
    np.testing.assert_array_equal(new.suggested, old.suggested)
    np.testing.assert_array_equal(new.source_run, old.source_run)
    # per-epoch arrays of each sample's scoring run, built on first use
    src = new.source_run
    want = np.where(src == 1, _stack(s_by_run[0], "signed_entropy"), _stack(s_by_run[1], "signed_entropy"))
    np.testing.assert_array_equal(old.signed_entropy, want)
    np.testing.assert_allclose(new.signed_entropy, want, rtol=F16, atol=1e-7)
    np.testing.assert_array_equal(new.entropy, np.abs(new.signed_entropy))
    np.testing.assert_array_equal(new.prediction, old.prediction)
    assert new.prediction.dtype == np.int16 and new.signed_entropy.shape == (8, 60)
    assert list(new.table().columns) == list(old.table().columns)
    loaded = load_run(Run(tmp_path / "new"))
    assert all(isinstance(r, Columns) for r in loaded.records)
    ms = score_records(loaded.records, loaded.is_aux, "confidence", chunk=11)
    np.testing.assert_array_equal(ms.score, new.score)


def test_scores_of_mapped_records_are_kept_until_an_input_is_replaced(tmp_path):
    rec = _records()
    store = RecordStore(tmp_path / "rec")
    for e in range(rec["prediction"].shape[0]):
        store.write_epoch(e + 1, EpochStatistics(**{f: rec[f][e] for f in EpochStatistics.FIELDS}), rec["probs_last"])
    cols = store.load()
    cols.update(probs_last=rec["probs_last"], labels=rec["labels"], is_aux=rec["is_aux"])
    sci = METHODS["sci"]
    first = method_scores(sci, cols, 50)
    first[:] = 0  # callers get their own copy
    again = method_scores(sci, cols, 50)
    assert len(cols.memo) == 1 and np.array_equal(again, method_scores(sci, dict(cols), 50))
    cols["labels"] = (rec["labels"] + 1) % 4  # other labels: other agreement signs, other scores
    changed = method_scores(sci, cols, 50)
    assert not np.array_equal(changed, again) and len(cols.memo) == 2


def test_recorder_update_finalize_matches_direct_statistics():
    torch.manual_seed(0)
    logits = torch.randn(10, 4)
    targets = torch.randint(0, 4, (10,))
    rec = Recorder(10, 4)
    for ids in (torch.tensor([7, 2, 9]), torch.tensor([0, 1, 3, 4, 5, 6, 8])):
        rec.update(logits[ids], targets[ids], ids)
    stats, probs = rec.finalize()
    want = epoch_statistics(logits.numpy(), targets.numpy())
    assert np.allclose(stats.signed_entropy, want.signed_entropy)
    assert np.array_equal(stats.prediction, want.prediction)
    assert probs.shape == (10, 4)
    with pytest.raises(RuntimeError, match="not recorded"):
        rec.update(logits[:2], targets[:2], torch.tensor([0, 1]))
        rec.finalize()


def test_recorder_takes_bf16_logits_and_int32_ids_of_a_users_loop():
    """A loop of one's own (``run_writer``) may hand int32 ids and bf16 logits (autocast):
    the recorder stores them as float32 logits at int64 positions, and a later epoch
    overwrites an earlier one's rows."""
    torch.manual_seed(1)
    rec = Recorder(6, 3)
    rec.update(torch.zeros(6, 3), torch.zeros(6, dtype=torch.int64), torch.arange(6))
    rec.finalize()
    logits = torch.randn(6, 3).to(torch.bfloat16)
    targets = torch.tensor([2, 0, 1, 1, 0, 2], dtype=torch.int32)
    order = torch.tensor([5, 3, 1, 0, 2, 4], dtype=torch.int32)
    rec.update(logits[order.long()], targets[order.long()], order)
    stats, probs = rec.finalize()
    want = epoch_statistics(logits.float().numpy(), targets.long().numpy())
    assert np.allclose(stats.signed_entropy, want.signed_entropy)
    assert np.allclose(probs, softmax(logits.float().numpy()), atol=1e-6)


def test_flags_table_and_csv_of_a_run_without_importing_torch(tmp_path):
    """`sei flags` reads and scores records without torch (importing it is most of a cold
    start); its flagged-only table is the full table's flagged rows in the same order, and
    the CSV reads back as the table."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 60)
    stats = [[_epoch(rng, 60, 4, labels) for _ in range(6)] for _ in range(2)]
    run = _synthetic_run(tmp_path / "run", [[s for s, _ in r] for r in stats], [[p for _, p in r] for r in stats])
    out = tmp_path / "flags.csv"
    code = ("import sys; from sei_core import cli; rc = cli.main(['flags', sys.argv[1], '--out', sys.argv[2]]); "
            "assert rc == 0; assert 'torch' not in sys.modules, 'sei flags imported torch'")
    proc = subprocess.run([sys.executable, "-c", code, str(run.path), str(out)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr
    s = score_run(run)
    full, flagged = s.table(), s.table(flagged_only=True)
    assert 0 < len(flagged) < len(full)
    pd.testing.assert_frame_equal(flagged, full[full["flagged"]].reset_index(drop=True), check_dtype=False)
    back = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(back.columns) == list(flagged.columns)
    assert back["path"].tolist() == flagged["path"].tolist()
    np.testing.assert_array_equal(back["flagged"].to_numpy(bool), flagged["flagged"].to_numpy(bool))
    np.testing.assert_array_equal(back[s.method].to_numpy(float), flagged[s.method].to_numpy(float))

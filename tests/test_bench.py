"""The benchmark: merging any method across complementary runs, reports, and one real
end-to-end `sei bench` on a 48-image generated set (resumable, every method measured)."""

import math

import numpy as np
import pandas as pd
import pytest

from sei_core import bench, cli
from sei_core import methods
from sei_core.methods import COUNT_ESTIMATOR, COUNT_METHOD, METHODS, method_names
from sei_core.bench.crossval import stratified_folds
from sei_core.runs import Run

from conftest import bench_args as _bench_args


def test_stratified_folds_are_balanced_and_seeded():
    labels = np.repeat([0, 1, 2], 10)
    f = stratified_folds(labels, 5, seed=3)
    assert sorted(np.bincount(f)) == [6] * 5
    for k in range(3):
        assert sorted(np.bincount(f[labels == k], minlength=5)) == [2] * 5
    assert np.array_equal(f, stratified_folds(labels, 5, seed=3))
    with pytest.raises(ValueError):
        stratified_folds(labels, 1)


def _fake_results():
    rows = []
    for seed, (a, b) in enumerate([(0.4, 0.8), (0.6, 0.9)]):
        for method, f1 in (("sei", a), ("aum", b)):
            rows.append({"dataset": "d", "noise": "symmetric", "rate": 0.2, "seed": seed, "method": method,
                         "f1": f1, "precision": f1, "recall": f1, "auroc": f1, "ap": f1, "flagged": 3,
                         "wall_seconds": 10.0, "n_samples": 10, "n_noisy": 2, "train_seconds": 9.0,
                         "score_seconds": 1.0, "threshold_rule": "x"})
    return pd.DataFrame(rows)


def test_summary_and_markdown_report():
    res = _fake_results()
    s = bench.summarize(res)
    row = s[s["method"] == "sei"].iloc[0]
    assert row["f1_mean"] == pytest.approx(0.5) and row["f1_std"] == pytest.approx(math.sqrt(0.02))
    assert row["seeds"] == 2
    md = bench.markdown_report(res)
    assert "## d, symmetric noise (2 seeds)" in md
    assert "| sei | 50.0 ± 14.1 |" in md and "| aum | **85.0 ± 7.1** |" in md
    assert "| aum | **0.850 ± 0.071** |" in md  # AUROC as a fraction
    assert md.index("| sei |") < md.index("| aum |")  # registry order: SEI first
    figs = bench.figures(res)
    assert set(figs) == {"f1", "auroc", "ap"}


def test_load_results_from_file_and_empty_folder(tmp_path):
    assert bench.load_results(tmp_path).empty
    f = tmp_path / "r.csv"
    _fake_results().to_csv(f, index=False)
    df = bench.load_results(f)
    assert list(df.columns) == bench.RESULT_COLUMNS and len(df) == 4


def test_dataset_names():
    assert bench.dataset_name("/x/derm-ham10000/labels.csv") == "derm-ham10000"
    assert bench.dataset_name("/x/retinamnist/retinamnist.npz") == "retinamnist"
    assert bench.dataset_name("/x/my data/train set.csv") == "train-set"


def test_stratified_subset_keeps_class_proportions():
    labels = np.array([0] * 700 + [1] * 200 + [2] * 95 + [3] * 5)
    keep = bench.stratified_subset(labels, 100, seed=0)
    assert len(keep) == 100 and len(set(keep)) == 100 and np.all(np.diff(keep) > 0)
    assert np.bincount(labels[keep]).tolist() == [70, 20, 9, 1]  # largest remainder: 9.5 -> 9, 0.5 -> 1
    assert np.array_equal(keep, bench.stratified_subset(labels, 100, seed=0))
    assert not np.array_equal(keep, bench.stratified_subset(labels, 100, seed=1))
    assert np.array_equal(bench.stratified_subset(labels, 5000), np.arange(1000))
    rare = np.array([0] * 98 + [1, 2])
    assert np.bincount(rare[bench.stratified_subset(rare, 5)]).tolist() == [3, 1, 1]  # no class lost


def test_prepare_source_subset_and_its_record(tiny_data, tmp_path):
    full = bench.prepare_source(tiny_data, tmp_path / "a")
    sub = bench.prepare_source(tiny_data, tmp_path / "b", max_samples=20)
    assert len(sub.table) == 20 and set(sub.table["path"]) <= set(full.table["path"])
    assert np.array_equal(sub.labels, full.labels[bench.stratified_subset(full.labels, 20)])
    again = bench.prepare_source(tiny_data, tmp_path / "b", max_samples=20)
    assert list(again.table["path"]) == list(sub.table["path"])
    spec = bench.BenchSpec(data=[str(tiny_data)], max_samples=20, train={"epochs": 1})
    bench.grid._check_bench_json(tmp_path / "b", spec)
    with pytest.raises(bench.BenchError, match="max samples 20"):
        bench.grid._check_bench_json(tmp_path / "b", bench.BenchSpec(data=[str(tiny_data)], train={"epochs": 1}))
    with pytest.raises(bench.BenchError, match="max-samples"):
        bench.BenchSpec(data=["x"], folds=5, max_samples=6).validate()


def test_spec_is_checked():
    with pytest.raises(bench.BenchError, match="rates"):
        bench.BenchSpec(data=["x"], rates=[0.0]).validate()
    with pytest.raises(bench.BenchError, match="unknown method"):
        bench.BenchSpec(data=["x"], methods=["sei", "magic"]).validate()
    with pytest.raises(bench.BenchError, match="noise"):
        bench.BenchSpec(data=["x"], noise=["pairflip"]).validate()



def test_sei_bench_end_to_end_and_resumable(tiny_bench, tiny_data, tiny_train, capsys):
    out = tiny_bench
    name = bench.dataset_name(tiny_data)
    res = pd.read_csv(out / "results.csv")
    # every method with its own rule and with the count rule, confident learning included
    assert set(res["method"]) == set(method_names(bench.BENCH_RULES))
    assert len(res) == len(method_names(bench.BENCH_RULES)) and "sei@count" in set(res["method"])
    counts = bench.load_counts(out)
    assert set(zip(counts["estimator"], counts["scores"])) == set(bench.COUNT_ESTIMATES)
    assert (counts["n_noisy"] == 12).all() and (counts["low"] <= counts["high"]).all()
    # the count rule flags as many as the app's estimate says, whatever the method ranks by
    counted = res[res["method"].str.endswith("@count")]["flagged"]
    assert counted.nunique() == 1 and 0 <= counted.iloc[0] <= 48
    assert (COUNT_ESTIMATOR, COUNT_METHOD) in set(zip(counts["estimator"], counts["scores"]))
    assert (res[["dataset", "noise", "rate", "seed"]].drop_duplicates().values.tolist()
            == [[name, "symmetric", 0.25, 0]])
    for m in bench.METRICS:
        assert res[m].between(0, 1).all(), m
    assert (res["n_samples"] == 48).all() and (res["n_noisy"] == 12).all()  # 25% of 48, every sample scored
    assert (res["wall_seconds"] >= res["train_seconds"]).all() and (res["train_seconds"] > 0).all()
    md = (out / "results.md").read_text()
    assert f"## {name}, symmetric noise (1 seed)" in md and "| confident_learning |" in md
    assert (out / "plots" / "f1.html").is_file()

    cell = out / "cells" / name / "symmetric" / "rate0.25" / "seed0"
    truth = pd.read_csv(cell / "truth.csv")
    assert truth["is_noisy"].sum() == 12 and truth["path"].map(lambda p: p.startswith("/")).all()
    run = Run(cell / "run")
    assert run.status()["state"] == "finished" and not run.checkpoint(1).exists()  # checkpoints removed
    assert len(list((cell / "cv").glob("fold_*.npz"))) == 2
    assert len(list((out / "cache").glob("*.npy"))) == 1  # images decoded once for all runs
    status_before = (run.path / "status.json").read_bytes()

    # the same command again: the finished cell is skipped, nothing is trained
    capsys.readouterr()
    assert cli.main(_bench_args(tiny_data, out, tiny_train)) == 0
    assert "0 cell(s) measured, 1 already done" in capsys.readouterr().out
    assert (run.path / "status.json").read_bytes() == status_before
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), res)

    # a method whose row is missing is scored from the recorded run, without training
    cell_rows = pd.read_csv(cell / "results.csv")
    cell_rows[cell_rows["method"] != "aum"].to_csv(cell / "results.csv", index=False)
    report = bench.run_bench(bench.BenchSpec(
        data=[str(tiny_data)], rates=[0.25], seeds=[0], folds=2,
        train=_train_settings(_bench_args(tiny_data, out, tiny_train))), out, log=lambda m: None)
    assert report.cells == {f"{name}/symmetric/rate0.25/seed0": "completed"} and not report.failures
    assert (run.path / "status.json").read_bytes() == status_before
    again = bench.load_results(out)
    assert sorted(again["method"]) == sorted(res["method"])
    a = again.set_index("method").loc["aum", ["f1", "auroc"]]
    b = res.set_index("method").loc["aum", ["f1", "auroc"]]
    np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float))

    # other training settings may not be mixed into the same bench directory
    assert cli.main(_bench_args(tiny_data, out, {**tiny_train, "lr": 0.5})) == 1
    assert "other settings" in capsys.readouterr().err


def _train_settings(args):
    """The training settings `sei bench ARGS` records (the CLI's defaults plus the options)."""
    settings = cli.training_settings(cli.build_parser().parse_args(args))
    settings.pop("seed")
    return settings


def test_reference_confusion_is_cached(tiny_data, tiny_train, tmp_path):
    out = tmp_path / "bench"
    spec = bench.BenchSpec(data=[str(tiny_data)], noise=["confusion"], rates=[0.25], seeds=[0], folds=2,
                           train={**tiny_train, "epochs": 1})
    source = bench.prepare_source(tiny_data, out)
    t = bench.reference_confusion(source, 0, spec, out, log=lambda m: None)
    assert t.shape == (4, 4) and np.allclose(t.sum(axis=1), 1.0)
    ref = out / "reference" / source.name / "seed0"
    assert (ref / "confusion.npy").is_file() and len(list(ref.glob("fold_*.npz"))) == 2
    mtime = (ref / "confusion.npy").stat().st_mtime_ns
    assert np.array_equal(bench.reference_confusion(source, 0, spec, out), t)
    assert (ref / "confusion.npy").stat().st_mtime_ns == mtime
    noisy = bench.make_noisy_labels(source, "confusion", 0.25, 0, t)
    assert (noisy != source.labels).sum() == 12
    assert np.array_equal(noisy, bench.make_noisy_labels(source, "confusion", 0.25, 0, t))
    with pytest.raises(ValueError):
        bench.make_noisy_labels(source, "confusion", 0.25, 0)


def test_score_run_accepts_a_method(tiny_bench, tiny_data):
    """`score_run(run)` ranks by the default method; `method=` by any registered method; the
    paper's SEI is always scored beside it and in the table."""
    from sei_core.methods import DEFAULT_METHOD
    from sei_core.ranking import score_method, score_run

    run = Run(tiny_bench / "cells" / bench.dataset_name(tiny_data) / "symmetric" / "rate0.25" / "seed0" / "run")
    s = score_run(run)
    assert s.method == DEFAULT_METHOD and {DEFAULT_METHOD, "sei"} <= set(s.table().columns)
    # the run's error count comes with every scoring, and the variant name picks the count rule
    from sei_core.methods import DEFAULT_RULE

    assert s.rule == DEFAULT_RULE and s.count is not None and s.count.n_samples == 48
    assert s.count.low <= s.count.count <= s.count.high
    c = score_run(run, "sei@count")
    assert c.method == "sei" and c.rule == "count" and c.count is not None
    assert c.flagged.sum() == (c.count.per_class_k().sum() if methods.COUNT_PER_CLASS else c.count.k)
    np.testing.assert_allclose(s.score, score_method(run, DEFAULT_METHOD).score)
    a = score_run(run, method="aum")
    table = a.table()
    assert a.method == "aum" and table["aum"].is_monotonic_increasing
    np.testing.assert_allclose(a.score, score_method(run, "aum").score)
    paper = score_method(run, "sei")
    np.testing.assert_allclose(a.sei, paper.score)
    assert np.array_equal(a.sei_flagged, paper.flagged)
    assert table["sei_flagged"].sum() == paper.flagged.sum() and "sei_threshold" in table.columns
    assert list(score_run(run, "sei").table().columns).count("sei") == 1
    assert np.array_equal(a.source_run, s.source_run)
    # the bench's numbers are those of the same merge
    truth = pd.read_csv(run.path.parent / "truth.csv").set_index("path").loc[s.ids, "is_noisy"].to_numpy()
    rows = pd.read_csv(run.path.parent / "results.csv").set_index("method")
    from sei_core.metrics import auroc

    assert auroc(a.score, truth) == pytest.approx(rows.loc["aum", "auroc"])
    assert set(METHODS) <= set(method_names())


def test_results_api_reads_a_bench_folder_without_knowing_its_layout(tmp_path):
    assert bench.settings(tmp_path) == {} and bench.load_counts(tmp_path).empty
    before = bench.stamp(tmp_path)
    cell = bench.cell_folder(tmp_path, "d", "symmetric", 0.2, 0)
    rows = pd.DataFrame([{"dataset": "d", "noise": "symmetric", "rate": 0.2, "seed": 0, "method": "sei", "f1": 0.5}])
    bench.results.write_csv(rows, cell / "results.csv")
    counts = pd.DataFrame([
        {"dataset": "d", "noise": "symmetric", "rate": 0.2, "seed": 0, "estimator": "bbe", "scores": "confidence",
         "count": 110.0, "low": 90.0, "high": 130.0, "n_noisy": 100, "n_samples": 500},
        {"dataset": "d", "noise": "symmetric", "rate": 0.4, "seed": 0, "estimator": "bbe", "scores": "confidence",
         "count": 150.0, "low": 160.0 - 20, "high": 170.0, "n_noisy": 200, "n_samples": 500}])
    bench.results.write_csv(counts[:1], cell / "counts.csv")
    bench.results.write_csv(counts[1:], bench.cell_folder(tmp_path, "d", "symmetric", 0.4, 0) / "counts.csv")
    assert bench.stamp(tmp_path) != before
    assert bench.load_results(tmp_path)["method"].tolist() == ["sei"]
    assert len(bench.load_counts(tmp_path)) == 2
    t = bench.count_errors_table(bench.load_counts(tmp_path)).iloc[0]
    assert t["cells"] == 2 and t["mare"] == pytest.approx((0.1 + 0.25) / 2)
    assert t["bias"] == pytest.approx((0.1 - 0.25) / 2) and t["within_15"] == 1 and t["covered"] == 1


def test_a_label_file_with_other_columns_is_benchmarked_from_them(tiny_data, tmp_path):
    from conftest import write_mapped_labels
    from sei_core.config import TrainConfig

    f = write_mapped_labels(tiny_data, tmp_path / "derm.csv")
    with pytest.raises(bench.grid.ds_mod.DataError, match="its columns are 'image_id', 'diagnosis' and 'age'"):
        bench.prepare_source(f, tmp_path / "a")
    src = bench.prepare_source(f, tmp_path / "a", path_column="image_id", label_column="diagnosis")
    plain = bench.prepare_source(tiny_data, tmp_path / "b")
    assert list(src.table.columns) == ["path", "label"]  # the bench's own copy: path,label
    assert list(src.table["label"]) == list(plain.table["label"]) and src.classes == plain.classes
    # a run config's columns go to the source, not to the cells (which train on that path,label copy)
    spec = bench.grid.spec_from_train_config(TrainConfig(data=str(f), path_column="image_id",
                                                         label_column="diagnosis"), data=[str(f)])
    assert (spec.path_column, spec.label_column) == ("image_id", "diagnosis")
    assert "path_column" not in spec.train and "label_column" not in spec.train


def test_sei_bench_review_sim_measures_the_count_from_decisions_without_training(tiny_bench, tiny_data, tiny_train,
                                                                                capsys):
    out = tiny_bench
    name = bench.dataset_name(tiny_data)
    cell = out / "cells" / name / "symmetric" / "rate0.25" / "seed0"
    status_before = (cell / "run" / "status.json").read_bytes()
    try:
        args = _bench_args(tiny_data, out, tiny_train) + ["--review-sim", "0.5", "--review-sim-repeats", "2"]
        assert cli.main(args) == 0
        assert "1 cell(s) measured" in capsys.readouterr().out
        assert (cell / "run" / "status.json").read_bytes() == status_before  # the finished run is only read
        sim = pd.read_csv(cell / "review_sim.csv")
        assert sorted(sim["replay"].unique()) == [0, 1] and sim["decisions"].max() == 24  # 0.5 × 48
        assert (sim["true_count"] == 12).all() and (sim["found"] <= sim["decisions"]).all()
        md = (out / "review_sim.md").read_text()
        assert f"| {name}/symmetric/rate0.25/seed0 |" in md and "1 cells: coverage" in md
        assert set(pd.read_csv(out / "review_sim.csv")["cell"]) == {f"{name}/symmetric/rate0.25/seed0"}
        # again: nothing to do
        assert cli.main(args) == 0
        assert "0 cell(s) measured, 1 already done" in capsys.readouterr().out
        assert cli.main(_bench_args(tiny_data, out, tiny_train) + ["--review-sim", "1.5"]) == 1
        assert "--review-sim must be a share" in capsys.readouterr().err
    finally:
        for f in (cell / "review_sim.csv", out / "review_sim.md", out / "review_sim.csv"):
            f.unlink(missing_ok=True)

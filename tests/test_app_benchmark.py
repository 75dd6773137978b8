"""AppTest: the Benchmark page — the selected run scored against its truth file, and a `sei bench` grid."""

import json

import numpy as np
import pandas as pd

from sei_core import bench, workspace
from sei_core.methods import DEFAULT_METHOD, applicable
from sei_core.runs import Run

BENCH = "pages/benchmark.py"


def grid_table(at) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "25%" in d.value.columns)


def test_selected_run_is_scored_by_every_method(open_app, app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SEI_BENCH_DIR", str(tmp_path / "no-bench-here"))
    at = open_app(BENCH)
    assert not at.error
    run = Run(app_env.run)
    from sei_core.ranking import load_run

    loaded = load_run(run)
    want = bench.evaluate_run(loaded, workspace.load_truth(app_env.labels, loaded.ids)).set_index("method")
    expected = sum(len(applicable(rule)) for rule in bench.BENCH_RULES)  # each method under every rule it can take
    assert len(want) == expected
    metrics = {m.label: m.value for m in at.metric}
    for m in {DEFAULT_METHOD, "sei"}:
        label = next(k for k in metrics if k.startswith(f"F1 of the {m} ("))
        assert metrics[label] == f"{100 * want.loc[m, 'f1']:.1f}%"
    shown = at.dataframe[0].value
    assert len(shown) == expected
    assert np.allclose(shown["f1"].to_numpy(float), 100 * want.loc[[m.split(" (")[0] for m in shown["method"]], "f1"])
    # no bench folder: the page says how to make one
    assert any("sei bench" in i.value for i in at.info)


def test_run_without_truth_file_says_so(open_app, app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("SEI_BENCH_DIR", str(tmp_path / "none"))
    (app_env.labels.parent / "truth.csv").unlink()
    at = open_app(BENCH)
    assert not at.error and not at.exception
    assert any("has no truth file" in i.value for i in at.info)
    assert not at.metric


def test_bench_grid_tables_plot_and_wins(open_app, tiny_bench, monkeypatch):
    monkeypatch.setenv("SEI_BENCH_DIR", str(tiny_bench.parent))
    at = open_app(BENCH)
    assert not at.exception
    assert at.selectbox(key="bench_dir").value == str(tiny_bench)
    results = bench.load_results(tiny_bench)
    table = grid_table(at)
    f1 = results.set_index("method")["f1"]
    assert len(table) == len(f1)
    for _, row in table.iterrows():
        assert row["25%"] == f"{100 * f1[row['method'].split(' (')[0]]:.1f}"
    assert any("is at or above every other method" in m.value for m in at.markdown)
    plotted = {t.get("name") for el in at.get("plotly_chart") for t in json.loads(el.proto.spec)["data"]}
    assert plotted >= set(results["method"])  # every measured method is in the plot
    allc = next(d.value for d in at.dataframe if "best_in" in d.value.columns)
    assert len(allc) == len(results) and allc["rank"].tolist() == list(range(1, len(results) + 1))
    at.selectbox(key="bench_metric").select("auroc").run()
    auroc = results.set_index("method")["auroc"]
    row = grid_table(at).iloc[0]
    assert row["25%"] == f"{auroc[row['method'].split(' (')[0]]:.3f}"


def test_bench_folder_errors_are_messages(open_app, monkeypatch, tmp_path):
    empty = tmp_path / "bench"
    empty.mkdir()
    monkeypatch.setenv("SEI_BENCH_DIR", str(empty))
    at = open_app(BENCH)
    at.text_input(key="bench_other").input(str(tmp_path / "missing")).run()
    assert any("is not a folder" in e.value for e in at.error)
    at.text_input(key="bench_other").input(str(empty)).run()
    assert any("holds no results yet" in i.value for i in at.info)
    assert not at.exception


def test_wins_and_bench_dirs(tmp_path):
    rows = []
    for rate, (a, b) in {0.1: (0.5, 0.4), 0.2: (0.3, 0.6)}.items():
        for seed in (0, 1):
            rows += [{"dataset": "d", "noise": "symmetric", "rate": rate, "seed": seed, "method": "aum", "f1": a},
                     {"dataset": "d", "noise": "symmetric", "rate": rate, "seed": seed, "method": "sei", "f1": b}]
    w = bench.wins(pd.DataFrame(rows).reindex(columns=bench.RESULT_COLUMNS), "aum")
    assert w["at_or_above_all"].tolist() == [True, False]
    assert w["best_other"].tolist() == ["sei", "sei"] and np.allclose(w["gap"], [0.1, -0.3])
    o = bench.overall(pd.DataFrame(rows).reindex(columns=bench.RESULT_COLUMNS)).set_index("method")
    assert o.loc["sei", "rank"] == 1 and np.isclose(o.loc["sei", "mean"], 0.5) and np.isclose(o.loc["aum", "mean"], 0.4)
    assert o.loc["aum", "best_in"] == 1 and o.loc["sei", "best_in"] == 1
    assert np.isclose(o.loc["aum", "worst_gap"], -0.3) and np.isclose(o.loc["sei", "worst_gap"], -0.1)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "bench.json").write_text("{}")
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.csv").write_text("x\n")
    assert {p.name for p in workspace.bench_dirs(tmp_path)} == {"a", "c"}
    assert workspace.bench_dirs(tmp_path / "nope") == []

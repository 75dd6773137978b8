"""Benchmarking, apart from the product: noise injection, the grid, and reading its results.

The product never imports this package; it calls the product's API (training, scoring,
the error count). :mod:`~sei_core.bench.grid` runs the grid (``sei bench``) and
:mod:`~sei_core.bench.results` reads a bench directory back and reports it (what the app's
Benchmark page and ``benchmarks/grid_report.py`` use). The names below are re-exported so
``from sei_core import bench; bench.run_bench(...)`` keeps working.
"""

from .grid import (BENCH_RULES, COUNT_ESTIMATES, DEFAULT_RATES, DEFAULT_SEEDS, NOISE_TYPES, BenchError,
                   BenchReport, BenchSpec, Cell, Source, cell_counts, cells_of, dataset_name, evaluate_run,
                   make_noisy_labels, prepare_source, reference_confusion, run_bench, run_cell,
                   spec_from_train_config, stratified_subset)
from .results import (CELL_GLOB, COUNT_COLUMNS, METRIC_TITLES, METRICS, RESULT_COLUMNS, cell_folder,
                      count_errors_table, figures, load_counts, load_results, markdown_report, metric_table,
                      overall, settings, stamp, summarize, wins, write_report, write_results)

__all__ = [
    "BENCH_RULES", "COUNT_ESTIMATES", "DEFAULT_RATES", "DEFAULT_SEEDS", "NOISE_TYPES", "BenchError",
    "BenchReport", "BenchSpec", "Cell", "Source", "cell_counts", "cells_of", "dataset_name", "evaluate_run",
    "make_noisy_labels", "prepare_source", "reference_confusion", "run_bench", "run_cell",
    "spec_from_train_config", "stratified_subset", "CELL_GLOB", "COUNT_COLUMNS", "METRIC_TITLES", "METRICS",
    "RESULT_COLUMNS", "cell_folder", "count_errors_table", "figures", "load_counts", "load_results",
    "markdown_report", "metric_table", "overall", "settings", "stamp", "summarize", "wins", "write_report",
    "write_results",
]

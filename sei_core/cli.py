"""The ``sei`` command: train, resume, watch and rank runs from a terminal; benchmark methods.

Every failure a user can cause (bad data, unknown model, busy run) ends with a plain
message and exit code 1, never a traceback; a stopped run exits with 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import access, dataset
from .errors import SeiError
from .files import atomic_write_csv, stream_writes_to
from .runs import Run, RunError, State, duration_text
from .bench import BenchError as _BenchError
from .config import PAPER_EPOCHS, PRESETS, TrainConfig, choose_preset, preset_settings, under_torchrun

# Training, models and background jobs import torch (~1.5 s): commands that need them import
# them when they run, so that `sei flags`, `sei status` and `sei validate` start at once.

DEFAULTS = TrainConfig(data="")


def _train_parser(sub) -> None:
    p = sub.add_parser("train", help="train on a data set and record SEI (settings chosen for this machine)",
                       description="Train on DATA (a CSV label file, a class-per-folder image folder, "
                                   "or a MedMNIST .npz) and write a run directory. Without --preset, the "
                                   "settings fit the device found: the paper's (CLIP RN50 from OpenAI's "
                                   "weights, 224 px) on a GPU, a small model at 32 px on a CPU.")
    p.add_argument("data", nargs="?", help="label CSV, image folder or .npz file")
    p.add_argument("--out", help="run directory to create, e.g. runs/first (with --from-review: default "
                                 "RUN-retrained beside RUN)")
    add_column_options(p)
    add_training_options(p)
    add_retrain_options(p)
    p.add_argument("--nproc-per-node", type=int, default=DEFAULTS.nproc_per_node, metavar="N",
                   help="train with N processes on this machine (one per GPU; gloo on CPU): starts "
                        "`torchrun --standalone --nproc-per-node N` itself. For several machines run "
                        "`torchrun ... -m sei_core.cli train ...` on each instead")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.add_argument("--background", action="store_true", help="start in a background process and return")


def add_column_options(p: argparse.ArgumentParser) -> None:
    """Which columns of a label CSV hold the image path and the label, and where its images are
    (`sei train`, `validate`, `bench`)."""
    p.add_argument("--path-column", default=DEFAULTS.path_column, metavar="NAME",
                   help="the label file's column of image paths, e.g. image_id (default: path)")
    p.add_argument("--label-column", default=DEFAULTS.label_column, metavar="NAME",
                   help="the label file's column of labels, e.g. diagnosis (default: label); review "
                        "decisions are written back to this column")
    p.add_argument("--image-dir", action="append", default=[], metavar="DIR", dest="image_dirs",
                   help="a folder that holds the images (repeat for several, e.g. --image-dir "
                        "HAM10000_images_part_1 --image-dir HAM10000_images_part_2; relative to the label "
                        "file's folder): the path cells are names inside these folders, searched in order")
    p.add_argument("--image-ext", default=None, metavar="EXT",
                   help="the extension of path cells that name an image without one, e.g. .jpg for "
                        "ISIC_0027419 (default: the cell as given, then " + ", ".join(dataset.TRY_EXTENSIONS[:4])
                        + " …)")


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The training options shared by `sei train` and `sei bench` (model, budget, schedule …)."""
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="start from these settings (options given explicitly override them); default: "
                        "'paper' on a CUDA/MPS GPU, 'cpu' otherwise. "
                        + "; ".join(f"{k}: {v.summary()}" for k, v in PRESETS.items()))
    p.add_argument("--model", default=DEFAULTS.model,
                   help="open_clip model name (RN50, ViT-B-16, SEI-Tiny-RN, …) or resnet18/resnet50/vit_b_16 "
                        "(default: the preset's; `sei models` lists them)")
    p.add_argument("--weights", default=None,
                   help="none (random init), a local checkpoint file, or a pretrained tag of the model such "
                        "as openai (`sei weights MODEL` lists them and where they are cached); default: the "
                        "preset's when its model is used, none with another --model")
    p.add_argument("--image-size", type=int, default=DEFAULTS.image_size)
    p.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
    p.add_argument("--lr", type=float, default=DEFAULTS.lr)
    p.add_argument("--momentum", type=float, default=DEFAULTS.momentum)
    p.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    p.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    p.add_argument("--milestones", type=int, nargs="*", default=None,
                   help=f"epochs at which lr is multiplied by --gamma (default: 75 and 115 of "
                        f"{PAPER_EPOCHS}, scaled to --epochs)")
    p.add_argument("--gamma", type=float, default=DEFAULTS.gamma)
    p.add_argument("--seed", type=int, default=DEFAULTS.seed)
    p.add_argument("--device", default=DEFAULTS.device, help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--workers", type=int, default=DEFAULTS.workers, help="processes that decode images")
    p.add_argument("--memory-budget", default=DEFAULTS.memory_budget, metavar="SIZE",
                   help="host memory the decoded images may take in RAM, e.g. 512M or 4G (default: half the "
                        "memory available at start); a larger image cache is read from disk through a "
                        "memory map with prefetch, so memory does not grow with the data")
    p.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    p.add_argument("--single-run", action="store_true",
                   help="one run instead of two complementary ones (its auxiliary samples get no score)")
    p.add_argument("--record", choices=["train", "eval"], default=DEFAULTS.record,
                   help="record from the training forward pass (free) or an extra pass without augmentation")
    p.add_argument("--augment", choices=["paper", "flip", "none"], default=DEFAULTS.augment)
    p.add_argument("--keep-probs", type=int, default=DEFAULTS.keep_probs,
                   help="keep full probabilities of this many last epochs")
    p.add_argument("--split", default=DEFAULTS.split, help="split of a .npz file (train, val, test)")
    p.add_argument("--prompt-template", default=None, help='e.g. "A dermoscopic image showing {}."')
    p.add_argument("--aux-prompt", default=None, help='e.g. "A dermoscopic image showing other lesions."')
    p.add_argument("--prompts", default=None, help="JSON file with template, aux_prompt and per_class prompts")
    p.add_argument("--skip-unreadable", action="store_true", help="leave out missing/corrupt images, with a report")
    p.add_argument("--max-pixels", type=int, default=DEFAULTS.max_pixels)


def _typed(argv: list[str], key: str) -> bool:
    flag = "--" + key.replace("_", "-")
    return any(x == flag or x.startswith(flag + "=") for x in argv)


def _apply_preset(a: argparse.Namespace, argv: list[str]) -> str | None:
    """Fill in the preset's values where the user typed no option; without ``--preset``, the
    preset :func:`~sei_core.config.choose_preset` picks for the device. A preset's weights go
    with its model only: with another ``--model`` the weights are none unless ``--weights``
    is given. Returns the sentence that explains an automatic choice (None for ``--preset``)."""
    note = None
    if a.preset is None:
        choice = choose_preset(a.device)
        a.preset, note = choice.preset, choice.message()
    settings = preset_settings(a.preset)
    if _typed(argv, "model") and a.model != settings["model"]:
        settings.pop("weights", None)
    for key, value in settings.items():
        if not _typed(argv, key):
            setattr(a, key, value)
    return note


def training_settings(a: argparse.Namespace) -> dict:
    """The :class:`TrainConfig` fields (all but ``data``) from the shared training options."""
    template, aux, per_class = a.prompt_template, a.aux_prompt, {}
    if a.prompts:
        pr = dataset.Prompts.load(a.prompts)
        template, aux, per_class = template or pr.template, aux or pr.aux_prompt, pr.per_class
    return dict(
        split=a.split, model=a.model,
        weights=None if (a.weights or "").lower() in ("", "none") else a.weights,
        image_size=a.image_size, epochs=a.epochs, lr=a.lr, momentum=a.momentum,
        weight_decay=a.weight_decay, batch_size=a.batch_size, milestones=a.milestones, gamma=a.gamma,
        seed=a.seed, device=a.device, workers=a.workers, amp=not a.no_amp, runs=1 if a.single_run else 2,
        record=a.record, keep_probs=a.keep_probs, augment=a.augment, template=template, aux_prompt=aux,
        per_class_prompts=per_class, skip_unreadable=a.skip_unreadable, max_pixels=a.max_pixels,
        memory_budget=a.memory_budget,
    )


def data_source(path: str) -> Path:
    """The data set a typed path names, absolute: a folder holding one label file (and its
    image folders) names that label file (:func:`sei_core.dataset.table_in_folder`)."""
    p = Path(path).expanduser().resolve()
    return (dataset.table_in_folder(p) or p) if p.is_dir() else p


def image_dirs_of(a: argparse.Namespace, data: str | None = None) -> list[str]:
    """``--image-dir`` folders as absolute paths: a relative one from the current folder if it
    is there, else from the label file's folder."""
    base = data_source(data or a.data).parent
    out = []
    for d in a.image_dirs or []:
        p = Path(d).expanduser()
        out.append(str(p.resolve() if p.is_absolute() or p.is_dir() or not (base / p).is_dir()
                       else (base / p).resolve()))
    return out


def _config_from(a: argparse.Namespace) -> TrainConfig:
    return TrainConfig(data=str(data_source(a.data)), nproc_per_node=a.nproc_per_node,
                       path_column=a.path_column, label_column=a.label_column, image_dirs=image_dirs_of(a),
                       image_ext=a.image_ext, **training_settings(a))


def _torchrun(nproc: int, argv: list[str], run: Path) -> int:
    """Run ``sei <argv>`` under ``torchrun --standalone`` with ``nproc`` processes, wait, and
    report from the run directory (the processes print nothing but rank 0's log)."""
    import subprocess

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "sei_core.cli", *argv]
    proc = subprocess.Popen(cmd, env={**os.environ, "SEI_TORCHRUN_PARENT": "1"})
    try:
        rc = proc.wait()
    except KeyboardInterrupt:  # the processes got the SIGINT too and stop at their next batch
        rc = proc.wait()
    st = Run(run).status()
    state = State(st["state"])
    if state == State.FINISHED and rc == 0:
        return _print_summary(Run(run))
    if state == State.STOPPED:
        print(f"sei: stopped; resume with `sei resume {run}`", file=sys.stderr)
        return 130
    if state.active:  # resumed by another process meanwhile: its report, not ours
        return rc
    if rc != 0 or state != State.FINISHED:
        print(f"sei: error: training with {nproc} processes failed (exit code {rc}); "
              + (f"{st['error']}" if st.get("error") else f"see {Path(run) / 'log.txt'}"), file=sys.stderr)
    return rc or 1


def _weights_first(config: TrainConfig) -> None:
    """Fetch a pretrained tag before the data is decoded, so that missing weights fail at once."""
    from . import models

    if config.weights and not Path(config.weights).expanduser().is_file() \
            and config.weights in models.known_weights(config.model):
        models.fetch_weights(config.model, config.weights)


def cmd_train(a) -> int:
    if a.from_review:
        return cmd_train_from_review(a)
    if not a.data or not a.out:
        raise ValueError("give the data to train on and --out DIR (or --from-review RUN)")
    if a.test:
        _test_file_first(a.test)
    config = _config_from(a)
    _weights_first(config)
    if config.nproc_per_node > 1 and not under_torchrun() and not a.background:
        config.validate()
        return _torchrun(config.nproc_per_node, a.argv, Path(a.out))
    return _start_training(a, config)


def _start_training(a, config) -> int:
    """Train ``config`` into ``a.out``: in a background process with ``--background``, else here,
    then evaluate on ``--test`` if given."""
    from . import jobs

    if a.background:
        run = jobs.start(config, a.out)
        print(f"training in the background: {run.path} (watch with `sei status {run.path}`)")
        return 0
    rc = _train_reporting_once(config, a.out, resume=False, progress_bar=not a.no_progress)
    return _evaluate_after(a, rc)


def cmd_resume(a) -> int:
    from . import jobs

    if a.background:
        run = jobs.resume(a.run)
        print(f"resumed in the background: {run.path}")
        return 0
    nproc = int(Run(a.run).config().get("nproc_per_node", 1)) if Run(a.run).exists() else 1
    if nproc > 1 and not under_torchrun():
        world = int(Run(a.run).status().get("world_size") or nproc)
        if world > nproc:
            raise RunError(f"{a.run} was trained by {world} processes on {world // nproc} machines; resume it "
                           f"the same way: on each machine `torchrun --nnodes {world // nproc} --nproc-per-node "
                           f"{nproc} --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m sei_core.cli resume {a.run}`")
        return _torchrun(nproc, ["resume", str(a.run), *(["--no-progress"] if a.no_progress else [])], Path(a.run))
    return _train_reporting_once(TrainConfig(data=""), a.run, resume=True, progress_bar=not a.no_progress)


def _train_reporting_once(config: TrainConfig, out, *, resume: bool, progress_bar: bool) -> int:
    """Train and print the summary. A failure training has already reported (``failed: …``
    on stderr and in the run's log) is not printed a second time by :func:`main`."""
    from .train import train

    said: list[str] = []
    # a background job's stderr is the run's log.txt, which training writes itself
    quiet = stream_writes_to(sys.stderr, Run(out).log_file)

    def log(msg: str) -> None:
        said.append(msg)
        if not quiet:
            print(msg, file=sys.stderr)

    try:
        run = train(config, out, resume=resume, progress_bar=progress_bar, log=log)
    except SeiError as e:
        if f"failed: {e}" in said:
            return 1
        raise
    return _print_summary(run) if _reports() else 0


def _reports() -> bool:
    """Whether this process prints the summary: not the processes of a torchrun job that
    ``sei`` started itself (it reports), and of a job started by hand only rank 0."""
    if not under_torchrun():
        return True
    return os.environ.get("RANK") == "0" and not os.environ.get("SEI_TORCHRUN_PARENT")


def _print_summary(run: Run) -> int:
    from .methods import PAPER_METHOD
    from .score_cache import scored

    s = scored(run).scores  # training's end has just stored them
    n_flag = int(s.flagged.sum())
    line = (f"{run.path}: {n_flag} of {len(s.ids)} samples flagged as likely mislabeled by {s.method} "
            f"(thresholds {', '.join(f'{t:.2f}' for t in s.run_thresholds)})")
    if s.method != PAPER_METHOD:
        line += f"; the paper's SEI flags {int(s.sei_flagged.sum())}"
    print(line + f"; see `sei flags {run.path}`")
    return 0


def cmd_status(a) -> int:
    run = Run(a.run)
    if not run.exists():
        raise RunError(f"{run.path} is not a run directory")
    st = run.status()
    if a.json:
        st = {k: v for k, v in st.items() if k != "history" or a.history}
        print(json.dumps(st, indent=1))
        return 0
    state = State(st["state"])
    line = f"{run.path}: {state}"
    if st.get("phase") and state != State.FINISHED:
        line += f" — {st['phase']}"
    if st.get("epoch") is not None and st.get("epochs"):
        line += f", epoch {st['epoch']}/{st['epochs']} of run {st.get('run_index', 1)}/{st.get('n_runs', 1)}"
    if st.get("loss") is not None:
        line += f", loss {st['loss']:.4f}, accuracy {st['accuracy']:.3f}"
    if state == State.RUNNING:
        line += f", about {duration_text(st.get('eta_seconds'), '?')} left"
    print(line)
    if st.get("error"):
        print(f"error: {st['error']}")
    if state.resumable:
        print(f"resume with: sei resume {run.path}")
    return 0


def cmd_flags(a) -> int:
    from .methods import DEFAULT_METHOD
    from .ranking import score_run

    df = score_run(Run(a.run), a.method or DEFAULT_METHOD).table(flagged_only=not a.all)
    if a.top:
        df = df.head(a.top)
    out = Path(a.out) if a.out else None
    if out:
        atomic_write_csv(out, df)
        print(f"wrote {len(df)} rows to {out}")
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
            print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def cmd_stop(a) -> int:
    from . import jobs

    print(f"stopped {a.run}" if jobs.stop(a.run) else f"{a.run} was not training")
    return 0


def cmd_validate(a) -> int:
    """The report `sei train` would give with the same options (:func:`sei_core.dataset.check`):
    every problem it refuses (exit code 1), every warning, and the classes of the usable rows."""
    source = data_source(a.data)
    v = dataset.check(source, split=a.split, skip_unreadable=a.skip_unreadable, max_pixels=a.max_pixels,
                      path_column=a.path_column, label_column=a.label_column,
                      image_dirs=image_dirs_of(a), image_ext=a.image_ext)
    columns = ("" if (a.path_column, a.label_column) == (DEFAULTS.path_column, DEFAULTS.label_column)
               else f" (image paths from column '{a.path_column}', labels from '{a.label_column}')")
    opened = "" if source == Path(a.data).expanduser().resolve() else f" ({source.name} in that folder)"
    data = v.data
    if data is not None:
        print(f"{a.data}{opened}: {len(data)} images, {len(data.classes)} classes{columns}")
        names = data.prompts().names
        for c, n in data.class_counts().items():
            print(f"  {n:6d}  {c}" + (f"  ({names[c]})" if names.get(c) and names[c] != c else ""))
    for p in v.warnings:
        print(f"warning: {p}")
    if v.problems:
        print(f"sei: error: {v.source} has problems ({len(v.problems)}); `sei train` refuses it until they are "
              "fixed:", file=sys.stderr)
        for p in v.problems:
            print(f"  - {p}", file=sys.stderr)
        return 1
    print("no problems: `sei train` accepts it" + (" (leaving out the images listed above)" if v.warnings and
                                                   a.skip_unreadable else ""))
    return 0


def cmd_models(a) -> int:
    from .models import available_models

    print("\n".join(available_models()))
    return 0


def cmd_weights(a) -> int:
    """Where pretrained weights are kept, which tags a model has, and fetching one."""
    from . import models

    folder = models.weights_dir()
    if a.fetch:
        if not a.model:
            raise models.ModelError("name the model whose weights to fetch, e.g. `sei weights RN50 --fetch openai`")
        print(f"{a.model} {a.fetch}: {models.fetch_weights(a.model, a.fetch)}")
        return 0
    print(f"weights folder: {folder} (set ${models.WEIGHTS_ENV} to move it)")
    if not a.model:
        files = sorted(p for p in folder.glob("*/*") if p.is_file() and not p.name.endswith(".part"))
        for f in files:
            print(f"  {f.parent.name:16s} {f.stem:24s} {f.stat().st_size / 1e6:8.1f} MB  {f}")
        if not files:
            print("  (empty)")
        print("`sei weights MODEL` lists a model's pretrained tags; `--fetch TAG` downloads one.")
        return 0
    if a.model not in models.available_models():
        raise models.ModelError(f"unknown model {a.model!r}; `sei models` lists them")
    tags = models.known_weights(a.model)
    if not tags:
        print(f"{a.model} has no pretrained tags: train it from random weights (--weights none) or pass a "
              "checkpoint file (--weights /path/to/file)")
        return 0
    for tag in tags:
        have = models.weights_file(a.model, tag)
        if have:
            print(f"  {tag:24s} cached      {have}")
        else:
            print(f"  {tag:24s} not cached  `sei weights {a.model} --fetch {tag}`, or offline copy "
                  f"{models.weights_source(a.model, tag)} to {models.weights_target(a.model, tag)}")
    print(f"use one with: sei train DATA --out RUN --model {a.model} --weights {tags[0]}")
    return 0


def cmd_sample_data(a) -> int:
    from sample_data.make_sample_data import generate

    print(f"wrote {generate(a.out) if a.out else generate()}")
    return 0


def cmd_demo(a) -> int:
    """Generate the sample data if needed, train the cpu-demo preset on it, print the flags."""
    from sample_data.make_sample_data import generate

    from .train import train

    labels = Path(__file__).resolve().parent.parent / "sample_data" / "labels.csv"
    if not labels.is_file():
        generate()
    run = Run(a.out)
    if not run.exists():
        config = TrainConfig(data=str(labels), **preset_settings("cpu-demo"))
        train(config, run.path, progress_bar=not a.no_progress)
    elif run.state() != State.FINISHED:
        train(TrainConfig(data=""), run.path, resume=True, progress_bar=not a.no_progress)
    _print_summary(run)
    return cmd_flags(argparse.Namespace(run=str(run.path), all=False, top=15, out=None, method=None))


def _bench_parser(sub) -> None:
    from .bench import BENCH_RULES, DEFAULT_RATES, DEFAULT_SEEDS, NOISE_TYPES
    from .methods import method_names

    p = sub.add_parser(
        "bench", help="measure SEI and every baseline on injected label noise (resumable grid)",
        description="For every data set × noise type × rate × seed: inject seeded label noise, train one "
                    "SEI run, score it with every method, train k folds for confident learning, and compare "
                    "with the truth. Writes OUT/results.csv, OUT/results.md and OUT/plots/. Re-running the "
                    "same command skips finished cells and resumes interrupted ones. The training options "
                    "are those of `sei train`; --seed is replaced by each cell's seed.")
    p.add_argument("--data", nargs="+", default=[], help="label CSV(s), image folder(s) or .npz file(s)")
    add_column_options(p)
    p.add_argument("--noise", nargs="+", choices=NOISE_TYPES, default=["symmetric"],
                   help="symmetric, and/or confusion (calibrated on a k-fold reference classifier's "
                        "confusion matrix, eq. 5 of the paper)")
    p.add_argument("--rates", nargs="+", type=float, default=list(DEFAULT_RATES))
    p.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    p.add_argument("--methods", nargs="+", choices=method_names(BENCH_RULES), default=None, metavar="METHOD",
                   help="default: all of " + ", ".join(method_names(BENCH_RULES))
                        + " (NAME@count: the method flagged by the error count)")
    p.add_argument("--folds", type=int, default=5,
                   help="k of the cross-validation for confident learning and the reference classifier")
    p.add_argument("--out", required=True, help="bench directory, e.g. bench/derm")
    p.add_argument("--max-samples", type=int, default=None, metavar="N",
                   help="benchmark a stratified random subset of N images of each data set (seed 0, "
                        "the same subset for every cell), to fit a small compute budget")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the model checkpoints of finished runs (removed by default: they are large)")
    p.add_argument("--retrain", action="store_true",
                   help="also measure what cleaning bought, on the held-out --test set: per cell the test scores "
                        "of models trained on the noisy labels, without the flagged images, after a simulated "
                        "review with the true labels, and on the true labels (OUT/retrain.csv, OUT/retrain.md)")
    p.add_argument("--test", default=None, metavar="TEST", help="the held-out label file of --retrain (path,label)")
    p.add_argument("--review-budget", type=int, default=None, metavar="D",
                   help="with --retrain: the simulated reviewer decides the first D images of the review queue "
                        "(default: all of it)")
    p.add_argument("--review-sim", type=float, default=None, metavar="SHARE",
                   help="also play simulated truthful reviews of SHARE × N decisions per cell (e.g. 0.2) through "
                        "the app's queue, store and count, and measure the count from the decisions against the "
                        "truth (cells/…/review_sim.csv, OUT/review_sim.md; as `sei review-sim`)")
    p.add_argument("--review-sim-repeats", type=int, default=10, metavar="R", help="replays per cell of --review-sim")
    p.add_argument("--report-only", action="store_true",
                   help="only rewrite results.csv/results.md/plots from the cells measured so far")
    add_training_options(p)
    p.add_argument("--progress", action="store_true", help="progress bars instead of log lines")


def cmd_bench(a) -> int:
    from . import bench

    if a.report_only:
        files = bench.write_report(a.out, bench.write_results(a.out))
        print("\n".join(str(f) for f in files))
        return 0
    if not a.data:
        raise _BenchError("give the data set(s) to benchmark with --data")
    if a.retrain != bool(a.test):
        raise _BenchError("--retrain and --test go together: --retrain --test TEST.csv")
    settings = training_settings(a)
    settings.pop("seed")
    spec = bench.BenchSpec(data=[str(Path(d).expanduser().resolve()) for d in a.data], noise=a.noise,
                           rates=a.rates, seeds=a.seeds, methods=a.methods, folds=a.folds, train=settings,
                           max_samples=a.max_samples, keep_checkpoints=a.keep_checkpoints,
                           path_column=a.path_column, label_column=a.label_column,
                           image_dirs=image_dirs_of(a, a.data[0]) if a.data else [], image_ext=a.image_ext,
                           progress_bar=a.progress,
                           retrain_test=str(Path(a.test).expanduser().resolve()) if a.test else None,
                           review_budget=a.review_budget, review_sim=a.review_sim,
                           review_sim_repeats=a.review_sim_repeats)
    report = bench.run_bench(spec, a.out)
    done = sum(s == "completed" for s in report.cells.values())
    print(f"{a.out}: {done} cell(s) measured, {len(report.cells) - done} already done; "
          f"{len(report.results)} result rows")
    for f in report.files:
        print(f"  {f}")
    for f in report.failures:
        print(f"sei: warning: {f}", file=sys.stderr)
    return 1 if report.failures else 0


# ------------------------------------------------------------------ retrain and evaluate


def add_retrain_options(p: argparse.ArgumentParser) -> None:
    """`sei train --from-review RUN` and `--test TEST.csv`."""
    p.add_argument("--from-review", metavar="RUN", default=None,
                   help="train again on RUN's label file as its review left it (relabels applied, discarded "
                        "images left out, the rest as it was), with RUN's settings; the label file is only read")
    p.add_argument("--test", metavar="TEST", default=None,
                   help="after training, evaluate the final model on this held-out label file (as `sei evaluate`)")


def _test_file_first(test: str) -> None:
    if not Path(test).expanduser().exists():
        raise ValueError(f"the test file {test} does not exist; check the path")


def _evaluate_after(a, rc: int) -> int:
    """`sei train --test`: evaluate the finished run."""
    if rc != 0 or not getattr(a, "test", None) or not _reports():
        return rc
    return cmd_evaluate(argparse.Namespace(run=a.out, test=a.test, path_column=None, label_column=None,
                                           device="cpu", workers=a.workers, json=False))


def cmd_train_from_review(a) -> int:
    from . import retrain

    explicit = {k: v for k, v in training_settings(a).items() if _typed(a.argv, k)}
    if a.data:
        raise ValueError("--from-review trains on RUN's reviewed label file: give no DATA")
    if a.test:
        _test_file_first(a.test)
    a.out = a.out or str(retrain.default_out(a.from_review))
    config = retrain.prepare_retrain(a.from_review, a.out, **explicit)
    lin = config.lineage
    print(f"retraining {a.from_review} on {lin['label_file']} as reviewed: {lin['rows'] - lin['discarded']} images "
          f"({lin['relabeled']} relabeled, {lin['discarded']} discarded left out, {lin['confirmed']} confirmed) "
          f"into {a.out}", file=sys.stderr)
    return _start_training(a, config)


def cmd_evaluate(a) -> int:
    from .evaluate import evaluate, summary_lines

    result = evaluate(a.run, a.test, path_column=a.path_column, label_column=a.label_column, device=a.device,
                      workers=a.workers)
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        print("\n".join(summary_lines(result)))
        print(f"written to {Path(a.run) / 'evaluation.json'} ({result['seconds']:.1f} s)")
    return 0


def _evaluate_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="accuracy, balanced accuracy, macro-F1 of a run's final model on held-out images",
                       description="Predict the images of TEST (a label file, image folder or .npz) with RUN's final "
                                   "model and write accuracy, balanced accuracy, macro-F1, macro AUROC and per-class "
                                   "recall into RUN/evaluation.json. Refuses a test set that shares an image (same "
                                   "path or same file content) with the run's training images.")
    p.add_argument("run")
    p.add_argument("--test", required=True, metavar="TEST", help="the held-out label file")
    p.add_argument("--path-column", default=None, metavar="NAME", help="the test file's path column (default: the run's)")
    p.add_argument("--label-column", default=None, metavar="NAME", help="the test file's label column (default: the run's)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    p.add_argument("--workers", type=int, default=2, help="processes that decode the test images")
    p.add_argument("--json", action="store_true", help="print the whole evaluation as JSON")
    p.set_defaults(func=cmd_evaluate)


def cmd_count(a) -> int:
    from .review import run_count

    run = Run(a.run)
    if not run.exists():
        raise RunError(f"{run.path} is not a run directory")
    c, stop, _ = run_count(run)
    if a.json:
        print(json.dumps({"count": c.to_json(), "stop": {k: getattr(stop, k) for k in (
            "next_share", "next_share_from", "still_to_find", "streak", "run_length", "p_chance", "p_plus", "stop")},
            "sentence": c.sentence(), "stop_sentence": stop.sentence()}, indent=1, default=float))
        return 0
    print(c.sentence())
    print(stop.sentence())
    return 0


def cmd_review_sim(a) -> int:
    from .review_sim import simulate, summary

    run = Run(a.run)
    if not run.exists():
        raise RunError(f"{run.path} is not a run directory")
    if a.decisions < 1 or a.repeats < 1 or not 0 <= a.audit_share <= 1 or a.audit_boost < 0:
        raise ValueError("--decisions and --repeats must be at least 1, --audit-share between 0 and 1, "
                         "--audit-boost at least 0")
    df = simulate(run.path, a.truth, a.decisions, repeats=a.repeats, audit_share=a.audit_share,
                  audit_boost=a.audit_boost, seed=a.seed)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out, index=False)
    sm = summary(df, len(run.samples()[0]))
    print(f"{a.out}: {len(df)} rows ({a.repeats} replays); the {100 * 0.9:.0f} % interval held the true count "
          f"at {100 * sm['coverage']:.0f} % of {sm['checkpoints']} checkpoints counted from the decisions; "
          f"mean |relative error| {sm['rel_error']:.3f} at {sm['at']} decisions; found / static order "
          f"at least {sm['min_found_ratio']:.2f}")
    return 0


def _app_parser(sub) -> None:
    p = sub.add_parser(
        "app", help="open the app (local: this machine only; --network: other machines, with a login)",
        description="Starts `streamlit run app.py` from the project folder. Locally it listens on 127.0.0.1 "
                    "only (reach it from elsewhere through `ssh -L 8501:localhost:8501 HOST`). With --network it "
                    "listens on every interface, opens only the folders given by --data-root (or "
                    f"${access.DATA_ROOTS_ENV}), and asks for a login: the OpenID Connect provider of "
                    f".streamlit/secrets.toml where one is configured, else a token: a personal one per "
                    f"--user NAME (or ${access.TOKENS_ENV}, or [sei.tokens] in secrets.toml), whose name then "
                    f"signs every decision, else one shared token (${access.TOKEN_ENV}, or a new one); the "
                    "addresses that carry new tokens are printed here.")
    p.add_argument("--network", action="store_true", help="let other machines reach the app (with a login)")
    p.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="a folder the app may open (repeatable); required with --network unless "
                        f"${access.DATA_ROOTS_ENV} is set")
    p.add_argument("--user", action="append", default=[], metavar="NAME",
                   help="with --network: a reviewer with a personal token (repeatable); the app records NAME "
                        "with every decision they make, and one address to open is printed per person")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--address", default=None,
                   help="the address to listen on (default 127.0.0.1; with --network 0.0.0.0)")


def app_command(a: argparse.Namespace, env: dict | None = None,
                secrets_: dict | None = None) -> tuple[list[str], dict, list[tuple[str, str]]]:
    """``(command, environment, links)`` of ``sei app``: Streamlit's command line, the
    environment that carries the access settings (:mod:`sei_core.access`), and the addresses
    to open that carry the tokens made here, ``(reviewer name, address)`` (name
    ``access.ANONYMOUS`` for the shared token).

    ``secrets_``: the app's ``secrets.toml`` sections (default :func:`access.read_secrets`): with
    an ``[auth]`` login no token is made; with personal tokens there (``[sei.tokens]``) no
    shared one. Raises ValueError when network mode lacks data roots, a --user name is not
    usable, ``--user`` comes without --network, or the address is not loopback without
    --network."""
    env = dict(os.environ if env is None else env)
    root = Path(__file__).resolve().parent.parent
    if a.user and not a.network:
        raise ValueError("--user makes a personal token for network mode: add --network")
    address = a.address or ("0.0.0.0" if a.network else "127.0.0.1")
    if not a.network and not access.is_loopback(address):
        raise ValueError(f"--address {address} lets other machines reach the app: add --network (which asks "
                         "for a login), or use an SSH tunnel to 127.0.0.1")
    roots = access.parse_roots(a.data_root) or access.data_roots(env)
    for r in roots:
        if not r.is_dir():
            raise ValueError(f"data root {r} is not a folder")
    if roots:
        env[access.DATA_ROOTS_ENV] = os.pathsep.join(map(str, roots))
    links: list[tuple[str, str]] = []
    if a.network:
        if not roots:
            raise ValueError(f"--network needs the folders the app may open: --data-root DIR (repeatable) or "
                             f"${access.DATA_ROOTS_ENV}")
        env[access.NETWORK_ENV] = "1"
        secrets_ = access.read_secrets(root) if secrets_ is None else secrets_
        if secrets_.get("auth") and a.user:
            raise ValueError("--user makes personal tokens, but .streamlit/secrets.toml configures an OpenID Connect "
                             "login ([auth]), which signs people in instead: drop --user (or the [auth] section)")
        users = list(dict.fromkeys(u.strip() for u in a.user))
        bad = [u for u in users if not u or "," in u or not u.isprintable()]
        if bad:
            raise ValueError(f"--user {', '.join(map(repr, bad))}: a reviewer's name must be non-empty, printable "
                             "and hold no comma")
        named, problems = access.parse_tokens(env.get(access.TOKENS_ENV))
        if problems:
            raise ValueError(" ".join(problems))
        new = [(u, access.new_token()) for u in users]
        named = tuple(p for p in named if p[0] not in users) + tuple(new)
        if named:
            env[access.TOKENS_ENV] = access.format_tokens(named)
        own = secrets_.get(access.SECRETS_SECTION) or {}
        if not (secrets_.get("auth") or named or own.get("tokens") or env.get(access.TOKEN_ENV) or own.get("token")):
            env[access.TOKEN_ENV] = access.new_token()  # no login configured: one shared token, as Jupyter's
        if env.get(access.TOKEN_ENV) and not secrets_.get("auth"):
            new.append((access.ANONYMOUS, env[access.TOKEN_ENV]))
        import socket
        from urllib.parse import quote

        host = socket.gethostname() if address in ("0.0.0.0", "::") else address
        links = [(who, f"http://{host}:{a.port}/?token={quote(t)}") for who, t in new]
    cmd = [sys.executable, "-m", "streamlit", "run", str(root / "app.py"), "--server.address", address,
           "--server.port", str(a.port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    if a.network:
        # the address browsers use; without it a headless Streamlit on 0.0.0.0 asks checkip.amazonaws.com
        # for this machine's external address to print it
        cmd += ["--browser.serverAddress", host]
    return cmd, env, links


def cmd_app(a) -> int:
    import subprocess

    cmd, env, links = app_command(a)
    root = Path(cmd[4]).parent
    if not (root / "app.py").is_file():
        raise ValueError(f"the app is not here ({root / 'app.py'}): run `sei app` from a source checkout")
    if a.network:
        print("sei: network mode: only the folders", env[access.DATA_ROOTS_ENV], "may be opened.", file=sys.stderr)
        for who, url in links:
            if who:
                print(f"sei: {who}: open {url}", file=sys.stderr)
            else:
                print(f"sei: open {url}", file=sys.stderr)
        if any(who for who, _ in links):
            print("     (each address signs its reviewer in, and the app records that name with their decisions: "
                  "give each person only their own, and keep it secret.)", file=sys.stderr)
        elif links:
            print("     (the token signs a browser in; keep it secret. It names nobody, so decisions carry the name "
                  "typed on the Review page: `--user NAME` gives each reviewer their own.)", file=sys.stderr)
        else:
            print("sei: the sign-in is the one configured in .streamlit/secrets.toml or the environment.",
                  file=sys.stderr)
    return subprocess.call(cmd, cwd=root, env=env)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sei", description="Find mislabeled images with the Signed Entropy Integral.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    p = sub.add_parser("resume", help="continue a stopped, interrupted or failed run from its last epoch")
    p.add_argument("run")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--background", action="store_true")
    p = sub.add_parser("status", help="where a run is")
    p.add_argument("run")
    p.add_argument("--json", action="store_true", help="machine-readable status")
    p.add_argument("--history", action="store_true", help="with --json: include per-epoch history")
    p = sub.add_parser("flags", help="the ranked table of likely mislabeled samples")
    p.add_argument("run")
    p.add_argument("--out", help="write CSV here instead of printing")
    p.add_argument("--all", action="store_true", help="all samples, not only the flagged ones")
    p.add_argument("--top", type=int, default=0, help="only the N most suspicious")
    p.add_argument("--method", default=None, metavar="METHOD",
                   help="rank and flag by this method instead of the default (any `sei bench` method but "
                        "confident_learning, e.g. sei for the paper's SEI alone, or aum)")
    p = sub.add_parser("stop", help="stop a background training process")
    p.add_argument("run")
    p = sub.add_parser("validate", help="check a data set and print its classes and problems")
    p.add_argument("data")
    p.add_argument("--split", default="train")
    p.add_argument("--max-pixels", type=int, default=dataset.DEFAULT_MAX_PIXELS)
    p.add_argument("--skip-unreadable", action="store_true",
                   help="report as `sei train --skip-unreadable` would: missing/corrupt images left out")
    add_column_options(p)
    sub.add_parser("models", help="list the model names")
    p = sub.add_parser("weights", help="pretrained weights: where they are kept, a model's tags, fetch one",
                       description="Pretrained weights are kept in one folder (~/.cache/sei-review/weights, or "
                                   "$SEI_WEIGHTS_DIR), one file per model and tag, e.g. RN50/openai.bin. "
                                   "Without internet, copy the file named by `sei weights MODEL` there.")
    p.add_argument("model", nargs="?", help="a model name (see `sei models`); without it: the cached files")
    p.add_argument("--fetch", metavar="TAG", help="download this tag of MODEL into the weights folder")
    p = sub.add_parser("demo", help="train on the bundled sample data (cpu-demo preset) and show the flags")
    p.add_argument("--out", default="runs/sample")
    p.add_argument("--no-progress", action="store_true")
    p = sub.add_parser("sample-data", help="(re)generate the bundled sample data set")
    p.add_argument("--out", default=None)
    p = sub.add_parser("count", help="how many labels are wrong, from the review decisions, and when to stop")
    p.add_argument("run")
    p.add_argument("--json", action="store_true", help="machine-readable")
    p = sub.add_parser("review-sim", help="a simulated truthful reviewer through the app's queue, store and count",
                       description="Plays a truthful expert (answers with the true label) through the review queue "
                                   "(with audit sampling), the decision store (on a copy of the label file) and the "
                                   "count; writes one row per replay and checkpoint (every 10 %% of --decisions).")
    p.add_argument("run")
    p.add_argument("--truth", required=True, help="truth CSV with path and true_label columns (sei bench's truth.csv)")
    p.add_argument("--decisions", type=int, required=True)
    p.add_argument("--repeats", type=int, default=10)
    from .review_count import DEFAULT_AUDIT_SHARE
    p.add_argument("--audit-share", type=float, default=DEFAULT_AUDIT_SHARE)
    from .review import AUDIT_BOOST
    p.add_argument("--audit-boost", type=float, default=AUDIT_BOOST,
                   help="how much likelier a random check is just after the reviewer's place in the order "
                        "than far after it (0: uniform)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    _bench_parser(sub)
    _evaluate_parser(sub)
    _app_parser(sub)
    for name, fn in [("count", cmd_count), ("review-sim", cmd_review_sim), ("app", cmd_app), ("train", cmd_train),
                     ("resume", cmd_resume), ("status", cmd_status), ("flags", cmd_flags),
                     ("stop", cmd_stop), ("validate", cmd_validate), ("models", cmd_models), ("weights", cmd_weights),
                     ("sample-data", cmd_sample_data), ("demo", cmd_demo), ("bench", cmd_bench)]:
        sub.choices[name].set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv
    try:
        if args.command in ("train", "bench") and not getattr(args, "from_review", None):
            note = _apply_preset(args, argv)
            if note:
                print(f"sei: {note}", file=sys.stderr)
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if isinstance(e, _loaded("train", "PeerFailed")):  # another process of a torchrun job
            return 1  # rank 0 reports the reason
        if isinstance(e, _loaded("train", "Stopped")):
            if not under_torchrun():
                print(f"sei: {e}", file=sys.stderr)
                return 130
            # a clean, shared stop: exit 0 so torchrun does not report a failure; status.json says "stopped"
            return 0
        if isinstance(e, (SeiError, ValueError, access.AccessError)):
            if not under_torchrun() or os.environ.get("RANK") == "0":  # one report per torchrun job
                print(f"sei: error: {e}", file=sys.stderr)
            return 1
        raise


def _loaded(module: str, *names: str) -> tuple[type, ...]:
    """Exception classes of a ``sei_core`` module that a command imported (one that was not
    imported raised nothing), without importing it — and torch with it — here."""
    mod = sys.modules.get(f"{__package__}.{module}")
    return tuple(getattr(mod, n) for n in names) if mod is not None else ()


if __name__ == "__main__":
    sys.exit(main())

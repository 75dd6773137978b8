"""Training on noisy labels while recording per-sample dynamics for SEI.

One *run* trains ``runs`` complementary models (default 2, as in the paper's released
code). Each relabels its own random ``N/(K+1)`` samples to an extra, meaningless class
(the auxiliary prompt); these known-mislabeled samples give the threshold, and the
auxiliary sets are disjoint so that every sample is scored by a run in which it kept its
label.

The images are decoded once into a uint8 cache file, read from the GPU or RAM when it fits
(the memory budget) and otherwise through a memory map with prefetch (:mod:`sei_core.feed`),
so epochs never touch JPEG decoding and memory does not grow with N; augmentation runs
batched on the training device. Every epoch writes its records, the status (:class:`Progress`)
and a checkpoint (model, optimiser, scheduler, RNG states: :class:`TrainingState`) unless the
previous one is still being written (:class:`CheckpointWriter`), so a killed run resumes from
its newest checkpoint, redoes the epochs after it and ends with the same scores as an
uninterrupted one.

Under ``torchrun`` every process runs :func:`train`: each trains on its part of every
global batch through DistributedDataParallel, the per-sample records are gathered by
sample id (:meth:`Recorder.reduce`), and rank 0 alone locks and writes the run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import dataset as ds_mod
from .decode import decode_images
from . import feed as feed_mod
from .config import TrainConfig, pick_device, under_torchrun
from .models import ModelError, build_model, on_device
from .files import atomic_write, stream_writes_to
from .records import Recorder
from .errors import ANOTHER_OUT, DEVICE_CPU, Fix, SeiError, resume_fix
from .runs import Run, RunError, State, duration_text, now
from .scores import choose_aux_sets


def augment_batch(x: torch.Tensor, mode: str, gen: torch.Generator, rand: torch.Tensor | None = None) -> torch.Tensor:
    """Batched augmentation of images in [0, 1]: random resized crop (scale 0.7–1, aspect
    3/4–4/3) with horizontal and vertical flips ("paper"), flips only ("flip"), or none.

    One ``affine_grid``/``grid_sample`` call for the whole batch; randomness from ``gen``, or
    ``rand`` ``(B, 6)`` uniforms drawn by the caller (a process of a multi-GPU run draws them
    for the whole global batch and takes its rows, so every sample gets the augmentation it
    would get in a single process).
    """
    if mode == "none":
        return x
    b = x.shape[0]
    r = rand if rand is not None else torch.rand((b, 6), generator=gen, device=gen.device)
    r = r.to(x.device)
    fx = torch.where(r[:, 0] < 0.5, -1.0, 1.0)
    fy = torch.where(r[:, 1] < 0.5, -1.0, 1.0)
    if mode == "flip":
        sx = sy = torch.ones(b, device=x.device)
    else:
        area = 0.7 + 0.3 * r[:, 2]
        log_ratio = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * r[:, 3]
        ratio = torch.exp(log_ratio)
        sx = torch.sqrt(area * ratio).clamp(max=1.0)
        sy = torch.sqrt(area / ratio).clamp(max=1.0)
    tx = (1 - sx) * (2 * r[:, 4] - 1)
    ty = (1 - sy) * (2 * r[:, 5] - 1)
    theta = torch.zeros((b, 2, 3), device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = sx * fx
    theta[:, 0, 2] = tx
    theta[:, 1, 1] = sy * fy
    theta[:, 1, 2] = ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Stopped(Exception):
    """Raised inside training when the process is asked to stop (SIGTERM/SIGINT)."""


class PeerFailed(RunError):
    """Raised in the other processes of a multi-process run when rank 0 failed (it reports why)."""


#: Signals received; checked between batches so a stop never interrupts a file write.
_STOP: list[str] = []


def _check_stop() -> None:
    if _STOP:
        raise Stopped(f"stopped by signal {_STOP[-1]}")


# -- several processes (torchrun) ---------------------------------------------------------------

@dataclass
class Dist:
    """Where this process stands in a ``torchrun`` job (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    owns_group: bool = False  # this module initialised the process group (and destroys it)

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(requested_device: str) -> tuple[Dist, torch.device]:
    """Join the ``torchrun`` job of this process (``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the
    environment): NCCL on CUDA, gloo on CPU; each process uses GPU ``LOCAL_RANK``."""
    if not under_torchrun():
        return Dist(), pick_device(requested_device)
    import datetime

    import torch.distributed as dist

    d = Dist(rank=int(os.environ["RANK"]), world=int(os.environ["WORLD_SIZE"]),
             local_rank=int(os.environ.get("LOCAL_RANK", "0")),
             local_world=int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"])))
    device = pick_device(requested_device)
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise RunError(f"multi-process training runs on CUDA GPUs or CPUs, not on {device.type}", DEVICE_CPU)
    if not dist.is_initialized():
        # a long timeout: the other processes wait while rank 0 decodes the images once
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(hours=int(os.environ.get("SEI_DIST_TIMEOUT_HOURS", "6"))))
        d.owns_group = True
    return d, device


def _on_main(d: Dist, fn: Callable[[], object]):
    """Run ``fn`` on rank 0 and hand its result to every process; if it fails there, the
    others raise :class:`PeerFailed` (rank 0 raises the real error and reports it)."""
    if not d.active:
        return fn()
    import torch.distributed as dist

    box: list = [None]
    error = None
    if d.main:
        try:
            box = [("ok", fn())]
        except BaseException as e:  # noqa: BLE001 — shared, then re-raised
            error = e
            box = [("error", f"{type(e).__name__}: {e}")]
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    kind, value = box[0]
    if kind == "error":
        raise PeerFailed(f"rank 0 failed ({value})")
    return value


def _any_stop(d: Dist, device: torch.device) -> None:
    """Between batches: stop every process together if any was asked to stop."""
    if d.active:
        import torch.distributed as dist

        flag = torch.tensor([1 if _STOP else 0], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if int(flag) and not _STOP:
            _STOP.append("from another process")
    _check_stop()


@dataclass
class Prepared:
    """What both complementary runs share: the validated data and its decoded images."""

    data: ds_mod.LabeledImages
    images: np.ndarray  # (M, 3, S, S) uint8 cache, a read-only memory map of ``cache``
    prompts: list[str]
    rows: np.ndarray | None = None  # cache row of each sample (None: row i is sample i)
    cache: Path | None = None

    def shareable(self) -> "Prepared":
        """A copy without arrays to send to the other processes (they open ``cache`` themselves)."""
        data = dataclasses.replace(self.data, array=None)
        return dataclasses.replace(self, data=data, images=None)

    def reopen(self) -> "Prepared":
        return dataclasses.replace(self, images=np.load(self.cache, mmap_mode="r"))


def prepare(config: TrainConfig, run: Run, log: Callable[[str], None] = print) -> Prepared:
    """Load and validate the data, decode it once (cached in the run), save the sample list."""
    run.update_status(phase="loading data")
    classes = run.config().get("classes")
    data = ds_mod.load(config.data, split=config.split, skip_unreadable=config.skip_unreadable,
                       max_pixels=config.max_pixels, classes=None if config.training_table else classes,
                       **config.data_options())
    if config.training_table:  # a retrain from a review: its samples and labels
        data = ds_mod.apply_training_table(data, config.training_table, classes)
    for p in data.problems:
        log(f"warning: {p}")
    t0 = time.monotonic()
    reported = [0]

    def progress(done: int, total: int) -> None:
        _check_stop()
        run.update_status(phase=f"decoding images {done}/{total}")
        if done == total or done - reported[0] >= max(1, total // 10):
            reported[0] = done
            log(f"decoding images: {done}/{total} ({time.monotonic() - t0:.0f}s)")

    images, problems = decode_images(data, config.image_size, workers=config.workers,
                                            cache_dir=config.cache_dir or run.path / "cache",
                                            skip_unreadable=config.skip_unreadable, progress=progress)
    for p in problems:
        log(f"warning: {p} — skipped")
    data, rows = ds_mod.drop_undecodable(data, problems)
    log(f"{len(data)} images of {len(data.classes)} classes decoded at {config.image_size}px "
        f"in {time.monotonic() - t0:.1f}s")
    if (run.path / "samples.csv").is_file():
        ids, labels = run.samples()
        now_labels = [data.classes[k] for k in data.labels]
        if ids != data.ids or labels != now_labels:
            changed = sum(a != b for a, b in zip(labels, now_labels)) + abs(len(ids) - len(data.ids))
            raise RunError(f"the data changed since this run started ({len(ids)} samples then, {len(data.ids)} "
                           f"now, {changed} differ); a resumed run must see the same samples and labels. "
                           "Start a new run on the current data instead")
    prompts = config.resolve_prompts(data.prompts())
    cfg = run.config()
    cfg.update(classes=data.classes, prompts=prompts.for_classes(data.classes), n_samples=len(data),
               class_names={c: prompts.name(c) for c in data.classes if prompts.name(c) != c})
    run.write_config(cfg)
    run.write_samples(data.ids, [data.classes[k] for k in data.labels], data.rows)
    cache = Path(images.filename) if isinstance(images, np.memmap) else None
    return Prepared(data, images, prompts.for_classes(data.classes), rows, cache)


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    progress_bar: bool = True,
    log: Callable[[str], None] | None = None,
) -> Run:
    """Train (or resume) a run in ``out`` and write its ranked scores at the end.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this: each trains on its shard
    of every batch through DistributedDataParallel, and rank 0 alone holds the run's lock and
    writes its status, records, checkpoints and scores.

    The status file always tells the outcome; errors are also raised to the caller
    (:class:`~sei_core.dataset.DataError`, :class:`~sei_core.models.ModelError`,
    :class:`RunError`, :class:`Stopped`).
    """
    requested = config.device
    if resume and Run(out).exists():
        requested = Run(out).config().get("device", "auto")
    d, device = _setup_distributed(requested)
    try:
        return _train(config, out, resume, progress_bar, log, d, device)
    finally:
        if d.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(config, out, resume, progress_bar, log, d: Dist, device: torch.device) -> Run:
    held: list[int] = []
    if d.active and not resume:  # `sei resume` restarts torchrun with as many processes per machine
        config = dataclasses.replace(config, nproc_per_node=d.local_world)

    def start() -> str:
        if resume:
            run = Run(out)
            if not run.exists():
                raise RunError(f"there is no run to resume in {run.path}")
            held.append(run.acquire())
        else:
            run, fd = _create_run(config, out)
            held.append(fd)
        return str(run.path)

    run = Run(_on_main(d, start))  # rank 0 takes the lock before anything is written
    lock = held[0] if held else None
    if resume:
        config = TrainConfig.from_dict(run.config())
    _STOP.clear()
    logf = open(run.log_file, "a", encoding="utf-8") if d.main else None
    echo = log
    if echo is None and d.main and not stream_writes_to(sys.stderr, run.log_file):
        # a background process's stderr *is* log.txt (see jobs): echoing would write each line twice
        echo = lambda m: print(m, file=sys.stderr)  # noqa: E731

    def say(msg: str) -> None:
        if logf is None:
            return
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        logf.write(line + "\n")
        logf.flush()
        if echo is not None:
            echo(msg)

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def on_signal(signum, frame):
        # only note the request: raising here could interrupt a checkpoint being written
        _STOP.append(signal.Signals(signum).name)

    for s in previous:
        try:
            signal.signal(s, on_signal)
        except ValueError:  # not the main thread: rely on the caller
            pass
    main = d.main
    try:
        if main:
            run.mark_running(pid=os.getpid(), n_runs=config.runs, epochs=config.epochs, world_size=d.world)
            say(f"{'resuming' if resume else 'starting'} run {run.path}"
                + (f" with {d.world} processes" if d.active else ""))
        prepared = _on_main(d, lambda: prepare(config, run, say).shareable() if d.active
                            else prepare(config, run, say))
        if d.active:
            prepared = prepared.reopen()
        n, k = len(prepared.data), len(prepared.data.classes)
        aux_sets = _on_main(d, lambda: _aux_sets(run, config, n, k))
        budget = feed_mod.memory_budget(config.memory_budget, d.local_world)
        for index in range(1, config.runs + 1):
            if _on_main(d, lambda: run.is_done(index)):
                continue
            _train_one(run, config, prepared, aux_sets[index - 1], index, device, progress_bar and main, say,
                       d, budget)
        if main:
            from .score_cache import write_finished  # late import: scoring reads what training wrote

            write_finished(run)
            run.mark_finished()
            say("finished; scores written to scores.csv")
        return run
    except PeerFailed:
        raise
    except Stopped as e:
        if main:
            run.mark_stopped(error=None, eta_seconds=None)
            say(f"{e}; resume with `sei resume {run.path}`")
        raise
    except SeiError as e:
        if main:
            run.mark_failed(e, eta_seconds=None)
            say(f"failed: {e}")
        raise
    except BaseException as e:
        msg: str | RunError = f"{type(e).__name__}: {e}"
        if isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower():
            msg = RunError(f"out of memory ({e})", Fix("lower --batch-size or --image-size",
                                                        "lower “Batch size” or “Image size (pixels)”"))
        if main:
            run.mark_failed(msg, eta_seconds=None)
            logf.write(traceback.format_exc())
            say(f"failed: {msg}")
        raise
    finally:
        for s, h in previous.items():
            try:
                signal.signal(s, h)
            except ValueError:
                pass
        if logf is not None:
            logf.close()
        if lock is not None:
            Run.release(lock)


def init_run(config: TrainConfig, out: str | Path) -> Run:
    """Create the run directory with its config (resolved milestones included).

    The run's lock is taken before anything is written and released on return, so of two
    processes creating the same ``out`` at once exactly one writes its config; the other
    gets a :class:`RunError` and writes nothing.
    """
    run, lock = _create_run(config, out)
    Run.release(lock)
    return run


def _create_run(config: TrainConfig, out: str | Path) -> tuple[Run, int]:
    """:func:`init_run` that keeps the lock (the caller trains, then releases it)."""
    config.validate()
    run = Run(out)
    if run.exists() and not run.trained_nothing():
        raise _occupied(run)
    lock = run.acquire(creating=True)
    try:
        if run.exists():  # a failed run that trained nothing is replaced; any other is kept
            if not run.trained_nothing():  # e.g. created by a process that held the lock just before us
                raise _occupied(run)
            run.clear()
        cfg = dataclasses.asdict(config)
        if cfg["classes"] is None:  # written by prepare() once the data is read
            del cfg["classes"]
        cfg["milestones"] = config.resolved_milestones()
        cfg["created_at"] = now()
        run.write_config(cfg)
        run.mark_created(epochs=config.epochs, n_runs=config.runs)
    except BaseException:
        Run.release(lock)
        raise
    return run, lock


def _occupied(run: Run) -> RunError:
    """Why ``sei train --out`` cannot create a run where ``run`` is, and what to do instead."""
    st = run.status()
    state = State(st["state"])
    if state == State.FAILED:
        return RunError(f"{run.path} holds a run that failed after training {len(st.get('history') or [])} "
                        f"epoch(s) ({st.get('error') or 'see its log.txt'})",
                        "fix the cause and " + resume_fix(run.path) + ", or " + ANOTHER_OUT + " to start afresh")
    if state == State.FINISHED:
        return RunError(f"{run.path} already holds a run (finished)", ANOTHER_OUT + " for a new one")
    return RunError(f"{run.path} already holds a run ({state})", ANOTHER_OUT + ", or " + resume_fix(run.path))


def _aux_sets(run: Run, config: TrainConfig, n: int, k: int) -> list[np.ndarray]:
    """The auxiliary sets, chosen once and kept in the run so a resume uses the same."""
    indices = range(1, config.runs + 1)
    if all(run.aux_file(i).is_file() for i in indices):
        return [run.aux_indices(i) for i in indices]
    sets = choose_aux_sets(n, k, config.runs, seed=config.seed)
    for i, s in zip(indices, sets):
        run.write_aux(i, s)
    return sets


def batch_count(n: int, batch_size: int) -> int:
    """How many batches an epoch over ``n`` samples has at ``batch_size`` (at least one)."""
    return max(1, math.ceil(n / batch_size))


def run_seed(seed: int, index: int) -> int:
    """The seed of complementary run ``index`` of a run seeded ``seed``: its model's
    initialisation and its batch order; its augmentation takes the next one."""
    return seed * 1000 + index


@dataclass
class TrainingState:
    """What one complementary run trains, and all a resume needs to go on exactly where it
    stopped: the model, optimiser, learning-rate schedule, gradient scaler and generators.

    It owns the checkpoint format (``run<i>/checkpoint.pt``, a dict written by ``torch.save``):
    :meth:`checkpoint` makes it, :meth:`restore` reads it back into a state and
    :meth:`read_model` the final model out of it (:mod:`sei_core.evaluate`). The keys:
    ``epoch`` (the last one trained), ``history`` (its per-epoch status rows), ``model``,
    ``optimizer``, ``scheduler``, ``scaler`` (state dicts), ``order_gen``, ``aug_gen``,
    ``torch_rng`` (generator states, CPU byte tensors) and ``cuda_rng`` (None off CUDA).
    """

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    order_gen: torch.Generator  # the batch order (CPU)
    aug_gen: torch.Generator  # the augmentation (on the training device)
    device: torch.device

    @classmethod
    def build(cls, config: TrainConfig, prompts: list[str], index: int, device: torch.device,
              scale_gradients: bool = False) -> "TrainingState":
        """The untrained state of complementary run ``index``, seeded by :func:`run_seed`;
        ``scale_gradients``: float16 mixed precision, which needs a gradient scaler."""
        seed = run_seed(config.seed, index)
        torch.manual_seed(seed)
        model = on_device(build_model(config.model, prompts, weights=config.weights,
                                      image_size=config.image_size), device)
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=config.resolved_milestones(),
                                                     gamma=config.gamma)
        return cls(model, opt, sched, torch.amp.GradScaler("cuda", enabled=scale_gradients),
                   torch.Generator().manual_seed(seed), torch.Generator(device=device).manual_seed(seed + 1),
                   device)

    def checkpoint(self, epoch: int, history: list[dict]) -> dict:
        """The checkpoint after ``epoch`` (live tensors: :class:`CheckpointWriter` copies them)."""
        return {
            "epoch": epoch, "history": list(history), "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "order_gen": self.order_gen.get_state(), "aug_gen": self.aug_gen.get_state().cpu(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
        }

    def restore(self, path: Path) -> tuple[int, list[dict]]:
        """Load the checkpoint at ``path`` into this state; returns its epoch and history."""
        ck = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.order_gen.set_state(ck["order_gen"].cpu())  # generator states are CPU byte tensors
        self.aug_gen.set_state(ck["aug_gen"].cpu())
        torch.set_rng_state(ck["torch_rng"].cpu())
        if self.device.type == "cuda" and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"].cpu(), self.device)
        return ck["epoch"], ck["history"]

    @staticmethod
    def read_model(path: Path, device: torch.device | str = "cpu") -> tuple[dict, int]:
        """The model's state dict in the checkpoint at ``path`` and the epoch it was saved
        after (-1 if it does not say)."""
        ck = torch.load(path, map_location=device, weights_only=False)
        return ck["model"], int(ck.get("epoch", -1))


class Progress:
    """How far complementary run ``index`` has come, told as it trains: the status (phase,
    epoch, loss, accuracy, ETA, history), the log and the progress bar (``bar``). The ETA
    comes from the first batches (:class:`EarlyEstimate`) until an epoch has been timed, then
    from the mean of the last five epoch times. Only rank 0 of a multi-process run reports
    (``main``); elsewhere every call does nothing.

    ``history``: the epochs this complementary run trained before (from its checkpoint).
    ``sync`` waits for queued device work before the first batches are timed.
    """

    def __init__(self, run: Run, config: TrainConfig, index: int, n_batches: int, start_epoch: int,
                 history: list[dict], say: Callable[[str], None], *, bar: bool = False, main: bool = True,
                 sync: Callable[[], None] | None = None):
        self.run, self.config, self.index, self.n_batches = run, config, index, n_batches
        self.say, self.main = say, main
        self.phase = f"training run {index}/{config.runs}"
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=(config.epochs - start_epoch + 1) * n_batches, unit="batch", file=sys.stderr,
                            desc=f"run {index}/{config.runs}", dynamic_ncols=True)
        self.epoch_times = [h["seconds"] for h in history]
        # batches still to train in this whole run (this sub-run and the complementary ones after it)
        batches_left = (config.epochs - start_epoch + 1 + (config.runs - index) * config.epochs) * n_batches
        self.early = EarlyEstimate(batches_left, sync=sync) if main and not self.epoch_times else None

    def epoch_started(self, epoch: int) -> None:
        if self.main:
            self.run.update_status(phase=self.phase, run_index=self.index, epoch=epoch - 1)

    def batch_done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)
        if self.early is not None and not self.early.done:
            eta = self.early.batch_done()
            if eta is not None:
                self.run.update_status(eta_seconds=eta, eta_from="first batches")
                c = self.config
                self.say(f"estimated training time: about {duration_text(eta)} "
                         f"({c.runs - self.index + 1} × {c.epochs} epochs of {self.n_batches} batches, "
                         f"{self.early.seconds_per_batch:.2f} s per batch so far)")

    def epoch_done(self, epoch: int, loss: float, accuracy: float, seconds: float, history: list[dict]) -> None:
        """After the epoch's records are written: its numbers, the ETA and ``history`` (this
        complementary run's epochs; the status keeps those of the others beside them)."""
        if not self.main:
            return
        c = self.config
        self.epoch_times.append(seconds)
        remaining = (c.epochs - epoch) + (c.runs - self.index) * c.epochs
        eta = float(np.mean(self.epoch_times[-5:])) * remaining
        all_history = [h for h in self.run.status().get("history", []) if h["run"] != self.index] + history
        self.run.update_status(epoch=epoch, run_index=self.index, loss=loss, accuracy=accuracy, eta_seconds=eta,
                               eta_from="epoch times", history=all_history, phase=self.phase)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.3f}")
        else:
            self.say(f"run {self.index} epoch {epoch}/{c.epochs} loss {loss:.4f} acc {accuracy:.3f} "
                     f"({seconds:.1f}s)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _open_feed(run: Run, config: TrainConfig, prep: Prepared, index: int, device: torch.device, d: Dist,
               budget: int | None, say: Callable[[str], None]) -> feed_mod.ImageFeed:
    """The decoded images as batches on ``device`` within the memory budget (told in the log
    and the status)."""
    if budget is None:
        budget = feed_mod.memory_budget(config.memory_budget, d.local_world)
    feed = feed_mod.ImageFeed(prep.images, device, budget, rows=prep.rows)
    if d.main:
        say(f"run {index}: {feed.describe()}")
        run.update_status(image_feed=feed.mode, memory_budget=budget)
    return feed


def _resume_point(run: Run, index: int, ts: TrainingState, store, d: Dist,
                  say: Callable[[str], None]) -> tuple[int, list[dict]]:
    """The first epoch complementary run ``index`` trains and the history before it: after
    its newest checkpoint (restored into ``ts`` by every process: the run folder is shared),
    or epoch 1. Rank 0 drops what a killed process left after that checkpoint: the records
    of later epochs and half-written files."""
    start_epoch, history = 1, []
    path = run.checkpoint(index)
    if _on_main(d, path.is_file):
        last, history = ts.restore(path)
        start_epoch = last + 1
        if d.main:
            say(f"run {index}: resuming after epoch {last}")
    if d.main:
        store.truncate(start_epoch - 1)
        for stale in list(run.sub_run(index).glob(".*.tmp")) + list(store.folder.glob(".*.tmp")):
            stale.unlink(missing_ok=True)
    return start_epoch, history


def _parallel(model: torch.nn.Module, d: Dist, device: torch.device) -> torch.nn.Module:
    """``model`` as this process trains it: itself, or wrapped for DistributedDataParallel."""
    if not d.active:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    net = model
    if device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)  # BN statistics over the global batch
    # DDP broadcasts rank 0's parameters; the shared checkpoint made the optimiser states equal
    return DDP(net, device_ids=[device.index] if device.type == "cuda" else None)


def _train_one(run: Run, config: TrainConfig, prep: Prepared, aux: np.ndarray, index: int,
               device: torch.device, progress_bar: bool, say: Callable[[str], None],
               d: Dist | None = None, budget: int | None = None) -> None:
    """Train complementary run ``index`` (its auxiliary samples ``aux`` moved to the extra class
    K) from its newest checkpoint if it has one; every epoch writes its records, a checkpoint
    (:class:`TrainingState`, :class:`CheckpointWriter`) and the status (:class:`Progress`)."""
    d = d or Dist()
    main = d.main
    n, k = len(prep.data), len(prep.data.classes)
    targets = prep.data.labels.copy()
    targets[aux] = k  # the auxiliary class is the extra output K
    use_amp = config.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    ts = TrainingState.build(config, prep.prompts, index, device,
                             scale_gradients=use_amp and amp_dtype == torch.float16)
    model = ts.model
    if main:
        _record_weights(run, model.weights_info, say)
    feed = _open_feed(run, config, prep, index, device, d, budget, say)
    y_all = torch.from_numpy(targets).to(device)
    store = run.records(index, config.keep_probs)
    recorder = Recorder(n, k + 1, device)
    start_epoch, history = _resume_point(run, index, ts, store, d, say)
    ckpt_path = run.checkpoint(index)
    step = Stepper(_parallel(model, d, device), ts.opt, ts.scaler, device, config.augment, ts.aug_gen,
                   use_amp, amp_dtype, d.rank, d.world)
    saver = CheckpointWriter()
    saved_epoch = start_epoch - 1  # the epoch of the newest checkpoint this call wrote
    n_batches = batch_count(n, config.batch_size)
    if d.active and n // n_batches < 2 * d.world:
        raise RunError(f"batches of {n // n_batches} images cannot be split over {d.world} processes "
                       f"(each needs at least 2 for BatchNorm)",
                       Fix(f"raise --batch-size to at least {2 * d.world}",
                           f"raise “Batch size” to at least {2 * d.world}"))
    progress = Progress(run, config, index, n_batches, start_epoch, history, say, bar=progress_bar, main=main,
                        sync=torch.cuda.synchronize if device.type == "cuda" else None)  # GPU work is asynchronous

    def on_batch() -> None:
        progress.batch_done()
        _any_stop(d, device)

    try:
        for epoch in range(start_epoch, config.epochs + 1):
            t0 = time.monotonic()
            progress.epoch_started(epoch)
            perm = torch.randperm(n, generator=ts.order_gen)
            loss_v, acc_v = step.epoch(feed, y_all, perm, n_batches,
                                       recorder if config.record == "train" else None, on_batch)
            ts.sched.step()
            if config.record == "eval":
                _eval_pass(model, feed, y_all, recorder, config, device, use_amp, amp_dtype, d)
            if d.active:
                recorder.reduce()  # every sample's logits from the one process that trained on it
            if not main:
                recorder.reset()
                continue
            stats, probs = recorder.finalize()
            seconds = time.monotonic() - t0
            history.append({"run": index, "epoch": epoch, "loss": loss_v, "accuracy": acc_v, "seconds": seconds,
                            "lr": ts.opt.param_groups[0]["lr"]})
            store.write_epoch(epoch, stats, probs, loss=loss_v, accuracy=acc_v)
            if saver.submit(ckpt_path, ts.checkpoint(epoch, history)):
                saved_epoch = epoch
            progress.epoch_done(epoch, loss_v, acc_v, seconds, history)
    finally:
        saver.close()
    saver.wait()
    if main and start_epoch <= config.epochs and saved_epoch != config.epochs:
        # the last epoch's checkpoint was skipped: write it now, so that the run keeps its
        # final model (held-out evaluation, sei_core.evaluate, reads it)
        saver.submit(ckpt_path, ts.checkpoint(config.epochs, history))
        saver.wait()
    if main and saver.skipped:
        say(f"run {index}: {saver.skipped} of {saver.written + saver.skipped} epoch checkpoints skipped while "
            "the previous one was still being written (a resume redoes the epochs after the newest)")
    progress.close()
    if main:
        run.mark_done(index)
    if d.active:  # the others wait until the checkpoint and records of the last epoch are written
        import torch.distributed as dist

        dist.barrier()


class EarlyEstimate:
    """The training time left, estimated from the first batches of a run (before any epoch
    has finished): the mean time of batches 2 … ``measure + 1`` (the first one pays for
    warm-up) times the batches left. ``sync`` waits for queued device work before a clock
    is read (``torch.cuda.synchronize``; twice per run)."""

    def __init__(self, batches_left: int, measure: int = 5, sync: Callable[[], None] | None = None):
        self.sync = sync
        self.left = batches_left
        self.measure = max(1, min(measure, batches_left - 1))
        self.count = 0
        self.t_first: float | None = None
        self.seconds_per_batch = float("nan")
        self.done = batches_left < 2

    def batch_done(self) -> float | None:
        """Call after each batch; returns the estimate (seconds) once, when it is known."""
        self.count += 1
        if self.count == 1 or self.count - 1 >= self.measure:
            if self.sync is not None:
                self.sync()
        if self.count == 1:
            self.t_first = time.perf_counter()
            return None
        if self.count - 1 < self.measure:
            return None
        self.done = True
        self.seconds_per_batch = (time.perf_counter() - self.t_first) / (self.count - 1)
        return self.seconds_per_batch * (self.left - self.count)


def _record_weights(run: Run, info: dict, say: Callable[[str], None]) -> None:
    """Write what the model was initialised from into the run's config and status."""
    cfg = run.config()
    if cfg.get("weights_loaded") != info:
        cfg["weights_loaded"] = info
        run.write_config(cfg)
    run.update_status(weights_loaded=info)
    if info.get("source") == "random":
        say("model initialised from random weights")
    else:
        say(f"model initialised from {info.get('tag') or 'the file'} {info['file']} (sha256 {info['sha256']}…)")


def _detached_copy(obj):
    """A deep copy of a (nested) state dict with every tensor cloned to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _detached_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detached_copy(v) for v in obj)
    return obj


class CheckpointWriter:
    """Writes epoch checkpoints in a background thread while training goes on.

    The state is copied to the CPU first, so training may change the live tensors at once.
    A killed process still leaves the last complete checkpoint: the file is replaced
    atomically. If the previous write is still running when the next epoch ends, that
    epoch's checkpoint is skipped rather than waited for: a disk slower than the epochs
    (a network file system, a large model on few images) never stalls training, and a
    resumed run starts from the newest complete checkpoint and redoes the epochs after it
    (their records are truncated and rewritten). Errors surface on the next call.

    ``write(path, state)`` writes one checkpoint (default: ``torch.save`` through
    :func:`sei_core.files.atomic_write`).
    """

    def __init__(self, write: Callable[[Path, dict], None] | None = None):
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._save = write or (lambda path, state: atomic_write(path, lambda f: torch.save(state, f)))
        self.written = self.skipped = 0

    def _write(self, path: Path, state: dict) -> None:
        try:
            self._save(path, state)
        except BaseException as e:  # re-raised in the training thread by wait()
            self._error = e

    def submit(self, path: Path, state: dict) -> bool:
        """Start writing ``state`` to ``path``; False (nothing copied) while the previous
        write is still running."""
        if self._thread is not None and self._thread.is_alive():
            self.skipped += 1
            return False
        self.wait()
        snapshot = _detached_copy(state)
        self._thread = threading.Thread(target=self._write, args=(path, snapshot), daemon=True)
        self._thread.start()
        self.written += 1
        return True

    def close(self) -> None:
        """Let a write in flight finish (a stopped run keeps its newest checkpoint)."""
        if self._thread is not None:
            self._thread.join()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error


@dataclass
class Stepper:
    """One epoch of SGD over the decoded images, optionally feeding a recorder.

    In a multi-process run (``world`` > 1) every global batch is split into ``world``
    contiguous parts and this process (``rank``) trains on its part: every sample is seen by
    exactly one process per epoch, with no sampler padding. Augmentation uniforms are
    drawn for the whole global batch, and the loss is weighted by the part's share, so each
    sample gets the augmentation and the gradient weight it would get in one process.
    """

    model: torch.nn.Module
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    augment: str
    aug_gen: torch.Generator
    use_amp: bool = False
    amp_dtype: torch.dtype = torch.bfloat16
    rank: int = 0
    world: int = 1

    def epoch(self, feed: feed_mod.ImageFeed, y_all: torch.Tensor, order: torch.Tensor, n_batches: int,
              recorder: Recorder | None = None, on_batch: Callable[[], None] | None = None) -> tuple[float, float]:
        """Train over ``order`` split into ``n_batches`` near-equal batches (never a batch of
        one, which BatchNorm cannot train on); returns mean loss and accuracy over all of
        ``order`` (summed over the processes)."""
        self.model.train()
        total_loss = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        batches = torch.tensor_split(order, n_batches)
        parts = [shard(b, self.rank, self.world) for b in batches]
        for b, (lo, _), (idx_cpu, x) in zip(batches, parts, feed.batches([idx for _, idx in parts])):
            rand = None
            if self.augment != "none":
                rand = torch.rand((len(b), 6), generator=self.aug_gen, device=self.aug_gen.device)
                rand = rand[lo:lo + len(idx_cpu)]
            idx = idx_cpu.to(self.device, non_blocking=True)
            x = augment_batch(x, self.augment, self.aug_gen, rand)
            y = y_all[idx]
            with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.use_amp):
                logits = self.model(x)
                loss = F.cross_entropy(logits.float(), y)
            # DDP averages gradients over processes: weight the part so the sum is the global mean
            objective = loss * (len(idx) * self.world / len(b)) if self.world > 1 else loss
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(objective).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            if recorder is not None:
                recorder.update(logits, y, idx)
            total_loss += loss.detach() * len(idx)
            correct += (logits.detach().argmax(1) == y).sum()
            if on_batch is not None:
                on_batch()
        if self.world > 1:
            import torch.distributed as dist

            both = torch.stack([total_loss.double(), correct.double()])
            dist.all_reduce(both)
            total_loss, correct = both[0], both[1]
        n = len(order)
        return float(total_loss) / n, float(correct) / n


def shard(batch: torch.Tensor, rank: int, world: int) -> tuple[int, torch.Tensor]:
    """The part of ``batch`` that process ``rank`` of ``world`` trains on, and its offset:
    contiguous near-equal parts that together are exactly ``batch``."""
    if world == 1:
        return 0, batch
    sizes = [len(p) for p in torch.tensor_split(batch, world)]
    lo = sum(sizes[:rank])
    return lo, batch[lo:lo + sizes[rank]]


@torch.no_grad()
def _eval_pass(model, feed, y_all, recorder, config, device, use_amp, amp_dtype, d: Dist | None = None) -> None:
    """Record logits without augmentation, in eval mode (the optional record source); each
    process of a multi-process run records its shard."""
    d = d or Dist()
    model.eval()
    n = len(y_all)
    whole = torch.tensor_split(torch.arange(n), batch_count(n, config.batch_size))
    batches = [shard(b, d.rank, d.world)[1] for b in whole]
    for idx_cpu, x in feed.batches(batches):
        idx = idx_cpu.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            logits = model(x)
        recorder.update(logits, y_all[idx], idx)

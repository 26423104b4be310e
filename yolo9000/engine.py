"""The training engine: one loop for the paper's three stages (YOLO9000 sections 2-4; darknet `train_classifier`,
`train_detector`).

`train(cfg, run_dir)` builds the model, tree, loss, optimizer, schedule and loader from a `Config` and trains:
Darknet-19 classification (flat or hierarchical softmax), YOLOv2 detection, or YOLO9000 joint training on mixed
batches of detection and classification images. It writes the run directory every tool reads:

    <run>/config.yaml   the resolved Config            <run>/last.pt      latest checkpoint (atomic)
    <run>/scalars.csv   every logged scalar            <run>/tb/          TensorBoard events
    <run>/curves.png    training curves, at the end

Design points:
* Steps count optimizer updates (darknet's batches); each update accumulates `train.subdivisions` loader batches.
  `train.max_steps`, when set, is the run's length (epochs repeat as needed), otherwise `train.epochs` epochs.
* The hot path never reads a tensor on the host. Logged values accumulate on the device and are read every
  `train.log_every` steps. The NaN guard is device-side too: a non-finite loss term sets a sticky flag that makes
  the fused SGD skip the update (`optimizer.found_inf`) and every later one, while a copy of the batch-norm
  statistics tracks the last good values; when the flag is next read (log or checkpoint step) the run stops and
  saves exactly the state before the first bad step, naming that step and the loss term.
* Exact resume: the checkpoint holds the model, optimizer, schedule, sampler position, RNG states, step, seen
  and epoch, and every sample's augmentation is seeded by (seed, epoch, batch, image) in the sampler, not by the
  loader worker that happens to load it, so a resumed run sees the same batches with the same augmentation.
* `train.ema`: a moving average of the weights (`yolo9000.ema`) is what the checkpoint's `model` holds, so
  detect, eval and a next stage's `train.init` use the averaged weights; the trained ones ride along as
  `train_model` for resuming.
* DDP via torchrun (NCCL on GPU, gloo on CPU): each rank reads its slice of the sampler's global batch, gradients
  are averaged by DDP, logged values are averaged over ranks, and only rank 0 writes files.
"""
from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from wordtree.io import load_tree
from yolo9000.builder import build, build_model, resolve_config
from yolo9000.checkpoint import (NonFiniteStateError, load_checkpoint, model_state, rng_state, save_checkpoint,
                                 set_rng_state)
from yolo9000.config import Config, ConfigError, save_config, to_dict
from yolo9000.criterion import loss_term_names
from yolo9000.data.collate import Batch
from yolo9000.data.descriptor import (DatasetDescriptor, check_tree_fits, load_descriptor, model_tree,
                                      tree_mismatch)
from yolo9000.data.device import feed
from yolo9000.device import autocast, resolve_amp
from yolo9000.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed, wrap_model
from yolo9000.ema import WeightEMA
from yolo9000.errors import ClassMapError, DatasetError, EmptySourceError
from yolo9000.evaluate import evaluate_classification, evaluate_detection  # noqa: F401  (public API)
from yolo9000.logging import RunLogger
from yolo9000.optim import build_optimizer, build_scheduler

CHECKPOINT_NAME = "last.pt"
CONFIG_NAME = "config.yaml"
STOP_REASONS = ("max_steps", "epochs", "max_seconds", "non_finite", "interrupted")


@dataclass(frozen=True)
class TrainResult:
    """How a `train()` call ended.

    Attributes:
        run_dir: the run directory.
        steps: optimizer updates completed in total (a resumed run counts the earlier ones too).
        seen: images seen in total, over all ranks.
        seconds: wall-clock time of this call's training loop.
        checkpoint: the last checkpoint written (rank 0; None on other ranks).
        stop_reason: one of STOP_REASONS.
        message: a human-readable sentence on why the run stopped.
        scalars: the last logged scalars (name -> value), e.g. "loss", "loss/cls", "images_per_s".
    """

    run_dir: Path
    steps: int
    seen: int
    seconds: float
    checkpoint: Path | None
    stop_reason: str
    message: str = ""
    scalars: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------- helpers
def batchnorm_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def initialise_from(model: nn.Module, path: str | Path, mode: str = "auto", log: Callable[[str], Any] = print
                    ) -> dict[str, Any]:
    """Start from a previous stage: our checkpoint or darknet `.weights` (`yolo9000.model.load.load_weights`).

    Args:
        model: the freshly built network.
        path: the weights file.
        mode: "full" (every tensor must fit), "trunk" (the Darknet-19 trunk only, e.g. classifier -> detector), or
            "auto" (full when the whole model fits, else the trunk).
    Returns:
        load_weights' report ({"format", "tensors", "trunk_only", "seen", ...}).
    """
    from yolo9000.model.load import WeightsError, load_weights

    if mode == "auto":
        try:
            report = load_weights(model, path)
        except WeightsError as err:
            report = load_weights(model, path, trunk_only=True)
            log(f"init: {Path(path).name} does not fit the whole model ({str(err).split(';')[0]}); loaded the "
                f"trunk only")
    else:
        report = load_weights(model, path, trunk_only=mode == "trunk")
    log(f"init: loaded {report['tensors']} tensors from {path}" + (" (trunk only)" if report["trunk_only"] else ""))
    return report


def build_trained_model(cfg: Config, weights: str | Path | None, device: torch.device | str = "cpu") -> nn.Module:
    """A model built from `cfg.model` with `weights` loaded (our checkpoint or darknet `.weights`), in eval mode."""
    model = build_model(cfg.model)
    if weights is not None:
        from yolo9000.model.load import load_weights
        load_weights(model, weights)
    return model.to(device).eval()


def _first_difference(a: Any, b: Any, prefix: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = _first_difference(a.get(key), b.get(key), f"{prefix}.{key}")
            if found:
                return found
        return None
    return None if a == b else f"{prefix}: checkpoint {a!r}, config {b!r}"


def _check_labels_fit(parts: list, num_classes: int, source: str) -> None:
    """A flat model needs every label below its class count; say which dataset breaks that, instead of a CUDA
    assert or an index error deep inside the loss."""
    for part in parts:
        if part is None:
            continue
        top = max((int(r.labels.max()) for r in part.records if len(r.labels)), default=-1)
        if top >= num_classes:
            raise ConfigError(f"{source}: {part.name} has label {top} but the model has model.num_classes="
                              f"{num_classes} (set model.num_classes or model.tree)")


# ----------------------------------------------------------------------------------------------------- trainer
class NanGuard:
    """The device-side NaN guard (module docstring): a sticky flag set by the first non-finite update, the step and
    loss terms of that update, a multiplier that poisons every later loss, and the last good batch-norm statistics.

    Nothing here reads a tensor on the host except `diverged()` and `first_bad()`, called on log and checkpoint
    steps only.
    """

    def __init__(self, model: nn.Module, device: torch.device, freeze_bn: bool) -> None:
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.first_bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.poison = torch.ones((), device=device)
        # Sized by the first batch's loss terms (total + each term), allocated in `accumulate`.
        self.update_values: torch.Tensor | None = None
        self.first_bad_terms: torch.Tensor | None = None
        self.first_bad_values: torch.Tensor | None = None
        self.tracked = [] if freeze_bn else [b for bn in batchnorm_modules(model) for b in bn.buffers()]
        self.good = [b.detach().clone() for b in self.tracked]

    def accumulate(self, values: torch.Tensor) -> None:
        """Add one micro-batch's total and loss terms Float[1 + L] to the update being formed."""
        if self.update_values is None:
            self.update_values = torch.zeros_like(values)
            self.first_bad_terms = torch.zeros_like(values, dtype=torch.bool)
            self.first_bad_values = torch.zeros_like(values)
        self.update_values += values

    def check(self, step: int, info: DistInfo) -> torch.Tensor:
        """Fold this update's values into the sticky flag; returns it (Bool[], on the device)."""
        bad_terms = ~torch.isfinite(self.update_values)
        if info.enabled:
            # Every rank must skip the same updates: DDP averaged a rank's NaN into everyone's gradients.
            bad_terms = bad_terms.float()
            dist.all_reduce(bad_terms, op=dist.ReduceOp.MAX)
            bad_terms = bad_terms > 0
        newly = bad_terms.any() & ~self.bad
        self.first_bad_step = torch.where(newly, step, self.first_bad_step)
        self.first_bad_terms = torch.where(newly, bad_terms, self.first_bad_terms)
        self.first_bad_values = torch.where(newly, self.update_values, self.first_bad_values)
        self.bad = self.bad | bad_terms.any()
        return self.bad

    def commit(self) -> None:
        """After the (possibly skipped) optimizer step: keep good statistics, poison later losses, start afresh."""
        for good, current in zip(self.good, self.tracked):
            good.copy_(torch.where(self.bad, good, current))
        # After a bad step every later loss is made NaN, so a GradScaler skips those updates too.
        self.poison = torch.where(self.bad, torch.nan, 1.0)
        self.update_values.zero_()

    def diverged(self) -> bool:
        return bool(self.bad)

    def restore_batchnorm(self) -> None:
        for current, good in zip(self.tracked, self.good):
            current.copy_(good)

    def first_bad(self, names: list[str]) -> tuple[int, list[tuple[str, float]]]:
        """The updates completed before the first bad one, and its non-finite terms with their values."""
        flags, values = self.first_bad_terms.tolist(), self.first_bad_values.tolist()
        return int(self.first_bad_step), [(n, v) for n, f, v in zip(names, flags, values) if f]


class ScalarMeter:
    """Logged values summed on the device between log steps: the total, each unweighted term, each diagnostic.

    The first batch fixes the names (`loss`, `loss/<term>`, `diag/...`).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.loss_names: list[str] = []
        self.diag_names: list[str] = []
        self.names: list[str] = []
        self.sum: torch.Tensor | None = None
        self.count = 0
        self.images = 0

    def add(self, total: torch.Tensor, terms: dict[str, torch.Tensor], images: int) -> torch.Tensor:
        """Add one micro-batch; returns its total and loss terms Float[1 + L] (what the NaN guard checks)."""
        if self.sum is None:
            self.loss_names = loss_term_names(terms)
            self.diag_names = [n for n in terms if n not in self.loss_names]
            self.names = ["loss"] + [f"loss/{n}" for n in self.loss_names] + self.diag_names
            self.sum = torch.zeros(len(self.names), device=self.device)
        values = torch.stack([total.detach().float()]
                             + [terms[n].detach().float() for n in self.loss_names + self.diag_names])
        self.sum += values
        self.count += 1
        self.images += images
        return values[:1 + len(self.loss_names)]

    def read(self, info: DistInfo) -> dict[str, float]:
        """The means since the last read, averaged over ranks (a host sync), and a fresh start."""
        values = all_reduce_mean(self.sum / max(self.count, 1), info).tolist()
        self.sum.zero_()
        self.count = self.images = 0
        return dict(zip(self.names, values))


class RunState:
    """Where the run stands (step, seen, epoch), the data position after each step not yet verified finite (the
    NaN guard rewinds to one of them), and the checkpoint: its contents, writing and resuming."""

    def __init__(self, cfg: Config, run_dir: Path, info: DistInfo) -> None:
        self.cfg, self.info = cfg, info
        self.path = run_dir / CHECKPOINT_NAME
        self.step = self.seen = self.epoch = 0
        self.history: dict[int, dict[str, Any]] = {}
        self.checkpoint: Path | None = None
        self.unsaved = ""    # why a state was not saved (its weights were non-finite), once that happened

    def record(self, sampler_state: dict[str, Any], epoch: int | None = None) -> None:
        """The data position after the current step."""
        epoch = int(sampler_state["epoch"]) if epoch is None else epoch
        self.history[self.step] = {"sampler": sampler_state, "seen": self.seen, "epoch": epoch}

    def forget_verified(self) -> None:
        self.history = {s: p for s, p in self.history.items() if s >= self.step}

    def save(self, parts: dict[str, Any], step: int | None = None) -> Path | None:
        """Write the state after `step` (default: the current one); rank 0 only. `parts`: the objects with a
        state_dict (model, optimizer, scheduler, and scaler and ema when there are). Returns the file written, or
        None (another rank, or weights gone non-finite: then `unsaved` says why and the previous checkpoint stays).
        With an ema, `model` is the averaged weights and `train_model` the trained ones."""
        step = self.step if step is None else step
        if not self.info.is_main:
            return None
        position = self.history[step]
        ema: WeightEMA | None = parts.get("ema")
        trained = parts["model"].state_dict()
        state = {"model": ema.state if ema is not None else trained, "optimizer": parts["optimizer"].state_dict(),
                 "scheduler": parts["scheduler"].state_dict(), "sampler": position["sampler"], "rng": rng_state(),
                 "step": step, "seen": position["seen"], "epoch": position["epoch"], "config": to_dict(self.cfg),
                 "world_size": self.info.world_size}
        if parts.get("scaler") is not None:
            state["scaler"] = parts["scaler"].state_dict()
        if ema is not None:
            state.update(train_model=trained, ema=ema.state_dict())
        try:
            self.checkpoint = save_checkpoint(state, self.path)
        except NonFiniteStateError as err:
            # Weights can go non-finite with finite losses (an overflowing update): never save them as good.
            self.unsaved = str(err)
            return None
        return self.checkpoint

    def resume(self, parts: dict[str, Any], loader: Any, log: Callable[[str], Any]) -> None:
        """Load `<run>/last.pt` into `parts` and the loader; the model section of the config must match."""
        state = load_checkpoint(self.path, map_location=self.info.device)
        saved_model = (state.get("config") or {}).get("model")
        if saved_model is not None:
            diff = _first_difference(saved_model, to_dict(self.cfg)["model"], "model")
            if diff:
                raise ConfigError(f"{self.path} was trained with another model ({diff}); resume with the run's "
                                  f"config.yaml or start a new run")
        weights = model_state(state, self.path)
        parts["model"].load_state_dict(state.get("train_model", weights))
        if parts.get("ema") is not None:
            if "ema" in state:
                parts["ema"].load_state_dict(state["ema"], weights)
            else:   # a run without an average resumed with one: it starts from the resumed weights
                parts["ema"].load_state_dict({"updates": 0}, weights)
        parts["optimizer"].load_state_dict(state["optimizer"])
        parts["scheduler"].load_state_dict(state["scheduler"])
        if parts.get("scaler") is not None and "scaler" in state:
            parts["scaler"].load_state_dict(state["scaler"])
        loader.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        self.step, self.seen, self.epoch = int(state["step"]), int(state["seen"]), int(state["epoch"])
        if int(state.get("world_size", self.info.world_size)) != self.info.world_size:
            log(f"resume: the checkpoint was written by {state['world_size']} processes, this run has "
                f"{self.info.world_size}: batches are sliced differently from here on")
        log(f"resume: {self.path} at step {self.step} ({self.seen} images seen, epoch {self.epoch})")


class _Trainer:
    """One training run over model, criterion and optimizer; `run()` loops `train_one_epoch` until a stop."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool, dataset_overrides: list[str] | None,
                 log: Callable[[str], Any], info: DistInfo,
                 on_log: Callable[[int, dict[str, float]], Any] | None = None) -> None:
        tc = cfg.train
        if cfg.data.dataset is None:
            raise ConfigError("data.dataset: no dataset descriptor given (e.g. --set data.dataset=shapes)")
        descriptor: DatasetDescriptor = load_descriptor(cfg.data.dataset, dataset_overrides)
        # The tree comes from the data unless the config names another; config.yaml records the one used.
        cfg = replace(cfg, model=replace(cfg.model, tree=model_tree(cfg.model.tree, descriptor)))
        cfg = resolve_config(cfg)  # what config.yaml records agrees with the model (num_classes of a tree)
        self.cfg, self.run_dir, self.info = cfg, run_dir, info
        self.on_log = on_log if info.is_main else None
        self.log = log if info.is_main else (lambda message: None)
        self.device = info.device
        self.amp = resolve_amp(self.device, tc.amp)  # checked before anything heavy is built

        random.seed(tc.seed), np.random.seed(tc.seed % 2**32), torch.manual_seed(tc.seed)
        self.tree = load_tree(cfg.model.tree)
        self.descriptor = descriptor
        check_tree_fits(descriptor, cfg.model.tree, self.tree)
        try:
            self.loader, self.counts = _build_loader(cfg, self.descriptor, self.tree, info)
        except (ClassMapError, EmptySourceError) as err:
            # With another tree than the data's, a source whose labels all miss it is the mismatch, not the data.
            if descriptor.tree is None or descriptor.tree == cfg.model.tree:
                raise
            raise tree_mismatch(descriptor, cfg.model.tree, str(err)) from None
        check_tree_fits(descriptor, cfg.model.tree, self.tree, self.loader.dataset.parts)
        self.sampler = self.loader.batch_sampler

        model, criterion, _ = build(cfg)
        if tc.init and not resume:
            initialise_from(model, tc.init, tc.init_mode, self.log)
        model.to(self.device)
        if tc.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.criterion = criterion.to(self.device)
        self.ddp_model = wrap_model(model, info)
        self.optimizer = build_optimizer(model, tc, fused=True)
        # Accumulation runs across epoch boundaries: the loader's batches form one stream.
        self.total_steps = tc.max_steps if tc.max_steps is not None else (
            tc.epochs * self.sampler.num_batches // tc.subdivisions)
        self.scheduler = build_scheduler(self.optimizer, tc, self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        self.ema = WeightEMA(model, tc.ema) if tc.ema is not None else None

        self.state = RunState(cfg, run_dir, info)
        if resume:
            self.state.resume(self._parts(), self.loader, self.log)
        self.model.train()
        for bn in batchnorm_modules(model) if tc.freeze_bn else []:
            bn.eval()
        self.guard = NanGuard(model, self.device, tc.freeze_bn)
        self.meter = ScalarMeter(self.device)
        self.state.record(self.sampler.state_dict(), epoch=self.state.epoch)
        self.micro = 0                     # micro-batches accumulated into the update being formed
        self.grad_norm: torch.Tensor | None = None
        self.scalars: dict[str, float] = {}
        self.logged_step = self.state.step
        self.data_wait = 0.0               # seconds waiting for the loader since the last log
        self.start = self.interval_start = 0.0
        self.logger: RunLogger | None = None
        self.bar = None

    def _parts(self) -> dict[str, Any]:
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler,
                "ema": self.ema}

    # ------------------------------------------------------------------ one step
    def forward_backward(self, batch: Batch, sync: bool) -> None:
        """One micro-batch: forward, weighted loss, backward (gradients accumulate until `update`)."""
        batch = batch.to(self.device, non_blocking=True)
        images = batch.images
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        # Gradients are all-reduced only on the last micro-batch of an update.
        quiet = self.ddp_model.no_sync() if self.info.enabled and not sync else contextlib.nullcontext()
        with quiet:
            with autocast(self.device, self.amp):
                output = self.ddp_model(images)
            terms = self.criterion(output, batch, seen=self.state.seen)
            total = self.criterion.total(terms) * self.guard.poison
            loss = total / self.cfg.train.subdivisions
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        images_seen = len(batch) * self.info.world_size
        self.guard.accumulate(self.meter.add(total, terms, images_seen))
        self.state.seen += images_seen

    def update(self) -> None:
        """The optimizer step of the accumulated gradients (skipped on device once the guard has tripped)."""
        bad = self.guard.check(self.state.step, self.info)
        clip = self.cfg.train.clip_grad_norm
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.scaler is not None:
            if clip:
                self.scaler.unscale_(self.optimizer)
                self.grad_norm = nn.utils.clip_grad_norm_(params, clip, foreach=True)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if clip:
                self.grad_norm = nn.utils.clip_grad_norm_(params, clip, foreach=True)
            self.optimizer.found_inf = bad.float()
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.guard.commit()
        self.state.step += 1

    # ------------------------------------------------------------------ bookkeeping
    def _diverged(self) -> bool:
        """Read the sticky NaN flag (a host sync: only on log and checkpoint steps) and forget verified history."""
        if self.guard.diverged():
            return True
        self.state.forget_verified()
        return False

    def _stop_non_finite(self) -> tuple[str, str]:
        step, bad = self.guard.first_bad(["loss"] + self.meter.loss_names)
        self.guard.restore_batchnorm()
        # Parameters and momentum are untouched since the bad step (skipped updates); rewind the schedule.
        self.scheduler.last_epoch = step
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                       self.scheduler.lr_lambdas):
            group["lr"] = base * factor(step)
        # The average took in the bad step's batch-norm statistics: the last good state is the trained weights.
        self.ema = None
        saved = self.state.save(self._parts(), step)
        self.state.step, self.state.seen = step, self.state.history[step]["seen"]
        terms = ", ".join(f"{n}={v}" for n, v in bad)
        where = f"; saved the last good state (step {step}) to {saved}" if saved else ""
        if self.state.unsaved:
            where = f"; the weights were already non-finite after step {step}: {self.state.unsaved}"
        return "non_finite", f"non-finite loss at step {step + 1} ({terms}): training stopped{where}"

    def _log_scalars(self, elapsed: float) -> None:
        steps = max(self.state.step - self.logged_step, 1)
        images = self.meter.images
        scalars = self.meter.read(self.info)
        scalars.update({
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": images / max(elapsed, 1e-9),
            "seen": self.state.seen,
            "epoch": self.state.epoch,
            "time/step": elapsed / steps,
            "time/data_wait": self.data_wait / steps,
        })
        if self.grad_norm is not None:
            scalars["grad_norm"] = float(self.grad_norm)
        if self.info.is_main:
            self.logger.log(self.state.step, scalars)
        self.scalars = scalars
        if self.on_log is not None:
            self.on_log(self.state.step, scalars)
        self.logged_step = self.state.step
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{scalars['loss']:.4g}", img_s=f"{scalars['images_per_s']:.1f}")

    def _batches(self) -> Iterator[Batch]:
        """The loader's batches, timing how long the loop waits for each (data wait)."""
        iterator = feed(self.loader, self.device)  # data.decode=device: decoded and augmented on the device
        while True:
            start = time.perf_counter()
            batch = next(iterator, None)
            self.data_wait += time.perf_counter() - start
            if batch is None:
                return
            yield batch

    def _finished(self) -> str | None:
        tc = self.cfg.train
        if self.state.step >= self.total_steps or (tc.max_steps is None and self.state.epoch >= tc.epochs):
            return "max_steps" if tc.max_steps is not None else "epochs"
        return None

    # ------------------------------------------------------------------ loop
    def train_one_epoch(self) -> tuple[str, str] | None:
        """Train until the epoch's batches run out (None) or the run must stop: (stop reason, message)."""
        tc, state = self.cfg.train, self.state
        self.sampler.set_epoch(state.epoch)
        resumed_at, yielded = self.sampler.start, 0
        for batch in self._batches():
            yielded += 1
            self.forward_backward(batch, sync=self.micro + 1 == tc.subdivisions)
            self.micro += 1
            if self.micro < tc.subdivisions:
                continue
            self.micro = 0
            self.update()
            state.record(self.loader.state_dict())
            if self.bar is not None:
                self.bar.update(1)
            now = time.monotonic()
            log_now = state.step % tc.log_every == 0 or state.step >= self.total_steps
            checkpoint_now = tc.checkpoint_every > 0 and state.step % tc.checkpoint_every == 0
            over_time = tc.max_seconds is not None and now - self.start >= tc.max_seconds
            if self.info.enabled:
                # Ranks must agree on stopping; they compare clocks only when they meet anyway (log steps).
                over_time = log_now and self._any_rank(over_time)
            # The NaN flag is read (a host sync) only when something would be logged or saved.
            verify = log_now or checkpoint_now or over_time or state.step >= self.total_steps
            if verify and self._diverged():
                return self._stop_non_finite()
            if log_now:
                self._log_scalars(now - self.interval_start)
                self.interval_start, self.data_wait = time.monotonic(), 0.0
            if state.step >= self.total_steps:
                return self._finished(), ""
            if over_time:
                return "max_seconds", ""
            if checkpoint_now and state.save(self._parts()) is None and state.unsaved:
                return "non_finite", f"the weights became non-finite with finite losses: {state.unsaved}"
        if yielded == 0 and resumed_at == 0:
            raise DatasetError(f"{self.descriptor.source}: epoch {state.epoch} produced no batch (every sample "
                               "failed to load?)")
        state.epoch += 1
        return None

    def run(self) -> TrainResult:
        tc, info, state = self.cfg.train, self.info, self.state
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / CONFIG_NAME)
        # A resumed run drops what the dead run logged after its checkpoint: those steps are trained again.
        self.logger = RunLogger(self.run_dir, enabled=info.is_main, tensorboard=tc.tensorboard,
                                resume_step=state.step if state.step > 0 else None)
        batch_images = self.sampler.batch_size * tc.subdivisions * info.world_size
        self.log(f"train: {self.cfg.model.kind} on {self.descriptor.name} ("
                 + ", ".join(f"{n} {k}" for k, n in self.counts.items()) + f" images), {self.total_steps} steps of "
                 f"{batch_images} images, device {self.device}" + (f", amp {self.amp}" if self.amp != "off" else "")
                 + (f", {info.world_size} processes" if info.enabled else "") + f", run dir {self.run_dir}")
        from tqdm import tqdm
        self.bar = tqdm(total=self.total_steps, initial=state.step, desc="train", dynamic_ncols=True
                        ) if info.is_main and tc.progress else None
        self.start = self.interval_start = time.monotonic()
        stop, message = None, ""
        try:
            while stop is None:
                stop = self._finished()
                if stop is None:
                    stop, message = self.train_one_epoch() or (None, "")
        except KeyboardInterrupt:
            stop, message = "interrupted", f"interrupted after step {state.step}"
            self.guard.restore_batchnorm()   # a half-done step may have moved the batch-norm statistics
        seconds = time.monotonic() - self.start
        if stop != "non_finite":
            if self._diverged():
                stop, message = self._stop_non_finite()
            else:
                if self.meter.count and state.step > self.logged_step:
                    self._log_scalars(time.monotonic() - self.interval_start)
                if state.save(self._parts()) is None and state.unsaved:
                    stop, message = "non_finite", f"the weights became non-finite with finite losses: {state.unsaved}"
        if self.bar is not None:
            self.bar.close()
        self.logger.close(curves=True)
        if not message:
            message = {"max_steps": f"reached train.max_steps={tc.max_steps}",
                       "epochs": f"finished {tc.epochs} epoch(s)",
                       "max_seconds": f"used the train.max_seconds={tc.max_seconds} budget"}[stop]
        self.log(f"train: stopped at step {state.step}: {message}; {state.seen} images seen, {seconds:.1f} s"
                 + (f"; checkpoint {state.checkpoint}" if state.checkpoint and stop != "non_finite" else ""))
        return TrainResult(self.run_dir, state.step, state.seen, seconds, state.checkpoint, stop, message,
                           dict(self.scalars))

    def _any_rank(self, flag: bool) -> bool:
        value = torch.tensor(float(flag), device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value > 0)


def _build_loader(cfg: Config, descriptor: DatasetDescriptor, tree: Any, info: DistInfo) -> tuple[Any, dict]:
    """The training loader, and the image count of each kind it draws from."""
    from yolo9000.data.loader import build_train_loader

    data_cfg = cfg.data
    if cfg.model.head == "classifier":
        # The classifier trains on classification images only (paper section 3); every slot of a batch is one.
        data_cfg = replace(data_cfg, det_per_batch=0, cls_per_batch=data_cfg.det_per_batch + data_cfg.cls_per_batch)
    loader = build_train_loader(descriptor, tree, data_cfg, seed=cfg.train.seed, rank=info.rank,
                                world_size=info.world_size)
    parts = loader.dataset.parts
    if cfg.model.head == "classifier" and not any(p.kind == "classification" for p in parts):
        raise ConfigError(f"{descriptor.source}: model.kind=darknet19 trains on classification images, "
                          "but the train split has none")
    if tree is None:
        _check_labels_fit(parts, cfg.model.num_classes, str(descriptor.source))
    used = [p for p in parts if cfg.model.head != "classifier" or p.kind == "classification"]
    return loader, {p.kind: len(p) for p in used}


def train(cfg: Config, run_dir: str | Path, *, resume: bool = False, dataset_overrides: list[str] | None = None,
          log: Callable[[str], Any] = print, on_log: Callable[[int, dict[str, float]], Any] | None = None
          ) -> TrainResult:
    """Train the model `cfg` describes on `cfg.data.dataset`, writing `run_dir` (module docstring).

    Args:
        cfg: the resolved config (model, loss, data, train).
        run_dir: the run directory; created; its config.yaml, scalars and last.pt are (re)written.
        resume: continue from `<run_dir>/last.pt` exactly where it stopped (model, optimizer, schedule, sampler
            position, RNG, step, seen); the model section of `cfg` must match the checkpoint's.
        dataset_overrides: `key=value` edits of the dataset descriptor (e.g. `root=/data/coco`).
        log: where progress messages go (rank 0 only).
        on_log: called as on_log(step, scalars) at every log step (rank 0 only), e.g. to forecast the run's time.
    Returns:
        TrainResult. A non-finite loss does not raise: the result's stop_reason is "non_finite" and its message
        names the step and the loss term; the checkpoint then holds the last good state.
    Raises:
        ConfigError, DescriptorError, CheckpointError: on bad configs, datasets or checkpoints (named).
    """
    info = init_distributed(cfg.train.device)
    try:
        result = _Trainer(cfg, Path(run_dir), resume, dataset_overrides, log, info, on_log).run()
        # Leave together (only after a normal end, where every rank gets here): a rank that tore gloo down while
        # rank 0 was still writing its checkpoint and curves was seen to abort on a loaded machine.
        barrier(info)
        return result
    finally:
        cleanup(info)

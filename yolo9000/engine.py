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

from yolo9000.checkpoint import (NonFiniteStateError, load_checkpoint, model_state, rng_state, save_checkpoint,
                                 set_rng_state)
from yolo9000.config import Config, ConfigError, save_config, to_dict
from yolo9000.criterion import build_criterion, loss_term_names
from yolo9000.data.collate import Batch
from yolo9000.data.descriptor import DatasetDescriptor, load_descriptor
from yolo9000.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed, wrap_model
from yolo9000.evaluate import evaluate_classification, evaluate_detection  # noqa: F401  (public API)
from yolo9000.logging import RunLogger
from yolo9000.model import build_model
from yolo9000.optim import build_optimizer, build_scheduler
from yolo9000.trees import load_tree

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
def resolve_amp(device: torch.device, amp: str) -> str:
    """`train.amp` for `device`: "auto" becomes "bf16" where the hardware computes in bf16 (CPUs with AVX512-BF16
    or AMX: 2-4x faster convolutions here; GPUs since Ampere), "fp16" on older GPUs, "off" elsewhere."""
    if amp == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "off"
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs CUDA (fp16 with a GradScaler); use train.amp=bf16 on CPU")
    if amp not in ("off", "bf16", "fp16"):
        raise ConfigError(f"train.amp: {amp!r} is not one of 'auto', 'off', 'bf16', 'fp16'")
    return amp


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """The autocast context of `train.amp` ("auto", "off", "bf16", "fp16") on `device`."""
    amp = resolve_amp(device, amp)
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


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

    if mode not in ("auto", "full", "trunk"):
        raise ConfigError(f"train.init_mode: {mode!r} is not one of 'auto', 'full', 'trunk'")
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
class _Trainer:
    """One training run; `run()` is the loop. Split into methods only to keep each piece readable."""

    def __init__(self, cfg: Config, run_dir: Path, resume: bool, dataset_overrides: list[str] | None,
                 log: Callable[[str], Any], info: DistInfo) -> None:
        self.cfg, self.run_dir, self.info = cfg, run_dir, info
        self.log = log if info.is_main else (lambda message: None)
        tc = cfg.train
        if tc.subdivisions < 1 or tc.log_every < 1 or tc.checkpoint_every < 0:
            raise ConfigError("train.subdivisions and train.log_every must be >= 1, train.checkpoint_every >= 0")
        if cfg.data.dataset is None:
            raise ConfigError("data.dataset: no dataset descriptor given (e.g. --set data.dataset=datasets/x.yaml)")
        self.device = info.device
        self.amp = resolve_amp(self.device, tc.amp)  # validated before anything heavy is built
        self.autocast = lambda: autocast(self.device, self.amp)

        random.seed(tc.seed), np.random.seed(tc.seed % 2**32), torch.manual_seed(tc.seed)
        self.tree = load_tree(cfg.model.tree)
        self.descriptor: DatasetDescriptor = load_descriptor(cfg.data.dataset, dataset_overrides)
        self.loader = self._build_loader()
        self.sampler = self.loader.batch_sampler

        model = build_model(cfg.model)
        if tc.init and not resume:
            initialise_from(model, tc.init, tc.init_mode, self.log)
        model.to(self.device)
        if tc.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.criterion = build_criterion(cfg.model, cfg.loss, model, self.tree).to(self.device)
        self.ddp_model = wrap_model(model, info)
        self.optimizer = build_optimizer(model, tc, fused=True)
        # Accumulation runs across epoch boundaries: the loader's batches form one stream.
        self.total_steps = tc.max_steps if tc.max_steps is not None else (
            tc.epochs * self.sampler.num_batches // tc.subdivisions)
        self.scheduler = build_scheduler(self.optimizer, tc, self.total_steps)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None

        self.step, self.seen, self.epoch = 0, 0, 0
        if resume:
            self._resume()
        self.model.train()
        for bn in batchnorm_modules(model) if tc.freeze_bn else []:
            bn.eval()
        # The NaN guard's device state (module docstring): a sticky flag, the first bad step with its terms and
        # values, the loss multiplier that poisons every later step, and the last good batch-norm statistics.
        self._bad = torch.zeros((), dtype=torch.bool, device=self.device)
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self._first_bad_terms = self._first_bad_values = None
        self._poison = torch.ones((), device=self.device)
        self._tracked = [] if tc.freeze_bn else [b for bn in batchnorm_modules(model) for b in bn.buffers()]
        self._good = [b.detach().clone() for b in self._tracked]
        # Data position and images seen after each step not yet verified finite (the guard rewinds to one).
        self._history = {self.step: {"sampler": self.sampler.state_dict(), "seen": self.seen, "epoch": self.epoch}}

    # ------------------------------------------------------------------ setup
    def _build_loader(self):
        from yolo9000.data.loader import build_train_loader

        cfg, info = self.cfg, self.info
        data_cfg = cfg.data
        if cfg.model.kind == "darknet19":
            # The classifier trains on classification images only (paper section 3); every slot of a batch is one.
            data_cfg = replace(data_cfg, det_per_batch=0, cls_per_batch=data_cfg.det_per_batch + data_cfg.cls_per_batch)
        loader = build_train_loader(self.descriptor, self.tree, data_cfg, seed=cfg.train.seed, rank=info.rank,
                                    world_size=info.world_size)
        parts = loader.dataset.parts
        if cfg.model.kind == "darknet19" and not any(p.kind == "classification" for p in parts):
            raise ConfigError(f"{self.descriptor.source}: model.kind=darknet19 trains on classification images, "
                              "but the train split has none")
        if self.tree is None:
            _check_labels_fit(parts, cfg.model.num_classes, str(self.descriptor.source))
        used = [p for p in parts if cfg.model.kind != "darknet19" or p.kind == "classification"]
        self.counts = {p.kind: len(p) for p in used}
        return loader

    def _position(self) -> dict[str, Any]:
        """Where the data stream stands after the current step (read while the loader is being iterated: its
        state counts the batches handed out, not those its workers prefetched)."""
        sampler = self.loader.state_dict()
        return {"sampler": sampler, "seen": self.seen, "epoch": int(sampler["epoch"])}

    def _resume(self) -> None:
        path = self.run_dir / CHECKPOINT_NAME
        state = load_checkpoint(path, map_location=self.device)
        saved_model = (state.get("config") or {}).get("model")
        if saved_model is not None:
            diff = _first_difference(saved_model, to_dict(self.cfg)["model"], "model")
            if diff:
                raise ConfigError(f"{path} was trained with another model ({diff}); resume with the run's "
                                  f"config.yaml or start a new run")
        self.model.load_state_dict(model_state(state, path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.loader.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        self.step, self.seen, self.epoch = int(state["step"]), int(state["seen"]), int(state["epoch"])
        if int(state.get("world_size", self.info.world_size)) != self.info.world_size:
            self.log(f"resume: the checkpoint was written by {state['world_size']} processes, this run has "
                     f"{self.info.world_size}: batches are sliced differently from here on")
        self.log(f"resume: {path} at step {self.step} ({self.seen} images seen, epoch {self.epoch})")

    # ------------------------------------------------------------------ hot path
    def _forward_backward(self, batch: Batch, sync: bool) -> None:
        batch = batch.to(self.device, non_blocking=True)
        images = batch.images
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        # Gradients are all-reduced only on the last micro-batch of an update.
        quiet = self.ddp_model.no_sync() if self.info.enabled and not sync else contextlib.nullcontext()
        with quiet:
            with self.autocast():
                output = self.ddp_model(images)
            terms = self.criterion(output, batch, seen=self.seen)
            total = self.criterion.total(terms) * self._poison
            loss = total / self.cfg.train.subdivisions
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self._names is None:
            # The first batch fixes the logged names: total, each unweighted term, each diagnostic.
            self._loss_names = loss_term_names(terms)
            self._diag_names = [n for n in terms if n not in self._loss_names]
            self._names = ["loss"] + [f"loss/{n}" for n in self._loss_names] + self._diag_names
            self._acc = torch.zeros(len(self._names), device=self.device)
            self._update_values = torch.zeros(1 + len(self._loss_names), device=self.device)
            self._first_bad_terms = torch.zeros_like(self._update_values, dtype=torch.bool)
            self._first_bad_values = torch.zeros_like(self._update_values)
        values = torch.stack([total.detach().float()]
                             + [terms[n].detach().float() for n in self._loss_names + self._diag_names])
        self._acc += values
        self._acc_count += 1
        self._update_values += values[:1 + len(self._loss_names)]
        images_seen = len(batch) * self.info.world_size
        self.seen += images_seen
        self._interval_images += images_seen

    def _update(self) -> None:
        bad_terms = ~torch.isfinite(self._update_values)
        if self.info.enabled:
            # Every rank must skip the same updates: DDP averaged a rank's NaN into everyone's gradients.
            bad_terms = bad_terms.float()
            dist.all_reduce(bad_terms, op=dist.ReduceOp.MAX)
            bad_terms = bad_terms > 0
        newly = bad_terms.any() & ~self._bad
        self._first_bad = torch.where(newly, self.step, self._first_bad)
        self._first_bad_terms = torch.where(newly, bad_terms, self._first_bad_terms)
        self._first_bad_values = torch.where(newly, self._update_values, self._first_bad_values)
        self._bad = self._bad | bad_terms.any()
        params = [p for p in self.model.parameters() if p.grad is not None]
        if self.scaler is not None:
            if self.cfg.train.clip_grad_norm:
                self.scaler.unscale_(self.optimizer)
                self._grad_norm = nn.utils.clip_grad_norm_(params, self.cfg.train.clip_grad_norm, foreach=True)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if self.cfg.train.clip_grad_norm:
                self._grad_norm = nn.utils.clip_grad_norm_(params, self.cfg.train.clip_grad_norm, foreach=True)
            self.optimizer.found_inf = self._bad.float()
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        for good, current in zip(self._good, self._tracked):
            good.copy_(torch.where(self._bad, good, current))
        # After a bad step every later loss is made NaN, so a GradScaler skips those updates too.
        self._poison = torch.where(self._bad, torch.nan, 1.0)
        self._update_values.zero_()
        self.step += 1

    # ------------------------------------------------------------------ bookkeeping
    def _state(self, step: int, position: dict[str, Any]) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "sampler": position["sampler"], "rng": rng_state(),
                 "step": step, "seen": position["seen"], "epoch": position["epoch"], "config": to_dict(self.cfg),
                 "world_size": self.info.world_size}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def _save(self, step: int | None = None) -> Path | None:
        step = self.step if step is None else step
        if not self.info.is_main:
            return None
        try:
            return save_checkpoint(self._state(step, self._history[step]), self.run_dir / CHECKPOINT_NAME)
        except NonFiniteStateError as err:
            # Weights can go non-finite with finite losses (an overflowing update): never save them as good.
            self._unsaved = str(err)
            return None

    def _diverged(self) -> bool:
        """Read the sticky NaN flag (a host sync: only on log and checkpoint steps) and forget verified history."""
        if bool(self._bad):
            return True
        self._history = {s: p for s, p in self._history.items() if s >= self.step}
        return False

    def _stop_non_finite(self) -> tuple[str, str]:
        step = int(self._first_bad)          # updates completed before the bad one
        names = ["loss"] + self._loss_names
        bad = [(n, v) for n, f, v in zip(names, self._first_bad_terms.tolist(), self._first_bad_values.tolist()) if f]
        for current, good in zip(self._tracked, self._good):
            current.copy_(good)
        # Parameters and momentum are untouched since the bad step (skipped updates); rewind the schedule.
        self.scheduler.last_epoch = step
        for group, base, factor in zip(self.optimizer.param_groups, self.scheduler.base_lrs,
                                       self.scheduler.lr_lambdas):
            group["lr"] = base * factor(step)
        saved = self._save(step)
        self._checkpoint = saved or self._checkpoint
        self.step, self.seen = step, self._history[step]["seen"]
        terms = ", ".join(f"{n}={v}" for n, v in bad)
        where = f"; saved the last good state (step {step}) to {saved}" if saved else ""
        if self._unsaved:
            where = f"; the weights were already non-finite after step {step}: {self._unsaved}"
        return "non_finite", f"non-finite loss at step {step + 1} ({terms}): training stopped{where}"

    def _log_scalars(self, elapsed: float, wait: float) -> None:
        values = all_reduce_mean(self._acc / max(self._acc_count, 1), self.info).tolist()
        scalars = dict(zip(self._names, values))
        steps = max(self.step - self._logged_step, 1)
        scalars.update({
            "lr": self.optimizer.param_groups[0]["lr"],
            "images_per_s": self._interval_images / max(elapsed, 1e-9),
            "seen": self.seen,
            "epoch": self.epoch,
            "time/step": elapsed / steps,
            "time/data_wait": wait / steps,
        })
        if self._grad_norm is not None:
            scalars["grad_norm"] = float(self._grad_norm)
        if self.info.is_main:
            self.logger.log(self.step, scalars)
        self.scalars = scalars
        self._acc.zero_()
        self._acc_count = 0
        self._interval_images = 0
        self._logged_step = self.step
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{scalars['loss']:.4g}", img_s=f"{scalars['images_per_s']:.1f}")

    def _batches(self) -> Iterator[Batch]:
        """The loader's batches, timing how long the loop waits for each (data wait)."""
        iterator = iter(self.loader)
        while True:
            start = time.perf_counter()
            batch = next(iterator, None)
            self._wait += time.perf_counter() - start
            if batch is None:
                return
            yield batch

    # ------------------------------------------------------------------ loop
    def run(self) -> TrainResult:
        tc, info = self.cfg.train, self.info
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.run_dir / CONFIG_NAME)
        # A resumed run drops what the dead run logged after its checkpoint: those steps are trained again.
        self.logger = RunLogger(self.run_dir, enabled=info.is_main, tensorboard=tc.tensorboard,
                                resume_step=self.step if self.step > 0 else None)
        self._names = None
        self._acc_count = self._interval_images = 0
        self._grad_norm = None
        self._checkpoint: Path | None = None
        self._unsaved = ""     # why a state was not saved (non-finite weights), when that happened
        self.scalars: dict[str, float] = {}
        self._logged_step = self.step
        self._wait = 0.0
        batch_images = (self.sampler.batch_size * tc.subdivisions * info.world_size)
        self.log(f"train: {self.cfg.model.kind} on {self.descriptor.name} ("
                 + ", ".join(f"{n} {k}" for k, n in self.counts.items()) + f" images), {self.total_steps} steps of "
                 f"{batch_images} images, device {self.device}" + (f", amp {self.amp}" if self.amp != "off" else "")
                 + (f", {info.world_size} processes" if info.enabled else "") + f", run dir {self.run_dir}")
        from tqdm import tqdm
        self.bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True
                        ) if info.is_main and tc.progress else None
        start = interval_start = time.monotonic()
        stop, message, micro = None, "", 0
        try:
            while stop is None:
                if self.step >= self.total_steps or (tc.max_steps is None and self.epoch >= tc.epochs):
                    stop = "max_steps" if tc.max_steps is not None else "epochs"
                    break
                self.sampler.set_epoch(self.epoch)
                resumed_at = self.sampler.start
                yielded = 0
                for batch in self._batches():
                    yielded += 1
                    self._forward_backward(batch, sync=micro + 1 == tc.subdivisions)
                    micro += 1
                    if micro < tc.subdivisions:
                        continue
                    micro = 0
                    self._update()
                    self._history[self.step] = self._position()
                    if self.bar is not None:
                        self.bar.update(1)
                    now = time.monotonic()
                    log_now = self.step % tc.log_every == 0 or self.step >= self.total_steps
                    checkpoint_now = tc.checkpoint_every > 0 and self.step % tc.checkpoint_every == 0
                    over_time = tc.max_seconds is not None and now - start >= tc.max_seconds
                    if info.enabled:
                        # Ranks must agree on stopping; they compare clocks only when they meet anyway (log steps).
                        over_time = log_now and self._any_rank(over_time)
                    # The NaN flag is read (a host sync) only when something would be logged or saved.
                    verify = log_now or checkpoint_now or over_time or self.step >= self.total_steps
                    if verify and self._diverged():
                        stop, message = self._stop_non_finite()
                        break
                    if log_now:
                        self._log_scalars(now - interval_start, self._wait)
                        interval_start, self._wait = time.monotonic(), 0.0
                    if self.step >= self.total_steps:
                        stop = "max_steps" if tc.max_steps is not None else "epochs"
                        break
                    if over_time:
                        stop = "max_seconds"
                        break
                    if checkpoint_now:
                        self._checkpoint = self._save() or self._checkpoint
                        if self._unsaved:
                            stop = "non_finite"
                            message = f"the weights became non-finite with finite losses: {self._unsaved}"
                            break
                else:
                    if yielded == 0 and resumed_at == 0:
                        raise RuntimeError(f"{self.descriptor.source}: epoch {self.epoch} produced no batch (every "
                                           "sample failed to load?)")
                    self.epoch += 1
        except KeyboardInterrupt:
            stop, message = "interrupted", f"interrupted after step {self.step}"
            for current, good in zip(self._tracked, self._good):
                current.copy_(good)   # a half-done step may have moved the batch-norm statistics
        seconds = time.monotonic() - start
        if stop != "non_finite":
            if self._diverged():
                stop, message = self._stop_non_finite()
            else:
                if self._acc_count and self.step > self._logged_step:
                    self._log_scalars(time.monotonic() - interval_start, self._wait)
                self._checkpoint = self._save() or self._checkpoint
                if self._unsaved:
                    stop, message = "non_finite", f"the weights became non-finite with finite losses: {self._unsaved}"
        if self.bar is not None:
            self.bar.close()
        self.logger.close(curves=True)
        if not message:
            message = {"max_steps": f"reached train.max_steps={tc.max_steps}",
                       "epochs": f"finished {tc.epochs} epoch(s)",
                       "max_seconds": f"used the train.max_seconds={tc.max_seconds} budget"}[stop]
        self.log(f"train: stopped at step {self.step}: {message}; {self.seen} images seen, {seconds:.1f} s"
                 + (f"; checkpoint {self._checkpoint}" if self._checkpoint and stop != "non_finite" else ""))
        return TrainResult(self.run_dir, self.step, self.seen, seconds, self._checkpoint, stop, message,
                           dict(self.scalars))

    def _any_rank(self, flag: bool) -> bool:
        value = torch.tensor(float(flag), device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value > 0)


def train(cfg: Config, run_dir: str | Path, *, resume: bool = False, dataset_overrides: list[str] | None = None,
          log: Callable[[str], Any] = print) -> TrainResult:
    """Train the model `cfg` describes on `cfg.data.dataset`, writing `run_dir` (module docstring).

    Args:
        cfg: the resolved config (model, loss, data, train).
        run_dir: the run directory; created; its config.yaml, scalars and last.pt are (re)written.
        resume: continue from `<run_dir>/last.pt` exactly where it stopped (model, optimizer, schedule, sampler
            position, RNG, step, seen); the model section of `cfg` must match the checkpoint's.
        dataset_overrides: `key=value` edits of the dataset descriptor (e.g. `root=/data/coco`).
        log: where progress messages go (rank 0 only).
    Returns:
        TrainResult. A non-finite loss does not raise: the result's stop_reason is "non_finite" and its message
        names the step and the loss term; the checkpoint then holds the last good state.
    Raises:
        ConfigError, DescriptorError, CheckpointError: on bad configs, datasets or checkpoints (named).
    """
    info = init_distributed(cfg.train.device)
    try:
        result = _Trainer(cfg, Path(run_dir), resume, dataset_overrides, log, info).run()
        # Leave together (only after a normal end, where every rank gets here): a rank that tore gloo down while
        # rank 0 was still writing its checkpoint and curves was seen to abort on a loaded machine.
        barrier(info)
        return result
    finally:
        cleanup(info)

"""One-shot device check (issue 15): correctness on CUDA against the CPU, training and inference throughput, the
data path and DDP, in one command of at most ~8 minutes on one H100/H200, written to one JSON file plus a table.

    .venv/bin/python bench/gpu_check.py [--out gpu_check.json] [--budget 450]
    .venv/bin/python bench/gpu_check.py --dry        # the same code on the CPU at tiny sizes, in seconds

Sections (each guarded: a failure is recorded with its traceback and the rest still runs; a section that would
start after the time budget is recorded as skipped):

  loss            RegionLoss on the device against the loop reference of tests/test_loss.py (float64, CPU):
                  every term and its gradient, flat and tree models
  tree_ops        grouped_log_softmax, tree_nll, absolute_probs forward and backward on the full 9k tree, float32
                  and bf16 inputs, against float64 on the CPU
  decode          decode() and PostProcess on the device against the CPU
  train_steps     three SGD steps on one batch (tiny model, 9k tree, float32, TF32 off) on the device and on the
                  CPU from the same initialisation: losses to 1e-3
  checkpoint      a checkpoint written from the device, loaded on the CPU, gives the device's outputs
  train_speed     YOLO9000 (9k tree) at 416 and 544 and YOLOv2 at 416, batch 64, bf16 autocast, channels_last,
                  eager and torch.compile'd network: images/s, peak memory, the step's time over the bare network's
                  forward + backward, and whether a step runs under torch.cuda.set_sync_debug_mode("error")
  inference       BN-folded channels_last network under bf16 autocast + postprocess, batch 1 and 64
  data_path       synthetic 640x480 COCO-like JPEGs: images/s of the CPU loader (decode + augmentation on every
                  host core) against the device path (data.decode=device: bytes from workers, nvjpeg decode and
                  the shared augmentation batched on the device), whether each keeps up with train_speed, and
                  YOLOv2 training fed by the device path against the same steps repeating one batch
  ddp             DistributedDataParallel at world size 1 (NCCL; gloo with --dry), three steps, equal to the bare
                  model's

--dry: CPU, the conftest tiny tree, the tiny model at 64 px, batch 2, torch.compile with the "eager" backend (the
graph capture without code generation), gloo. It is run by tests/test_gpu_check.py in `make test`, so this script
cannot rot. The last line printed is the JSON.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
import traceback
import zlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the loss's loop reference lives with its test

from wordtree.io import load_tree, write_json  # noqa: E402
from wordtree.ops import absolute_probs, grouped_log_softmax, tree_nll  # noqa: E402
from wordtree.tree import WordTree  # noqa: E402
from yolo9000.builder import build_criterion, build_model  # noqa: E402
from yolo9000.checkpoint import load_checkpoint, model_state, save_checkpoint  # noqa: E402
from yolo9000.config import DataConfig, LossConfig, ModelConfig, TrainConfig, load_config  # noqa: E402
from yolo9000.data.collate import Batch  # noqa: E402
from yolo9000.decode import decode  # noqa: E402
from yolo9000.model.inference import prepare_for_inference  # noqa: E402
from yolo9000.optim import build_optimizer  # noqa: E402
from yolo9000.postprocess import PostProcess  # noqa: E402
from yolo9000.resources import config_file  # noqa: E402

SECTIONS = ("loss", "tree_ops", "decode", "train_steps", "checkpoint", "train_speed", "inference", "data_path", "ddp")
NUM_9K_NODES = 9418


class Context:
    """What every section needs: the device, the sizes (full or --dry), the tree, the time budget."""

    def __init__(self, dry: bool, budget: float, workdir: Path) -> None:
        self.dry = dry
        self.device = torch.device("cpu" if dry or not torch.cuda.is_available() else "cuda")
        self.cuda = self.device.type == "cuda"
        self.start = time.monotonic()
        self.budget = budget
        self.workdir = workdir
        self.tree, self.tree_source = (tiny_tree(), "tiny (dry)") if dry else full_tree()
        # Models name their tree by file (builder.resolve_model_config reads it): the tree written once here.
        self.tree_file = workdir / "tree.json"
        write_json(self.tree, self.tree_file)
        self.results: dict[str, Any] = {}

    def left(self) -> float:
        return self.budget - (time.monotonic() - self.start)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


# ----------------------------------------------------------------------------------------------------- helpers
def tiny_tree() -> WordTree:
    """The conftest tree: two roots, a one-child group, a deep chain, internal labels."""
    wnids = ["a", "b", "a1", "a2", "a3", "b1", "a3x", "a3y", "b1x", "b1x_p", "b1x_q"]
    return WordTree.from_parents(wnids, [-1, -1, 0, 0, 0, 1, 4, 4, 5, 8, 8])


def full_tree() -> tuple[WordTree, str]:
    """darknet's 9k tree from the cache, or a generated tree of the same size and a similar shape if absent."""
    try:
        return load_tree("9k"), "darknet 9k.tree"
    except Exception as err:  # noqa: BLE001  (no cache on the device machine: say so and carry on)
        rng = np.random.default_rng(0)
        parents, used = [-1] * 20, set()
        while len(parents) < NUM_9K_NODES:
            # A group of 2-12 siblings under a random earlier childless node (siblings stay contiguous): about the
            # 9k tree's 1846 groups and depth 16.
            parent = int(rng.integers(0, len(parents)))
            if parent in used:
                continue
            used.add(parent)
            parents += [parent] * min(int(rng.integers(2, 12)), NUM_9K_NODES - len(parents))
        return WordTree.from_parents([f"n{i:08d}" for i in range(NUM_9K_NODES)], parents), \
            f"generated ({type(err).__name__}: {err})"


def model_config(ctx: Context, name: str, tree: bool) -> ModelConfig:
    """ModelConfig of the shipped config `name` (--dry: the tiny model): over ctx.tree, or 80 flat classes."""
    cfg = load_config(config_file("tiny" if ctx.dry else name)).model
    if tree:
        return replace(cfg, tree=str(ctx.tree_file), num_classes=ctx.tree.num_nodes)
    return replace(cfg, tree=None, num_classes=80)


def synthetic_batch(batch: int, size: int, num_labels: int, device: torch.device, seed: int = 0,
                    detection_fraction: float = 1.0, boxes_per_image: int = 4) -> Batch:
    """Random images and targets: the first `detection_fraction` of the images have boxes, the rest one label."""
    g = torch.Generator().manual_seed(seed)
    num_det = max(1, round(batch * detection_fraction))
    xy = torch.rand(batch, boxes_per_image, 2, generator=g) * size * 0.7
    wh = 8 + torch.rand(batch, boxes_per_image, 2, generator=g) * size * 0.3
    boxes = torch.cat([xy, xy + wh], -1)
    labels = torch.randint(num_labels, (batch, boxes_per_image), generator=g)
    is_det = torch.arange(batch) < num_det
    boxes[~is_det] = -1
    labels[~is_det, 1:] = -1
    return Batch(images=torch.rand(batch, 3, size, size, generator=g), is_detection=is_det, boxes=boxes,
                 labels=labels, image_ids=torch.arange(batch), orig_sizes=torch.full((batch, 2), size),
                 letterbox=torch.tensor([[1.0, 0.0, 0.0]]).repeat(batch, 1)).to(device)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max()) if a.numel() else 0.0


def check(ok: bool, what: str) -> None:
    if not ok:
        raise AssertionError(what)


@contextlib.contextmanager
def no_tf32():
    """Exact float32 on the GPU for the comparisons (TF32 convs and matmuls round to 10 bits)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def timed(ctx: Context, fn: Callable[[], Any], steps: int, warmup: int) -> float:
    """Seconds per call of `fn`, after `warmup` calls, device-synchronised at both ends only."""
    for _ in range(warmup):
        fn()
    ctx.sync()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    ctx.sync()
    return (time.perf_counter() - start) / steps


def reset_peak(ctx: Context) -> None:
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)


def peak_gib(ctx: Context) -> float | None:
    return torch.cuda.max_memory_allocated(ctx.device) / 2 ** 30 if ctx.cuda else None


# ----------------------------------------------------------------------------------------------------- correctness
def section_loss(ctx: Context) -> dict:
    """RegionLoss on the device against the float64 loop reference (every term and its gradient)."""
    from test_loss import ANCHORS, STRIDE, TERMS, make_batch, random_raw, reference_loss

    from yolo9000.loss import RegionLoss

    out = {}
    for model, tree in (("flat", None), ("tree", tiny_tree())):
        num = tree.num_nodes if tree else 20
        cfg = LossConfig()
        raw = random_raw(num, 3, 3, seed=zlib.crc32(model.encode()))
        batch = make_batch(raw, num, list(range(num)), torch.Generator().manual_seed(1))
        loss = RegionLoss(ANCHORS, cfg, tree=tree, num_classes=None if tree else num, stride=STRIDE).to(ctx.device)
        raw_dev = raw.to(ctx.device).requires_grad_()
        raw64 = raw.double().requires_grad_()
        ours = loss(raw_dev, batch.to(ctx.device))
        ref = reference_loss(raw64, batch, cfg, tree, 0)
        worst = 0.0
        for name in TERMS:
            diff = max_diff(ours[name], ref[name])
            grad = torch.autograd.grad(ours[name], raw_dev, retain_graph=True)[0] if ours[name].requires_grad else \
                torch.zeros_like(raw_dev)
            ref_grad = torch.autograd.grad(ref[name], raw64, retain_graph=True, allow_unused=True)[0]
            gdiff = max_diff(grad, ref_grad if ref_grad is not None else torch.zeros_like(raw64))
            check(diff < 1e-4 and gdiff < 1e-4, f"{model} {name}: |term diff| {diff:.2e}, |grad diff| {gdiff:.2e}")
            worst = max(worst, diff, gdiff)
        out[model] = {"max_abs_diff": worst}
    return out


def section_tree_ops(ctx: Context) -> dict:
    """Tree ops on the device (float32 and bf16 inputs) against float64 on the CPU, forward and backward."""
    tree = ctx.tree
    rows = 8 if ctx.dry else 512
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, tree.num_nodes, generator=g) * 3
    labels = torch.randint(tree.num_nodes, (rows,), generator=g)
    labels[::7] = -1  # padded rows: loss 0, no gradient
    weights = torch.randn(rows, tree.num_nodes, generator=g)
    ops = {"grouped_log_softmax": lambda x: (grouped_log_softmax(x, tree) * weights.to(x.device)).sum(),
           "absolute_probs": lambda x: (absolute_probs(grouped_log_softmax(x, tree), tree) * weights.to(x.device)
                                        ).sum(),
           "tree_nll": lambda x: tree_nll(x, labels.to(x.device), tree).sum()}
    out = {}
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 1e-2)):
        rounded = logits.to(dtype)  # both sides see the same (rounded) input; bf16 computes in float32 inside
        for name, fn in ops.items():
            x = rounded.to(ctx.device).requires_grad_()
            x64 = rounded.double().requires_grad_()
            value, ref = fn(x), fn(x64)
            grad, = torch.autograd.grad(value, x)
            ref_grad, = torch.autograd.grad(ref, x64)
            rel = abs(float(value.detach()) - float(ref.detach())) / max(1.0, abs(float(ref.detach())))
            gdiff = max_diff(grad.float(), ref_grad) / max(1.0, float(ref_grad.abs().max()))
            check(rel < tol and gdiff < tol, f"{name} {dtype}: relative diff {rel:.2e}, gradient {gdiff:.2e}")
            out[f"{name}_{str(dtype).split('.')[-1]}"] = {"rel_diff": rel, "grad_rel_diff": gdiff}
    out["tree"] = ctx.tree_source
    out["num_nodes"] = tree.num_nodes
    return out


def section_decode(ctx: Context) -> dict:
    """decode and postprocess on the device give the CPU's boxes, scores and labels."""
    tree = ctx.tree
    anchors = torch.tensor([[0.8, 1.1], [3.0, 4.3], [9.2, 9.6]])
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 3, 5 + tree.num_nodes, 5, 7, generator=g)
    raw[:, :, 4] += 2  # enough objectness that detections survive the threshold
    cpu, dev = decode(raw, anchors, 32.0), decode(raw.to(ctx.device), anchors.to(ctx.device), 32.0)
    decode_diff = max(max_diff(getattr(cpu, f), getattr(dev, f)) for f in ("xy", "twh", "boxes", "objectness"))
    check(decode_diff < 1e-4, f"decode: |diff| {decode_diff:.2e}")
    post = PostProcess(anchors, 32, tree)
    kept_cpu = post(raw, post.decision(), conf_threshold=0.05)
    post_dev = PostProcess(anchors, 32, tree).to(ctx.device)
    kept_dev = post_dev(raw.to(ctx.device), post_dev.decision(), conf_threshold=0.05)
    check(len(kept_cpu.scores) > 0, "postprocess: no detection to compare")
    check(kept_cpu.labels.tolist() == kept_dev.labels.cpu().tolist(), "postprocess: labels differ")
    boxes_diff, scores_diff = max_diff(kept_cpu.boxes, kept_dev.boxes), max_diff(kept_cpu.scores, kept_dev.scores)
    check(boxes_diff < 1e-3 and scores_diff < 1e-5, f"postprocess: boxes {boxes_diff:.2e}, scores {scores_diff:.2e}")
    return {"decode_max_abs_diff": decode_diff, "detections": len(kept_cpu.scores), "boxes_max_abs_diff": boxes_diff,
            "scores_max_abs_diff": scores_diff}


def _tiny_setup(ctx: Context, seed: int = 0):
    """The tiny model over ctx.tree and its loss, seeded."""
    torch.manual_seed(seed)
    cfg = replace(load_config(config_file("tiny")).model, tree=str(ctx.tree_file), num_classes=ctx.tree.num_nodes)
    return cfg, build_model(cfg), build_criterion(cfg, LossConfig())


def _train(model: nn.Module, criterion: nn.Module, batch: Batch, steps: int, device: torch.device,
           wrapped: nn.Module | None = None) -> list[float]:
    model.to(device).train()
    criterion.to(device)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3, momentum=0.9))
    batch = batch.to(device)
    losses = []
    for _ in range(steps):
        total = criterion.total(criterion(((wrapped or model)(batch.images)), batch))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        losses.append(float(total.detach()))
    return losses


def section_train_steps(ctx: Context) -> dict:
    """Three SGD steps on one batch on the device and on the CPU, same start: the losses agree to 1e-3."""
    _, model, criterion = _tiny_setup(ctx)
    batch = synthetic_batch(8 if not ctx.dry else 4, 128 if not ctx.dry else 64, ctx.tree.num_nodes,
                            torch.device("cpu"), detection_fraction=0.5)
    twin, twin_criterion = copy.deepcopy(model), copy.deepcopy(criterion)
    with no_tf32():
        device_losses = _train(model, criterion, batch, 3, ctx.device)
    cpu_losses = _train(twin, twin_criterion, batch, 3, torch.device("cpu"))
    rel = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(device_losses, cpu_losses))
    check(all(map(math.isfinite, device_losses)) and rel < 1e-3, f"losses {device_losses} vs CPU {cpu_losses}")
    return {"device_losses": device_losses, "cpu_losses": cpu_losses, "max_rel_diff": rel}


def section_checkpoint(ctx: Context) -> dict:
    """A checkpoint saved from the device loads on the CPU (map_location) and gives the device's outputs."""
    _, model, _ = _tiny_setup(ctx)
    model.to(ctx.device).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    path = save_checkpoint({"model": model.state_dict(), "step": 3}, ctx.workdir / "device.pt")
    state = load_checkpoint(path, map_location="cpu")
    check(all(t.device.type == "cpu" for t in state["model"].values()), "checkpoint: tensors not on the CPU")
    _, cpu_model, _ = _tiny_setup(ctx, seed=1)
    cpu_model.load_state_dict(model_state(state, path))
    with torch.no_grad(), no_tf32():
        diff = max_diff(model(x.to(ctx.device)), cpu_model.eval()(x))
    check(diff < 1e-3, f"checkpoint: outputs differ by {diff:.2e}")
    return {"max_abs_diff": diff, "bytes": path.stat().st_size}


# ----------------------------------------------------------------------------------------------------- speed
def _compile(ctx: Context, model: nn.Module) -> nn.Module:
    # --dry: the "eager" backend captures the graph (what breaks first) without inductor's minutes of codegen.
    return torch.compile(model, backend="eager") if ctx.dry else torch.compile(model)


def _speed_run(ctx: Context, name: str, size: int, compiled: bool, batch_size: int, steps: int) -> dict:
    tree = name == "yolo9000"
    cfg = model_config(ctx, name, tree)
    torch.manual_seed(0)
    model = build_model(cfg).to(ctx.device).to(memory_format=torch.channels_last).train()
    criterion = build_criterion(cfg, LossConfig()).to(ctx.device)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-4), fused=True)
    network = _compile(ctx, model) if compiled else model
    batch = synthetic_batch(batch_size, size, cfg.num_classes, ctx.device, seed=1,
                            detection_fraction=0.25 if tree else 1.0)
    images = batch.images.contiguous(memory_format=torch.channels_last)
    amp = torch.autocast(ctx.device.type, dtype=torch.bfloat16)

    def step() -> None:  # the engine's hot path: autocast forward, loss, backward, fused SGD
        with amp:
            output = network(images)
        total = criterion.total(criterion(output, batch))
        total.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def bare() -> None:  # the network alone: forward + backward of a trivial loss
        with amp:
            output = network(images)
        output.float().square().mean().backward()
        model.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step()
    first_step = time.perf_counter() - start
    sync_free: bool | str | None = None
    if ctx.cuda:
        ctx.sync()
        torch.cuda.set_sync_debug_mode("error")
        try:
            step()
            sync_free = True
        except RuntimeError as err:
            sync_free = f"host sync in the step: {str(err).splitlines()[0]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
    reset_peak(ctx)
    step_seconds = timed(ctx, step, steps, warmup=2)
    peak = peak_gib(ctx)
    bare_seconds = timed(ctx, bare, steps, warmup=2)
    return {"images_per_s": batch_size / step_seconds, "step_seconds": step_seconds, "bare_seconds": bare_seconds,
            "step_over_bare": step_seconds / bare_seconds, "peak_memory_gib": peak, "sync_free": sync_free,
            "first_step_seconds": first_step}


def section_train_speed(ctx: Context) -> dict:
    batch_size, steps = (2, 2) if ctx.dry else (64, 10)
    runs = [("yolo9000", 416), ("yolo9000", 544), ("yolov2", 416)]
    sizes = {416: 64, 544: 96} if ctx.dry else {416: 416, 544: 544}
    out: dict[str, Any] = {"batch": batch_size, "amp": "bf16", "channels_last": True}
    failures = []
    for compiled in (False, True):
        # --dry compiles one variant only: tracing is what --dry checks, and each trace costs seconds on a CPU.
        for name, size in runs[:1] if compiled and ctx.dry else runs:
            key = f"{name}_{size}_{'compiled' if compiled else 'eager'}"
            if ctx.left() < (90 if compiled else 30) and not ctx.dry:
                out[key] = {"skipped": "time budget"}
                failures.append(key)
                continue
            try:
                out[key] = _speed_run(ctx, name, sizes[size], compiled, batch_size, steps)
                if out[key]["sync_free"] not in (True, None):
                    failures.append(f"{key}: {out[key]['sync_free']}")
            except Exception as err:  # noqa: BLE001  (one failing variant must not hide the others)
                out[key] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=4)}
                failures.append(key)
            finally:
                if ctx.cuda:
                    torch.cuda.empty_cache()
    rates = [v["images_per_s"] for k, v in out.items() if k.startswith("yolo9000_416") and "images_per_s" in v]
    out["yolo9000_416_best_images_per_s"] = max(rates) if rates else None
    if failures:
        out["failures"] = failures
        raise PartialFailure(out)
    return out


class PartialFailure(Exception):
    """A section that measured what it could; `args[0]` is its result."""


def section_inference(ctx: Context) -> dict:
    out = {}
    batches = (1, 2) if ctx.dry else (1, 64)
    for name, size in (("yolov2", 416), ("yolo9000", 544)):
        cfg = model_config(ctx, name, name == "yolo9000")
        torch.manual_seed(0)
        prepared = prepare_for_inference(build_model(cfg)).to(ctx.device)
        post = PostProcess(cfg.anchors, cfg.stride, ctx.tree if name == "yolo9000" else None).to(ctx.device)
        scorer = post.decision()
        size = 64 if ctx.dry else size
        for batch_size in batches:
            x = torch.rand(batch_size, 3, size, size, device=ctx.device).contiguous(memory_format=torch.channels_last)

            def infer() -> None:
                with torch.no_grad(), torch.autocast(ctx.device.type, dtype=torch.bfloat16):
                    raw = prepared(x)
                post(raw, scorer)

            def network() -> None:
                with torch.no_grad(), torch.autocast(ctx.device.type, dtype=torch.bfloat16):
                    prepared(x)

            steps = 2 if ctx.dry else (50 if batch_size == 1 else 10)
            warmup = 1 if ctx.dry else 3
            total, bare = timed(ctx, infer, steps, warmup), timed(ctx, network, steps, warmup)
            out[f"{name}_{size}_b{batch_size}"] = {"images_per_s": batch_size / total, "ms_per_batch": total * 1e3,
                                                    "network_ms": bare * 1e3, "postprocess_ms": (total - bare) * 1e3}
    return out


def _write_jpegs(root: Path, count: int, height: int, width: int) -> Path:
    """A COCO-like detection set of noisy JPEGs (quality 90, photo-sized), flat labels; returns the descriptor."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(count):
        base = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        picture = np.asarray(Image.fromarray(base).resize((width, height), Image.BICUBIC), dtype=np.int16)
        noisy = np.clip(picture + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(root / "images" / f"{i:05d}.jpg", quality=90)
        images.append({"id": i + 1, "file_name": f"{i:05d}.jpg", "height": height, "width": width})
        for k in range(3):
            w, h = int(rng.integers(20, width // 2)), int(rng.integers(20, height // 2))
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1 + k,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    categories = [{"id": k, "name": f"c{k}"} for k in (1, 2, 3)]
    (root / "det.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                               "categories": categories}))
    descriptor = root / "world.yaml"
    descriptor.write_text("splits:\n  train:\n    detection: {format: coco, annotations: det.json, images: images}\n")
    return descriptor


def section_data_path(ctx: Context) -> dict:
    from yolo9000.data.descriptor import load_descriptor
    from yolo9000.data.device import DeviceFeeder
    from yolo9000.data.loader import build_train_loader

    cores = os.cpu_count() or 1
    count, (height, width), size, batch_size, batches = (
        (12, (48, 64), 64, 4, 3) if ctx.dry else (384, (480, 640), 416, 64, 16))
    descriptor = load_descriptor(_write_jpegs(ctx.workdir / "jpegs", count, height, width))
    base = DataConfig(det_per_batch=batch_size, cls_per_batch=0, multiscale=(size,))
    device_workers = 2 if ctx.dry else min(8, cores)

    def rate(decode: str, workers: int) -> dict:
        data_cfg = replace(base, decode=decode, workers=workers)
        loader = build_train_loader(descriptor, None, data_cfg, seed=0, num_batches=batches + 2)
        stream = DeviceFeeder(loader, ctx.device) if decode == "device" else loader
        start = time.perf_counter()
        images, first = 0, None
        for n, batch in enumerate(stream):
            if decode == "cpu":
                batch = batch.to(ctx.device, non_blocking=True)
            if n < 2:  # the first batches pay for worker start-up
                ctx.sync()
                first = time.perf_counter()
                continue
            images += len(batch)
        ctx.sync()
        seconds = time.perf_counter() - first
        return {"images_per_s": images / seconds, "workers": workers, "startup_seconds": first - start,
                "images": images}

    def fed_training() -> dict:
        """YOLOv2 training steps fed by the device path against the same steps repeating one batch: what is left
        of the training rate when decoding runs alongside (in the feeder thread, on its own stream)."""
        cfg = model_config(ctx, "yolov2", False)
        torch.manual_seed(0)
        model = build_model(cfg).to(ctx.device).to(memory_format=torch.channels_last).train()
        criterion = build_criterion(cfg, LossConfig()).to(ctx.device)
        optimizer = build_optimizer(model, TrainConfig(lr=1e-4), fused=True)

        def step(batch: Batch) -> None:
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16):
                output = model(batch.images.contiguous(memory_format=torch.channels_last))
            criterion.total(criterion(output, batch)).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        loader = build_train_loader(descriptor, None, replace(base, decode="device", workers=device_workers), seed=1,
                                    num_batches=batches + 2)
        stream = iter(DeviceFeeder(loader, ctx.device))
        first = next(stream)
        repeated = timed(ctx, lambda: step(first), batches // 2, warmup=2)
        step(next(stream))
        ctx.sync()
        start, images = time.perf_counter(), 0
        for batch in stream:
            step(batch)
            images += len(batch)
        ctx.sync()
        fed = images / (time.perf_counter() - start)
        return {"model": "yolov2", "repeated_batch_images_per_s": batch_size / repeated, "fed_images_per_s": fed,
                "fed_over_repeated": fed * repeated / batch_size}

    out = {"host_cores": cores, "image_size": [height, width], "input_size": size, "batch": batch_size,
           "cpu": rate("cpu", cores), "device": rate("device", device_workers), "training": fed_training()}
    train = (ctx.results.get("train_speed") or {}).get("yolo9000_416_best_images_per_s")
    out["train_images_per_s"] = train
    if train:
        out["cpu_keeps_up"] = out["cpu"]["images_per_s"] >= train
        out["device_keeps_up"] = out["device"]["images_per_s"] >= train
    out["device_over_cpu"] = out["device"]["images_per_s"] / out["cpu"]["images_per_s"]
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def section_ddp(ctx: Context) -> dict:
    """DDP at world size 1 (NCCL on CUDA, gloo on the CPU): three steps give the bare model's losses."""
    import torch.distributed as dist

    backend = "nccl" if ctx.cuda else "gloo"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        _, model, criterion = _tiny_setup(ctx)
        twin, twin_criterion = copy.deepcopy(model), copy.deepcopy(criterion)
        batch = synthetic_batch(4, 64, ctx.tree.num_nodes, torch.device("cpu"), detection_fraction=0.5)
        model.to(ctx.device)
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index or 0] if ctx.cuda else None)
        with no_tf32():
            losses = _train(model, criterion, batch, 3, ctx.device, wrapped=ddp)
            bare = _train(twin, twin_criterion, batch, 3, ctx.device)
        rel = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(losses, bare))
        check(rel < 1e-4, f"DDP losses {losses} vs bare {bare}")
        return {"backend": backend, "world_size": dist.get_world_size(), "losses": losses, "max_rel_diff": rel}
    finally:
        dist.destroy_process_group()


# ----------------------------------------------------------------------------------------------------- driver
def environment(ctx: Context) -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": str(ctx.device),
           "dry": ctx.dry, "host_cores": os.cpu_count(), "tree": ctx.tree_source}
    if ctx.cuda:
        props = torch.cuda.get_device_properties(ctx.device)
        env.update({"gpu": props.name, "gpu_memory_gib": props.total_memory / 2 ** 30,
                    "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                    "cudnn": torch.backends.cudnn.version()})
    return env


def run(ctx: Context) -> dict:
    functions = {name: globals()[f"section_{name}"] for name in SECTIONS}
    for name, fn in functions.items():
        if ctx.left() <= 0:
            ctx.results[name] = {"ok": False, "skipped": "time budget"}
            continue
        start = time.monotonic()
        try:
            result, ok = fn(ctx), True
        except PartialFailure as partial:
            result, ok = partial.args[0], False
        except Exception as err:  # noqa: BLE001  (recorded; the other sections still run)
            result, ok = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=6)}, False
        ctx.results[name] = {"ok": ok, "seconds": time.monotonic() - start, **result}
        if ctx.cuda:
            torch.cuda.empty_cache()
    return ctx.results


def table(results: dict) -> str:
    lines = [f"{'section':<12} {'ok':<5} {'s':>6}  summary"]
    for name in SECTIONS:
        r = results[name]
        summary = r.get("error") or r.get("skipped") or ""
        if name == "train_speed":
            summary += " ".join(f"{k.replace('yolo', 'y')}={v['images_per_s']:.0f}/s"
                                for k, v in r.items() if isinstance(v, dict) and "images_per_s" in v)
        elif name == "inference":
            summary += " ".join(f"{k.replace('yolo', 'y')}={v['images_per_s']:.0f}/s"
                                for k, v in r.items() if isinstance(v, dict) and "images_per_s" in v)
        elif name == "data_path" and "cpu" in r:
            summary += (f"cpu {r['cpu']['images_per_s']:.0f}/s ({r['cpu']['workers']} workers), device "
                        f"{r['device']['images_per_s']:.0f}/s, train {r.get('train_images_per_s') or 0:.0f}/s; "
                        f"v2 fed/repeated {r['training']['fed_over_repeated']:.2f}")
        lines.append(f"{name:<12} {str(r['ok']):<5} {r.get('seconds', 0):6.1f}  {summary[:160]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="CPU, tiny sizes, seconds (make test runs this)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="the JSON file to write")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds; later sections are skipped after")
    args = parser.parse_args(argv)
    if args.dry:
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        ctx = Context(args.dry, args.budget, Path(tmp))
        report = {"environment": environment(ctx), "sections": run(ctx)}
    report["seconds"] = time.monotonic() - ctx.start
    report["ok"] = all(r["ok"] for r in report["sections"].values())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(table(report["sections"]))
    print(f"{'all ok' if report['ok'] else 'FAILURES'} in {report['seconds']:.0f} s; wrote {args.out}")
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

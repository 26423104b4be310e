"""Benchmark: images/s the training loader delivers against images/s one YOLO9000 training step consumes (issue 5 §8).

A COCO-like world is generated under a temp dir: `--images` detection JPEGs of 640x480 (COCO's typical size; smooth
scenes with shapes and sensor noise, quality 90, ~100 KB like COCO's) with COCO json labels mapped onto the 9k tree
through darknet's coco9k.map, and as many ImageNet-style classification JPEGs (500x375) in 9k-tree wnid folders.
The same split is packed into an HDF5 file. Then, side by side in one run (alternating, median of `--repeats`):

  folders  the training loader (416x416, full augmentation: jitter, letterbox, flip, HSV; the default batch of
           2 detection + 8 classification images) on 2 workers, reading the JPEG folders
  pack     the same loader reading the HDF5 pack
  train    one YOLO9000 training step (full 9418-node model, batch 8 at 416, forward + loss + backward + SGD, bf16
           autocast, channels_last), a few steps after a warm-up: the images/s training consumes here

Loader figures are steady-state (from the first batch on; worker start-up is reported separately). Also printed:
the per-image cost of each loader stage in one process, and what a GPU (~100x the training throughput of this CPU)
would need from the loader. Target: loader >= 3x training consumption. The last line is one JSON object.

    .venv/bin/python bench/data_speed.py [--images 300] [--batches 30] [--repeats 3] [--train-steps 2]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from yolo9000.config import DataConfig, load_config
from yolo9000.data.descriptor import build_detection, load_descriptor, load_descriptor_tree, pack_split
from yolo9000.data.loader import build_train_loader
from yolo9000.data.transforms import TrainTransform
from yolo9000.reference import darknet_file

ROOT = Path(__file__).resolve().parents[1]
SIZE = 416
WORKERS = 2
GPU_SPEEDUP = 100
TARGET = 3.0


def scene(rng: np.random.Generator, height: int, width: int) -> tuple[Image.Image, list[list[float]]]:
    """A photo-like scene: smooth background, a few filled shapes, sensor noise. Returns the image and xywh boxes."""
    base = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(base)
    boxes = []
    for _ in range(int(rng.integers(1, 7))):
        w, h = int(rng.integers(30, width // 2)), int(rng.integers(30, height // 2))
        x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x, y, x + w, y + h], fill=colour)
        boxes.append([float(x), float(y), float(w), float(h)])
    noisy = np.asarray(base, dtype=np.int16) + rng.normal(0, 8, (height, width, 3)).astype(np.int16)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), boxes


def make_world(root: Path, num_images: int, seed: int = 0) -> Path:
    """Write the COCO-like detection part and the ImageNet-like classification part; returns the descriptor."""
    rng = np.random.default_rng(seed)
    names = darknet_file("coco.names").read_text().split("\n")[:80]
    images, annotations = [], []
    (root / "det").mkdir(parents=True)
    for i in range(num_images):
        image, boxes = scene(rng, 480, 640)
        image.save(root / "det" / f"{i:06d}.jpg", quality=90)
        images.append({"id": i + 1, "file_name": f"{i:06d}.jpg", "height": 480, "width": 640})
        annotations += [{"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(rng.integers(1, 81)),
                         "bbox": box, "iscrowd": 0, "area": box[2] * box[3]} for box in boxes]
    (root / "det.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                               "categories": [{"id": k + 1, "name": n} for k, n in
                                                              enumerate(names)]}))
    tree = load_descriptor_tree(load_descriptor(ROOT / "yolo9000" / "datasets" / "coco9k.yaml"))
    wnids = [w for w in darknet_file("imagenet.labels.list").read_text().split()[:1000] if w in tree][:20]
    for i in range(num_images):
        image, _ = scene(rng, 375, 500)
        folder = root / "cls" / wnids[i % len(wnids)]
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.JPEG", quality=90)
    descriptor = root / "world.yaml"
    descriptor.write_text("tree: 9k\nsplits:\n  train:\n"
                          "    detection: {format: coco, annotations: det.json, images: det, class_map: coco9k.map}\n"
                          "    classification: {format: imagenet, images: cls}\n")
    return descriptor


def pack_descriptor(root: Path, pack: Path) -> Path:
    path = root / "packed.yaml"
    path.write_text(f"tree: 9k\nsplits:\n  train:\n    detection: {{format: pack, path: {pack}}}\n"
                    f"    classification: {{format: pack, path: {pack}}}\n")
    return path


def loader_run(descriptor: Path, batches: int, epoch: int) -> tuple[float, float]:
    """(steady-state images/s after the first batch, seconds to the first batch) of the training loader."""
    d = load_descriptor(descriptor)
    config = DataConfig(multiscale=(SIZE,), workers=WORKERS)
    loader = build_train_loader(d, load_descriptor_tree(d), config, seed=0, num_batches=batches + 1)
    loader.batch_sampler.set_epoch(epoch)
    start = time.perf_counter()
    first = None
    images = 0
    for batch in loader:
        if first is None:
            first = time.perf_counter()
            continue
        images += len(batch)
    return images / (time.perf_counter() - first), first - start


def stage_costs(descriptor: Path, count: int = 24) -> dict[str, float]:
    """Milliseconds per image of each loader stage in this process (one thread, as a loader worker runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    d = load_descriptor(descriptor)
    source = build_detection(d, "train", load_descriptor_tree(d))
    transform = TrainTransform()
    generator = torch.Generator().manual_seed(0)
    read = decode = augment = 0.0
    from yolo9000.data.images import decode_image
    for i in range(count):
        t0 = time.perf_counter()
        data = source.read_bytes(i)
        t1 = time.perf_counter()
        image = decode_image(data)
        t2 = time.perf_counter()
        transform(image, {"labels": source.records[i].labels, "boxes": source.records[i].boxes}, SIZE, generator)
        t3 = time.perf_counter()
        read, decode, augment = read + t1 - t0, decode + t2 - t1, augment + t3 - t2
    torch.set_num_threads(threads)
    return {"read_ms": 1000 * read / count, "decode_ms": 1000 * decode / count, "augment_ms": 1000 * augment / count}


def train_consumption(descriptor: Path, steps: int) -> dict[str, float]:
    """Images/s of YOLO9000 training steps (batch 8 at 416) on this machine."""
    from yolo9000.builder import build_criterion, build_model

    cfg = load_config(ROOT / "yolo9000" / "configs" / "yolo9000.yaml")
    d = load_descriptor(descriptor)
    tree = load_descriptor_tree(d)
    batch = next(iter(build_train_loader(d, tree, DataConfig(multiscale=(SIZE,), workers=0), num_batches=1)))
    torch.manual_seed(0)
    model = build_model(cfg.model).train().to(memory_format=torch.channels_last)
    criterion = build_criterion(cfg.model, cfg.loss)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    images = batch.images.contiguous(memory_format=torch.channels_last)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            raw = model(images)
        terms = criterion(raw.float(), batch)
        criterion.total(terms).backward()
        optimizer.step()
        if step:  # the first step warms up allocators and kernels
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {"seconds_per_step": seconds, "images_per_s": len(batch) / seconds, "batch": len(batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300, help="detection images (and as many classification)")
    parser.add_argument("--batches", type=int, default=30, help="batches of 8 timed per loader run")
    parser.add_argument("--repeats", type=int, default=3, help="loader runs per variant (median reported)")
    parser.add_argument("--train-steps", type=int, default=2, help="timed training steps after one warm-up")
    args = parser.parse_args()
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory(prefix="yolo9000-data-bench-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        descriptor = make_world(root, args.images)
        jpeg_kb = statistics.mean(p.stat().st_size for p in (root / "det").glob("*.jpg")) / 1024
        print(f"world: {args.images} detection 640x480 + {args.images} classification 500x375 JPEGs "
              f"(detection mean {jpeg_kb:.0f} KB) in {time.perf_counter() - start:.0f} s")
        d = load_descriptor(descriptor)
        start = time.perf_counter()
        pack = root / "train.h5"
        pack_split(d, "train", pack, load_descriptor_tree(d), progress=False)
        pack_seconds = time.perf_counter() - start
        print(f"pack: {pack.stat().st_size / 2**20:.0f} MiB in {pack_seconds:.1f} s")
        packed = pack_descriptor(root, pack)

        costs = stage_costs(descriptor)
        print(f"per image, one thread: read {costs['read_ms']:.2f} ms, decode {costs['decode_ms']:.2f} ms, "
              f"augment to {SIZE} {costs['augment_ms']:.2f} ms")

        runs: dict[str, list[tuple[float, float]]] = {"folders": [], "pack": []}
        variants = [("folders", descriptor), ("pack", packed)]
        for repeat in range(args.repeats):
            # Alternate the order: on a shared machine the load drifts, and a fixed order would favour one side.
            for name, path in variants if repeat % 2 == 0 else variants[::-1]:
                runs[name].append(loader_run(path, args.batches, repeat))
        loader = {name: {"images_per_s": statistics.median(r[0] for r in rs),
                         "startup_s": statistics.median(r[1] for r in rs)} for name, rs in runs.items()}
        for name, figures in loader.items():
            print(f"loader {name:<8} {figures['images_per_s']:7.1f} img/s at {SIZE} on {WORKERS} workers "
                  f"(first batch after {figures['startup_s']:.1f} s)")

        train = train_consumption(descriptor, args.train_steps)
        print(f"training  {train['images_per_s']:7.2f} img/s ({train['seconds_per_step']:.1f} s per step of "
              f"{train['batch']} at {SIZE}, full YOLO9000, bf16 autocast, channels_last)")

    best = max(f["images_per_s"] for f in loader.values())
    ratios = {name: f["images_per_s"] / train["images_per_s"] for name, f in loader.items()}
    gpu_train = GPU_SPEEDUP * train["images_per_s"]
    gpu_needed = TARGET * gpu_train
    per_worker = best / WORKERS
    workers_needed = math.ceil(gpu_needed / per_worker)
    for name, ratio in ratios.items():
        print(f"loader {name} / training = {ratio:.0f}x (target >= {TARGET:.0f}x): "
              f"{'met' if ratio >= TARGET else 'NOT met'}")
    print(f"on paper, a GPU {GPU_SPEEDUP}x this CPU trains at {gpu_train:.0f} img/s; {TARGET:.0f}x that is "
          f"{gpu_needed:.0f} img/s of loader, i.e. ~{workers_needed} loader workers at this machine's "
          f"{per_worker:.0f} img/s per worker (decode + augment on CPU), or GPU-side JPEG decode "
          f"(torchvision.io.decode_jpeg on device='cuda') and augmentation on the GPU for the rest")
    print(json.dumps({"images": args.images, "size": SIZE, "workers": WORKERS, "jpeg_kb": jpeg_kb,
                      "pack_seconds": pack_seconds, "stage_ms": costs, "loader": loader, "train": train,
                      "loader_over_train": ratios, "target": TARGET, "met": min(ratios.values()) >= TARGET,
                      "gpu_train_images_per_s": gpu_train, "gpu_loader_needed_images_per_s": gpu_needed,
                      "loader_images_per_s_per_worker": per_worker, "workers_needed_for_gpu": workers_needed}))


if __name__ == "__main__":
    main()

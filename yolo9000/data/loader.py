"""Training and evaluation loaders yielding `Batch` (collate.py).

The training dataset is the concatenation detection-then-classification that `MixedBatchSampler` indexes; each
item is `(dataset_index, size)` so the sampler's multi-scale size reaches every worker. A sample that fails to load
(missing, truncated, undecodable) is skipped and counted; `SkippingLoader` prints a summary at the end of each epoch
and keeps the counts in `loader.skipped`. A batch whose every sample failed is dropped.
"""
from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from wordtree.tree import WordTree
from yolo9000.config import DataConfig
from yolo9000.data.collate import Batch, collate
from yolo9000.data.descriptor import DatasetDescriptor, build_classification, build_detection
from yolo9000.data.device import EncodedBatch, EncodedSample, encode_sample, encoded_collate
from yolo9000.data.images import REASON_KINDS, ImageLoadError
from yolo9000.data.sampler import MixedBatchSampler
from yolo9000.data.source import Source
from yolo9000.data.transforms import EvalTransform, TrainTransform
from yolo9000.errors import DatasetError

Failure = tuple[str, str]  # (problem kind, file)
FAILURE_KINDS = REASON_KINDS


class SizedDataset(Dataset):
    """Detection sources then classification sources, indexed by `(index, size)`, transformed to that size.

    Returns `(image, target)` or, when the sample cannot be loaded, a `Failure` (kind, file) for the collate to
    count; exceptions other than unreadable images (bugs) still propagate. With `cache` (`data.cache`), each
    decoded image is kept the first time it is read (in every loader process its own copy): the transforms never
    modify their inputs, so a kept image serves every later epoch and size.
    """

    def __init__(self, parts: Sequence[Source], transform: TrainTransform | EvalTransform,
                 encoded: bool = False, cache: bool = False) -> None:
        if encoded and not isinstance(transform, TrainTransform):
            raise ValueError("SizedDataset: encoded samples (data.decode: device) are for training only")
        if encoded and cache:
            raise ValueError("SizedDataset: data.cache keeps decoded images; data.decode: device decodes on the "
                             "device")
        self.cache: dict[int, tuple[Tensor, dict]] | None = {} if cache else None
        self.parts = [p for p in parts if p is not None]
        self.offsets = torch.tensor([0] + [len(p) for p in self.parts]).cumsum(0)
        self.transform = transform
        self.encoded = encoded

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, item: tuple[int, ...]) -> tuple[Tensor, dict] | EncodedSample | Failure:
        # (index, size) or (index, size, seed): a seeded item is augmented from its own generator, never from the
        # worker's global RNG, so a resumed or re-sliced stream reproduces the same augmentation.
        index, size, *seed = item
        k = int(torch.searchsorted(self.offsets, index, right=True)) - 1
        part, local = self.parts[k], index - int(self.offsets[k])
        generator = torch.Generator().manual_seed(seed[0]) if seed else None
        try:
            if self.encoded:  # bytes and the drawn augmentation: the device decodes and renders (data/device.py)
                return encode_sample(part, local, self.transform, size, generator)
            if self.cache is None:
                image, target = part[local]
            else:
                if index not in self.cache:
                    self.cache[index] = part[local]
                image, target = self.cache[index]
        except ImageLoadError as err:
            return FAILURE_KINDS[err.reason], part.records[local].file
        return self.transform(image, target, size, generator)


def skipping_collate(samples: list) -> tuple[Batch | EncodedBatch | None, list[Failure]]:
    """`collate` (or `encoded_collate`) over the samples that loaded, plus the failures (counted by the loader in
    the main process)."""
    encoded = [s for s in samples if isinstance(s, EncodedSample)]
    if encoded:
        failed = [s for s in samples if not isinstance(s, EncodedSample)]
        return encoded_collate(encoded), failed
    good = [s for s in samples if isinstance(s[0], Tensor)]
    failed = [s for s in samples if not isinstance(s[0], Tensor)]
    return (collate(good) if good else None), failed


class SkippingLoader(DataLoader):
    """A DataLoader yielding `Batch`, counting skipped samples (`skipped`, `first_failures`) and batches consumed.

    `state_dict()` gives the sampler state at the number of batches actually consumed (prefetched batches are not
    counted), so a checkpoint taken mid-epoch resumes exactly. An `encoded` loader (`data.decode: device`) yields
    `EncodedBatch`es for `data.device.DeviceFeeder`, which sets `handed_out` to the position of the batch it last
    handed to the trainer.
    """

    def __init__(self, *args, encoded: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.encoded = encoded
        self.skipped: Counter = Counter()
        self.first_failures: list[Failure] = []
        self.consumed = 0
        self.handed_out: int | None = None

    def __iter__(self) -> Iterator[Batch]:
        sampler = self.batch_sampler
        start = getattr(sampler, "start", 0)
        self.skipped, self.first_failures, self.consumed = Counter(), [], start
        for batch, failed in super().__iter__():
            self.consumed += 1
            for kind, path in failed:
                if not self.skipped[kind]:
                    # Said at once: a run that stops before the epoch's summary still names what it left out.
                    print(f"data: skipped {path} ({kind}); the epoch's count follows at its end", file=sys.stderr)
                self.skipped[kind] += 1
                if len(self.first_failures) < 5:
                    self.first_failures.append((kind, path))
            if batch is not None:
                yield batch
        if self.skipped:
            details = ", ".join(f"{kind}: {n}" for kind, n in self.skipped.items())
            first = "; ".join(f"{path} ({kind})" for kind, path in self.first_failures)
            print(f"data: skipped {sum(self.skipped.values())} samples this epoch ({details}); first: {first}",
                  file=sys.stderr)

    def state_dict(self) -> dict:
        state = self.batch_sampler.state_dict()
        state["position"] = self.consumed if self.handed_out is None else self.handed_out
        return state

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.load_state_dict(state)


def _worker_init(worker_id: int) -> None:
    # Each worker decodes in one thread: workers already use the cores, and nested threads only contend.
    torch.set_num_threads(1)


def build_train_loader(descriptor: DatasetDescriptor, tree: WordTree | None, data_cfg: DataConfig, seed: int = 0,
                       rank: int = 0, world_size: int = 1, split: str = "train",
                       num_batches: int | None = None, encoded: bool | None = None) -> SkippingLoader:
    """The joint training stream: mixed batches, multi-scale, full augmentation.

    Args:
        descriptor: the dataset; its `split` provides detection and/or classification sources.
        tree: labels index this tree (None: flat labels).
        data_cfg: batch composition, sizes and augmentation.
        seed, rank, world_size: sampler determinism and DDP slice.
        num_batches: batches per epoch (default: the sampler's, one pass over the larger part).
        encoded: hand over encoded bytes and drawn augmentations (`EncodedBatch`) for decoding on the training
            device; default `data_cfg.decode == "device"`. Iterate through `data.device.feed(loader, device)`.
    Returns:
        A loader yielding `Batch` (or `EncodedBatch`); call `loader.batch_sampler.set_epoch(e)` before each epoch.
    """
    detection = build_detection(descriptor, split, tree)
    classification = build_classification(descriptor, split, tree)
    transform = TrainTransform(jitter=data_cfg.jitter, hue=data_cfg.hue, saturation=data_cfg.saturation,
                               exposure=data_cfg.exposure, flip=data_cfg.flip, min_box_size=data_cfg.min_box_size)
    if encoded is None:
        encoded = data_cfg.decode == "device"
    dataset = SizedDataset([detection, classification], transform, encoded=encoded, cache=data_cfg.cache)
    sampler = MixedBatchSampler(len(detection or []), len(classification or []), data_cfg.det_per_batch,
                                data_cfg.cls_per_batch, sizes=tuple(data_cfg.multiscale),
                                period=data_cfg.multiscale_period, seed=seed, rank=rank, world_size=world_size,
                                mixing=data_cfg.mixing, num_batches=num_batches)
    return _loader(dataset, sampler, data_cfg.workers, seed, encoded=encoded)


class _FixedBatches:
    """Sequential batches of `(index, size)` at one size (evaluation)."""

    def __init__(self, count: int, batch_size: int, size: int) -> None:
        self.count, self.batch_size, self.size = count, batch_size, size
        self.start = 0

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for first in range(0, self.count, self.batch_size):
            yield [(i, self.size) for i in range(first, min(first + self.batch_size, self.count))]

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def state_dict(self) -> dict:
        return {"position": 0}

    def load_state_dict(self, state: dict) -> None:
        pass


def build_eval_loader(descriptor: DatasetDescriptor, tree: WordTree | None, data_cfg: DataConfig,
                      split: str = "eval", batch_size: int = 8, size: int | None = None) -> SkippingLoader:
    """Detection images of `split`, letterboxed to `size` (default `data_cfg.eval_size`), in dataset order.

    Batches carry `letterbox`, `orig_sizes` and `image_ids` so detections map back to the original images.
    """
    detection = build_detection(descriptor, split, tree)
    if detection is None:
        raise DatasetError(f"{descriptor.source}: split {split!r} has no detection images to evaluate on")
    dataset = SizedDataset([detection], EvalTransform())
    return _loader(dataset, _FixedBatches(len(detection), batch_size, size or data_cfg.eval_size),
                   data_cfg.workers, 0)


def build_classification_eval_loader(descriptor: DatasetDescriptor, tree: WordTree | None, data_cfg: DataConfig,
                                     split: str = "eval", batch_size: int = 8,
                                     size: int | None = None) -> SkippingLoader:
    """Classification images of `split`, letterboxed (top-1/top-5 evaluation)."""
    classification = build_classification(descriptor, split, tree)
    if classification is None:
        raise DatasetError(f"{descriptor.source}: split {split!r} has no classification images")
    dataset = SizedDataset([classification], EvalTransform())
    return _loader(dataset, _FixedBatches(len(classification), batch_size, size or data_cfg.eval_size),
                   data_cfg.workers, 0)


def _loader(dataset: SizedDataset, batch_sampler, workers: int, seed: int, encoded: bool = False) -> SkippingLoader:
    generator = torch.Generator().manual_seed(seed)
    # Persistent workers: forking new ones every epoch makes the trainer copy every page of its parameters,
    # gradients and momentum that it writes next (copy-on-write), ~2.5 s per epoch for YOLOv2 on a CPU. The
    # sampler still runs in the main process, so epochs and resume positions are unaffected.
    return SkippingLoader(dataset, batch_sampler=batch_sampler, collate_fn=skipping_collate, num_workers=workers,
                          worker_init_fn=_worker_init if workers else None, generator=generator,
                          persistent_workers=workers > 0, prefetch_factor=2 if workers else None, encoded=encoded)

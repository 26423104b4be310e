"""The joint-training batch stream (YOLO9000 section 4) with multi-scale sizes (YOLOv2 section 2).

Indices address one concatenated dataset: detection images first (0..num_detection-1), then classification
images. Each batch is a list of `(dataset_index, size, seed)`; the size travels with every index so all loader
workers resize a batch's images the same way, and the seed (a function of seed, epoch, batch and index only) drives
the sample's augmentation, so it does not depend on which worker or rank loads it or on a mid-epoch resume.

* `mixing="quota"` (paper, our default): every batch holds `det_per_batch` detection and `cls_per_batch`
  classification images. Each part walks its own shuffled stream; the smaller one (COCO) cycles through fresh
  permutations, i.e. it is oversampled, while an epoch covers the classification set once (the paper's
  ImageNet:COCO 4:1 is e.g. det_per_batch=2, cls_per_batch=8).
* `mixing="uniform"` (darknet's `load_data_detection`): every image drawn uniformly, with replacement, from the
  combined pool, so the mix per batch is only the pool's composition on average.
* Multi-scale: every `period` batches a new square size is drawn from `sizes` (all ranks agree: the draw uses the
  shared seed, not the rank).
* DDP: the global batch is `world_size` times the per-rank batch; rank r takes the r-th slice, so ranks are
  disjoint within each batch and together cover the stream.
* Determinism: everything is a function of (seed, epoch); `state_dict()` records the epoch and the batch position
  so a resumed run continues with exactly the batches it would have seen.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor
from torch.utils.data import Sampler

DEFAULT_SIZES = tuple(range(320, 609, 32))
BatchIndices = list[tuple[int, int, int]]


def _stream(count: int, length: int, generator: torch.Generator) -> Tensor:
    """Long[length]: concatenated random permutations of range(count) (a dataset cycled without replacement)."""
    if count == 0 or length == 0:
        return torch.zeros(0, dtype=torch.long)
    rounds = math.ceil(length / count)
    # argsort of uniform noise = one independent permutation per row, without a Python loop over rounds.
    return torch.rand(rounds, count, generator=generator).argsort(dim=1).flatten()[:length]


class MixedBatchSampler(Sampler[BatchIndices]):
    """Batches of `(dataset_index, size)` mixing detection and classification images.

    Args:
        num_detection: detection images (indices 0..num_detection-1 of the concatenated dataset).
        num_classification: classification images (indices num_detection.. onwards).
        det_per_batch: detection images per batch on each rank (quota mode).
        cls_per_batch: classification images per batch on each rank (quota mode).
        sizes: square input sizes to draw from (multiples of 32); one size gives a fixed-size stream.
        period: batches between size changes.
        seed: base seed; epoch e uses seed + e.
        rank: this process's rank; world_size: number of ranks.
        mixing: "quota" (paper) or "uniform" (darknet).
        num_batches: batches per epoch per rank; default covers the larger per-batch-weighted part once
            (classification set in the paper's setting).
    """

    def __init__(self, num_detection: int, num_classification: int, det_per_batch: int, cls_per_batch: int,
                 sizes: tuple[int, ...] = DEFAULT_SIZES, period: int = 10, seed: int = 0, rank: int = 0,
                 world_size: int = 1, mixing: Literal["quota", "uniform"] = "quota",
                 num_batches: int | None = None) -> None:
        if mixing not in ("quota", "uniform"):
            raise ValueError(f"mixing={mixing!r}: expected 'quota' or 'uniform'")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if not sizes or period < 1:
            raise ValueError(f"need at least one size and period >= 1 (got sizes={sizes}, period={period})")
        # A part with no images contributes nothing; its quota moves to the other part so batches keep their size.
        if num_detection == 0:
            det_per_batch, cls_per_batch = 0, det_per_batch + cls_per_batch
        if num_classification == 0:
            det_per_batch, cls_per_batch = det_per_batch + cls_per_batch, 0
        if det_per_batch + cls_per_batch <= 0 or num_detection + num_classification == 0:
            raise ValueError("MixedBatchSampler: no images to draw from (empty datasets or zero per-batch counts)")
        self.num_detection, self.num_classification = num_detection, num_classification
        self.det_per_batch, self.cls_per_batch = det_per_batch, cls_per_batch
        self.sizes, self.period, self.seed = tuple(sizes), period, seed
        self.rank, self.world_size, self.mixing = rank, world_size, mixing
        if num_batches is None:
            per_part = [math.ceil(n / (k * world_size)) for n, k in
                        ((num_detection, det_per_batch), (num_classification, cls_per_batch)) if k > 0]
            num_batches = max(per_part) if mixing == "quota" else math.ceil(
                (num_detection + num_classification) / ((det_per_batch + cls_per_batch) * world_size))
        self.num_batches = num_batches
        self.epoch = 0
        self.start = 0  # first batch of the current epoch to yield (exact mid-epoch resume)

    @property
    def batch_size(self) -> int:
        return self.det_per_batch + self.cls_per_batch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's stream; a resume position applies only to the epoch it was saved in."""
        if epoch != self.epoch:
            self.start = 0
        self.epoch = epoch

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.start, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        """Resume at `position` batches into `epoch` (the loader saves the number of batches it consumed)."""
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"sampler state was saved with seed {state['seed']}, this sampler uses {self.seed}")
        self.epoch = int(state["epoch"])
        self.start = int(state["position"])

    def batch_sizes(self) -> Tensor:
        """Long[num_batches]: the input size of each batch of the current epoch (same on every rank)."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 2 + 1)
        blocks = math.ceil(self.num_batches / self.period)
        choice = torch.randint(len(self.sizes), (blocks,), generator=generator)
        return torch.tensor(self.sizes)[choice].repeat_interleave(self.period)[:self.num_batches]

    def epoch_indices(self) -> Tensor:
        """Long[num_batches, batch_size]: this rank's dataset indices for the whole epoch."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 2)
        world, batches = self.world_size, self.num_batches
        if self.mixing == "uniform":
            total = self.num_detection + self.num_classification
            drawn = torch.randint(total, (batches, world, self.batch_size), generator=generator)
            return drawn[:, self.rank]
        det = _stream(self.num_detection, batches * world * self.det_per_batch, generator)
        cls = _stream(self.num_classification, batches * world * self.cls_per_batch, generator) + self.num_detection
        det = det.view(batches, world, self.det_per_batch)[:, self.rank]
        cls = cls.view(batches, world, self.cls_per_batch)[:, self.rank]
        return torch.cat([det, cls], dim=1)

    def __iter__(self) -> Iterator[BatchIndices]:
        indices = self.epoch_indices().tolist()
        sizes = self.batch_sizes().tolist()
        for b in range(self.start, self.num_batches):
            yield [(i, sizes[b], self.sample_seed(b, i)) for i in indices[b]]
        self.start = 0

    def sample_seed(self, batch: int, index: int) -> int:
        """Augmentation seed of dataset image `index` in `batch` of the current epoch (hash of ints: stable)."""
        return hash((self.seed, self.epoch, batch, index)) & 0x7FFF_FFFF_FFFF_FFFF

    def __len__(self) -> int:
        return self.num_batches - self.start

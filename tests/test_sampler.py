"""MixedBatchSampler: quota, determinism per (seed, epoch), DDP slices, multi-scale period, uniform mixing, resume."""
from __future__ import annotations

import math
from collections import Counter

import pytest
import torch

from yolo9000.data.sampler import DEFAULT_SIZES, MixedBatchSampler


def batches(sampler: MixedBatchSampler) -> list[list[tuple]]:
    """Every batch of the current epoch; items are (dataset index, size, ...)."""
    return list(iter(sampler))


def test_quota_every_batch_and_classification_covered_once_per_epoch():
    sampler = MixedBatchSampler(10, 48, det_per_batch=2, cls_per_batch=6, sizes=(64,), seed=3)
    out = batches(sampler)
    assert len(out) == len(sampler) == 8  # 48 classification images / 6 per batch
    for batch in out:
        indices = [i for i, *_ in batch]
        assert sum(i < 10 for i in indices) == 2 and sum(i >= 10 for i in indices) == 6
    cls = [i for batch in out for i, *_ in batch if i >= 10]
    assert sorted(cls) == list(range(10, 58))  # one pass over ImageNet
    det = [i for batch in out for i, *_ in batch if i < 10]
    # COCO is oversampled: 16 draws from 10 images = one full permutation, then 6 from a fresh one.
    assert sorted(det[:10]) == list(range(10)) and len(set(det[10:])) == 6


def reference_quota(sampler: MixedBatchSampler) -> list[list[int]]:
    """Slow reference of the quota stream: each part walks concatenated random permutations (one per round), and
    global batch b * world + rank is this rank's share of batch b."""
    generator = torch.Generator().manual_seed(sampler.seed * 1_000_003 + sampler.epoch * 2)
    world, num = sampler.world_size, sampler.num_batches

    def stream(count: int, length: int) -> list[int]:
        if count == 0 or length == 0:
            return []
        noise = torch.rand(math.ceil(length / count), count, generator=generator)
        out: list[int] = []
        for row in noise:
            out += sorted(range(count), key=lambda k: float(row[k]))
        return out[:length]

    det = stream(sampler.num_detection, num * world * sampler.det_per_batch)
    cls = stream(sampler.num_classification, num * world * sampler.cls_per_batch)
    d, c = sampler.det_per_batch, sampler.cls_per_batch
    out = []
    for b in range(num):
        g = b * world + sampler.rank
        out.append(det[g * d:(g + 1) * d] + [k + sampler.num_detection for k in cls[g * c:(g + 1) * c]])
    return out


@pytest.mark.parametrize("num_det,num_cls,det_per,cls_per,rank,world", [
    (5, 12, 1, 3, 0, 1), (7, 30, 2, 4, 1, 3), (40, 9, 3, 1, 0, 2)])
def test_reference_loop_matches_the_vectorised_stream(num_det, num_cls, det_per, cls_per, rank, world):
    sampler = MixedBatchSampler(num_det, num_cls, det_per, cls_per, seed=1, rank=rank, world_size=world)
    sampler.set_epoch(2)
    assert [[item[0] for item in batch] for batch in batches(sampler)] == reference_quota(sampler)


def test_deterministic_per_seed_and_epoch():
    def stream(seed: int, epoch: int) -> list:
        sampler = MixedBatchSampler(20, 60, 2, 6, seed=seed)
        sampler.set_epoch(epoch)
        return batches(sampler)

    assert stream(0, 1) == stream(0, 1)
    assert stream(0, 1) != stream(0, 2)
    assert stream(0, 1) != stream(1, 1)


def test_ddp_slices_disjoint_and_covering():
    world = 3
    per_rank = [MixedBatchSampler(9, 36, 1, 4, seed=5, rank=r, world_size=world) for r in range(world)]
    for s in per_rank:
        s.set_epoch(4)
    streams = [batches(s) for s in per_rank]
    assert len({len(s) for s in streams}) == 1 and len(streams[0]) == 3  # 36 / (4 per rank x 3 ranks)
    for b in range(len(streams[0])):
        cls = [{item[0] for item in streams[r][b] if item[0] >= 9} for r in range(world)]
        assert not (cls[0] & cls[1] or cls[0] & cls[2] or cls[1] & cls[2])
        assert len({size for r in range(world) for _, size, *_ in streams[r][b]}) == 1  # all ranks agree on the size
    all_cls = sorted(i for s in streams for batch in s for i, *_ in batch if i >= 9)
    assert all_cls == list(range(9, 45))  # together: the classification set exactly once
    all_det = sorted(i for s in streams for batch in s for i, *_ in batch if i < 9)
    assert all_det == list(range(9))  # and the detection set exactly once


def test_multiscale_period_and_sizes():
    sampler = MixedBatchSampler(100, 400, 2, 8, period=10, seed=0, num_batches=95)
    sizes = [batch[0][1] for batch in batches(sampler)]
    assert len(sizes) == 95
    for first in range(0, 95, 10):
        block = sizes[first:first + 10]
        assert len(set(block)) == 1, f"size changed inside batches {first}..{first + 9}"
    assert set(sizes) <= set(DEFAULT_SIZES) and len(set(sizes)) > 3
    assert all(len({item[1] for item in batch}) == 1 for batch in batches(sampler))
    assert torch.equal(sampler.batch_sizes(), torch.tensor(sizes))
    fixed = MixedBatchSampler(100, 400, 2, 8, sizes=(416,), num_batches=12)
    assert {item[1] for batch in batches(fixed) for item in batch} == {416}


def test_uniform_mixing_draws_from_the_pool():
    sampler = MixedBatchSampler(100, 400, 2, 8, mixing="uniform", seed=0, num_batches=400)
    out = batches(sampler)
    assert all(len(batch) == 10 for batch in out)
    per_batch = Counter(sum(i < 100 for i, *_ in batch) for batch in out)
    assert len(per_batch) > 3  # no quota: the detection count varies from batch to batch
    det_fraction = sum(k * n for k, n in per_batch.items()) / (400 * 10)
    assert abs(det_fraction - 0.2) < 0.02  # the pool's composition, 100 / 500
    counts = Counter(i for batch in out for i, *_ in batch)
    assert len(counts) > 450 and max(counts) < 500  # with replacement, every index reachable
    default = MixedBatchSampler(100, 400, 2, 8, mixing="uniform")
    assert len(default) == 50  # one pass over the pool's size


def test_state_dict_resumes_mid_epoch_then_runs_full_epochs():
    sampler = MixedBatchSampler(20, 60, 2, 6, seed=7)
    sampler.set_epoch(3)
    full = batches(sampler)
    resumed = MixedBatchSampler(20, 60, 2, 6, seed=7)
    resumed.load_state_dict({"epoch": 3, "position": 4, "seed": 7})
    assert len(resumed) == len(full) - 4
    assert batches(resumed) == full[4:]
    assert batches(resumed) == full  # the position applies once: the next pass is a whole epoch
    resumed.load_state_dict({"epoch": 3, "position": 4, "seed": 7})
    resumed.set_epoch(4)  # a resume position never leaks into another epoch
    assert len(batches(resumed)) == len(full)
    with pytest.raises(ValueError, match="saved with seed 1"):
        resumed.load_state_dict({"epoch": 0, "position": 0, "seed": 1})


def test_an_empty_part_gives_its_quota_to_the_other():
    only_cls = MixedBatchSampler(0, 30, 2, 6)
    assert all(len(b) == 8 and all(i < 30 for i, *_ in b) for b in batches(only_cls))
    only_det = MixedBatchSampler(30, 0, 2, 6)
    assert only_det.det_per_batch == 8 and len(only_det) == 4


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="rank 2 outside world_size 2"):
        MixedBatchSampler(1, 1, 1, 1, rank=2, world_size=2)
    with pytest.raises(ValueError, match="mixing='random'"):
        MixedBatchSampler(1, 1, 1, 1, mixing="random")
    with pytest.raises(ValueError, match="no images"):
        MixedBatchSampler(0, 0, 1, 1)


def test_sample_seeds_depend_on_seed_epoch_batch_and_index_only():
    sampler = MixedBatchSampler(20, 60, 2, 6, seed=7)
    sampler.set_epoch(3)
    full = batches(sampler)
    seeds = [item[2] for batch in full for item in batch]
    assert len(set(seeds)) == len(seeds)  # every sample of the epoch augments differently
    resumed = MixedBatchSampler(20, 60, 2, 6, seed=7)
    resumed.load_state_dict({"epoch": 3, "position": 5, "seed": 7})
    assert batches(resumed) == full[5:]  # same indices, sizes and augmentation seeds after a resume
    sampler.set_epoch(4)
    assert not set(seeds) & {item[2] for batch in batches(sampler) for item in batch}

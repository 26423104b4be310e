"""Collate padding, and the training/eval loaders: mixed batches, failing samples skipped and counted, resume."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_data_sources import coco_ann, write_coco, write_image

from yolo9000.config import ConfigError, DataConfig
from yolo9000.data.collate import Batch, collate
from yolo9000.data.descriptor import load_descriptor
from yolo9000.data.images import decode_image
from yolo9000.data.loader import build_eval_loader, build_train_loader

SMALL = {"det_per_batch": 2, "cls_per_batch": 2, "multiscale": (64,), "eval_size": 64, "workers": 0}


def test_collate_pads_boxes_and_labels_with_minus_one():
    det = (torch.zeros(3, 8, 8), {"labels": torch.tensor([4, 5]), "boxes": torch.tensor([[0.0, 1, 2, 3], [1, 1, 4, 4]]),
                                  "image_id": 11, "orig_size": (30, 40), "letterbox": (0.5, 1.0, 2.0)})
    empty = (torch.ones(3, 8, 8), {"labels": torch.zeros(0, dtype=torch.long), "boxes": torch.zeros(0, 4),
                                   "image_id": 12})
    cls = (torch.full((3, 8, 8), 0.5), {"labels": torch.tensor([9]), "image_id": 13, "orig_size": (20, 20)})
    batch = collate([det, empty, cls])
    assert isinstance(batch, Batch) and len(batch) == 3 and batch.size == 8
    assert batch.images.shape == (3, 3, 8, 8) and batch.images[2, 0, 0, 0] == 0.5
    assert batch.is_detection.tolist() == [True, True, False]
    assert batch.labels.tolist() == [[4, 5], [-1, -1], [9, -1]]
    torch.testing.assert_close(batch.boxes[0], torch.tensor([[0.0, 1, 2, 3], [1, 1, 4, 4]]))
    assert (batch.boxes[1:] == -1).all()  # an image without boxes and a classification image: all padding
    assert batch.image_ids.tolist() == [11, 12, 13]
    assert batch.orig_sizes.tolist() == [[30, 40], [8, 8], [20, 20]]  # default: the image's own size
    assert batch.letterbox.tolist() == [[0.5, 1.0, 2.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]


def test_collate_of_classification_only_batch_keeps_one_label_column():
    batch = collate([(torch.zeros(3, 4, 4), {"labels": torch.tensor([1])}),
                     (torch.zeros(3, 4, 4), {"labels": torch.tensor([2])})])
    assert batch.labels.shape == (2, 1) and batch.boxes.shape == (2, 1, 4) and not batch.is_detection.any()


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """A COCO part with a missing and a truncated image, and an ImageNet part; returns the descriptor."""
    images, infos, anns = tmp_path / "det", [], []
    for i in range(6):
        write_image(images / f"{i}.jpg", height=40, width=56, seed=i)
        infos.append({"id": i + 1, "file_name": f"{i}.jpg", "height": 40, "width": 56})
        anns.append(coco_ann(i + 1, i + 1, 1, [4, 4, 20, 16]))
    infos.append({"id": 7, "file_name": "gone.jpg", "height": 40, "width": 56})
    anns.append(coco_ann(7, 7, 1, [4, 4, 20, 16]))
    good = (images / "5.jpg").read_bytes()
    (images / "5.jpg").write_bytes(good[:len(good) // 2])
    write_coco(tmp_path / "det.json", infos, anns, [(1, "thing")])
    for wnid in ("n1", "n2"):
        for k in range(3):
            write_image(tmp_path / "cls" / wnid / f"{k}.jpg", seed=10 + k)
    path = tmp_path / "world.yaml"
    path.write_text("splits:\n  train:\n    detection: {format: coco, annotations: det.json, images: det}\n"
                    "    classification: {format: imagenet, images: cls}\n"
                    "  eval:\n    detection: {format: coco, annotations: det.json, images: det}\n")
    return path


@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_skips_and_counts_missing_and_truncated_and_finishes_the_epoch(world, workers, capsys):
    loader = build_train_loader(load_descriptor(world), None, DataConfig(**{**SMALL, "workers": workers}), seed=0,
                                num_batches=8)
    seen = 0
    for batch in loader:
        assert batch.images.shape[1:] == (3, 64, 64) and batch.images.dtype == torch.float32
        assert batch.is_detection.sum() <= 2 and (~batch.is_detection).sum() == 2
        seen += len(batch)
    assert loader.consumed == 8
    # 8 batches x 2 detection draws from 7 images: the stream covers all 7 once (one permutation) plus 9 more.
    failures = loader.skipped["missing file"] + loader.skipped["truncated image"]
    assert loader.skipped["missing file"] >= 1 and loader.skipped["truncated image"] >= 1
    assert seen + failures == 8 * 4
    assert {kind for kind, _ in loader.first_failures} <= {"missing file", "truncated image"}
    err = capsys.readouterr().err
    assert f"skipped {failures} samples this epoch" in err and "gone.jpg" in err


def test_train_loader_state_dict_resumes_mid_epoch(world):
    def run(resume: dict | None, stop: int | None) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], dict]:
        loader = build_train_loader(load_descriptor(world), None, DataConfig(**SMALL), seed=3, num_batches=6)
        loader.batch_sampler.set_epoch(1)
        if resume:
            loader.load_state_dict(resume)
        ids, state = [], {}
        for n, batch in enumerate(loader, 1):
            ids.append((batch.image_ids, batch.images))
            if n == stop:
                state = loader.state_dict()
                break
        return ids, state

    full, _ = run(None, None)
    first, state = run(None, 2)
    assert state["epoch"] == 1 and state["position"] == 2
    rest, _ = run(state, None)
    assert len(first) + len(rest) == len(full)
    for (ids_a, images_a), (ids_b, images_b) in zip(first + rest, full):
        assert torch.equal(ids_a, ids_b)
        assert torch.equal(images_a, images_b)  # each sample's augmentation is seeded by the sampler, not the worker


def test_cached_images_give_the_same_batches_and_are_decoded_once(world, monkeypatch):
    from yolo9000.data import source as source_module

    def epochs(cache: bool) -> list[torch.Tensor]:
        loader = build_train_loader(load_descriptor(world), None, DataConfig(**SMALL, cache=cache), seed=3,
                                    num_batches=6)
        out = []
        for epoch in range(2):
            loader.batch_sampler.set_epoch(epoch)
            out += [batch.images for batch in loader]
        return out

    reads = []
    decode = source_module.decode_image
    monkeypatch.setattr(source_module, "decode_image", lambda data, file, *a, **k: reads.append(file) or decode(data, file, *a, **k))
    plain = epochs(False)
    plain_reads, reads[:] = len(reads), []
    cached = epochs(True)
    assert len(plain) == len(cached) and all(torch.equal(a, b) for a, b in zip(plain, cached))
    # Every image that loads was decoded once; the truncated one fails (and is tried) each time it is drawn.
    again = {Path(file).name for file in reads if reads.count(file) > 1}
    assert again <= {"5.jpg"} and len(reads) < plain_reads
    with pytest.raises(ConfigError, match="data.cache"):
        DataConfig(cache=True, decode="device")


def test_eval_loader_letterboxes_in_dataset_order(world):
    loader = build_eval_loader(load_descriptor(world), None, DataConfig(**SMALL), batch_size=3)
    batches = list(loader)
    ids = torch.cat([b.image_ids for b in batches]).tolist()
    assert ids == [1, 2, 3, 4, 5]  # 6 (truncated) and 7 (missing) are skipped
    assert loader.skipped["missing file"] == 1 and loader.skipped["truncated image"] == 1
    first = batches[0]
    assert first.orig_sizes[0].tolist() == [40, 56]
    torch.testing.assert_close(first.letterbox[0], torch.tensor([64 / 56, 0.0, 9.0]))  # 56x40 -> 64x46, 9 px bars
    assert (first.boxes[0, 0] - torch.tensor([4 * 64 / 56, 4 * 64 / 56 + 9, 24 * 64 / 56, 20 * 64 / 56 + 9])
            ).abs().max() < 0.6


def test_truncated_jpeg_fails_with_its_reason_and_name(tmp_path):
    path = write_image(tmp_path / "a.jpg")
    data = path.read_bytes()
    with pytest.raises(Exception) as info:
        decode_image(data[: len(data) // 2], "a.jpg")
    assert info.value.reason == "truncated" and "a.jpg" in str(info.value)
    with pytest.raises(Exception) as info:
        decode_image(b"definitely not an image", "b.bin")
    assert info.value.reason == "unreadable" and "b.bin" in str(info.value)

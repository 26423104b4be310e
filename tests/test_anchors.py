"""Dimension clusters: recovery of known shapes, IoU distance vs Euclidean, determinism, a loop reference for
the vectorised k-means, 50k boxes, errors, and the `yolo9000 anchors` command on a synthetic COCO json."""
from __future__ import annotations

import json

import pytest
import torch

from yolo9000.anchors import _distances, _lloyd, _seed_kmeans_pp, average_iou, kmeans_anchors, to_grid_units
from yolo9000.boxes import box_iou_wh
from yolo9000.cli import main

SHAPES = torch.tensor([[0.05, 0.08], [0.30, 0.12], [0.40, 0.70]])  # small, wide, large; sorted by area


def boxes_around(shapes: torch.Tensor, n: int, noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(len(shapes), (n,), generator=g)
    return shapes[which] * torch.exp(noise * torch.randn(n, 2, generator=g))


def skewed_boxes(n: int, seed: int) -> torch.Tensor:
    """COCO-like sizes: log-normal, many small boxes, a long tail of large ones, aspect ratios spread."""
    g = torch.Generator().manual_seed(seed)
    return torch.exp(0.8 * torch.randn(n, 2, generator=g) - 2).clamp(max=1.0)


@pytest.mark.parametrize("distance", ["iou", "euclidean"])
def test_recovers_three_known_shapes(distance):
    wh = boxes_around(SHAPES, 3000, 0.05, seed=1)
    result = kmeans_anchors(wh, 3, distance, seed=0)
    torch.testing.assert_close(result.centroids, SHAPES, rtol=0.02, atol=0)
    # Every box is assigned to the shape it was drawn around (5% noise cannot cross between these shapes).
    expected = box_iou_wh(wh, SHAPES).argmax(dim=1)
    assert torch.equal(result.assignment, expected)
    assert result.avg_iou > 0.9


def test_iou_distance_beats_euclidean_on_average_iou():
    for seed in range(3):
        wh = skewed_boxes(5000, seed)
        iou = kmeans_anchors(wh, 5, "iou", seed=seed)
        euclid = kmeans_anchors(wh, 5, "euclidean", seed=seed)
        assert iou.avg_iou > euclid.avg_iou + 0.01, (seed, iou.avg_iou, euclid.avg_iou)


def test_deterministic_for_a_seed():
    wh = skewed_boxes(4000, 7)
    a = kmeans_anchors(wh, 5, seed=3, restarts=2)
    b = kmeans_anchors(wh, 5, seed=3, restarts=2)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.assignment, b.assignment)
    assert a.avg_iou == b.avg_iou and a.iterations == b.iterations


def reference_kmeans(wh: list[list[float]], centroids: list[list[float]], iterations: int) -> list[list[float]]:
    """Plain-Python Lloyd iterations with the 1 - IoU distance (shared centres), one box at a time."""
    def iou(a, b):
        inter = min(a[0], b[0]) * min(a[1], b[1])
        return inter / (a[0] * a[1] + b[0] * b[1] - inter)
    for _ in range(iterations):
        members = [[] for _ in centroids]
        for box in wh:
            best = max(range(len(centroids)), key=lambda j: iou(box, centroids[j]))
            members[best].append(box)
        centroids = [[sum(b[0] for b in m) / len(m), sum(b[1] for b in m) / len(m)] for m in members]
    return centroids


def test_vectorised_lloyd_matches_loop_reference():
    wh = skewed_boxes(300, 11)
    start = _seed_kmeans_pp(wh, 4, "iou", torch.Generator().manual_seed(0))
    centroids, assignment, iterations = _lloyd(wh, start, "iou", max_iter=100)
    assert iterations < 100  # converged: the assignment is a fixed point
    expected = reference_kmeans(wh.tolist(), start.tolist(), iterations)
    torch.testing.assert_close(centroids, torch.tensor(expected), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_distances(wh, centroids, "iou"), 1 - box_iou_wh(wh, centroids))
    assert torch.equal(assignment, box_iou_wh(wh, centroids).argmax(dim=1))


def test_fifty_thousand_boxes_run():
    wh = skewed_boxes(50_000, 0)
    result = kmeans_anchors(wh, 5, "iou", seed=0)
    assert result.centroids.shape == (5, 2) and result.assignment.shape == (50_000,)
    assert torch.bincount(result.assignment, minlength=5).min() > 0
    areas = result.centroids.prod(dim=1)
    assert torch.all(areas[1:] >= areas[:-1])  # sorted by area
    assert result.avg_iou == pytest.approx(average_iou(wh, result.centroids))
    assert 0.4 < result.avg_iou < 1


def test_fewer_distinct_shapes_than_k():
    wh = torch.tensor([[0.1, 0.1]] * 20 + [[0.5, 0.2]] * 20)
    result = kmeans_anchors(wh, 3, seed=0)
    assert result.centroids.shape == (3, 2) and torch.isfinite(result.centroids).all()
    assert result.avg_iou == pytest.approx(1.0)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="k=5 clusters need at least 5 boxes, got 2"):
        kmeans_anchors(torch.rand(2, 2) + 0.1, 5)
    with pytest.raises(ValueError, match=r"box 1 has size \[0.0, 0.5\]"):
        kmeans_anchors(torch.tensor([[0.1, 0.2], [0.0, 0.5], [0.3, 0.3]]), 2)
    with pytest.raises(ValueError, match="distance"):
        kmeans_anchors(torch.rand(10, 2) + 0.1, 2, distance="manhattan")


def test_grid_units():
    assert to_grid_units(torch.tensor([[0.5, 0.25]]), 416).tolist() == [[6.5, 3.25]]


def write_coco(tmp_path, wh_pixels: torch.Tensor, image_size: tuple[int, int] = (320, 640)) -> str:
    height, width = image_size
    images = [{"id": i, "file_name": f"{i}.jpg", "height": height, "width": width} for i in range(len(wh_pixels))]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1.0, 2.0, w, h], "iscrowd": 0, "area": w * h}
                   for i, (w, h) in enumerate(wh_pixels.tolist())]
    annotations.append({"id": len(annotations), "image_id": 0, "category_id": 1, "bbox": [0, 0, 0, 5],
                        "iscrowd": 0, "area": 0})  # a degenerate box: left out by the COCO reader
    (tmp_path / "train.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                     "categories": [{"id": 1, "name": "thing"}]}))
    (tmp_path / "images").mkdir()
    descriptor = tmp_path / "toy.yaml"
    descriptor.write_text("name: toy\nsplits:\n  train:\n    detection: {format: coco, annotations: train.json, "
                          "images: images}\n")
    return str(descriptor)


def test_anchors_command(tmp_path, capsys):
    pixels = boxes_around(SHAPES, 600, 0.05, seed=2) * torch.tensor([640.0, 320.0])
    descriptor = write_coco(tmp_path, pixels)
    assert main(["anchors", "--data", descriptor, "--k", "3", "--size", "416"]) == 0
    out = capsys.readouterr().out
    assert "600 boxes in split 'train'" in out
    assert "k-means, 1 - IoU distance: avg IoU" in out and "k-means, Euclidean distance: avg IoU" in out
    anchors = json.loads(out.strip().splitlines()[-1].split("=", 1)[1])
    torch.testing.assert_close(torch.tensor(anchors), SHAPES * 13, rtol=0.02, atol=0)
    assert main(["anchors", "--data", descriptor, "--k", "601"]) == 2
    assert "needs at least 601 boxes" in capsys.readouterr().err
    assert main(["anchors", "--data", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err

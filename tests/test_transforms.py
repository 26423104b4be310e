"""Transforms keep boxes on their pixels, never modify inputs, and do darknet's HSV jitter."""
from __future__ import annotations

import colorsys

import pytest
import torch

from yolo9000.data.transforms import EvalTransform, TrainTransform, hsv_jitter, letterbox

RED_BOX = (14, 9, 41, 30)  # xyxy pixels of the filled rectangle in the 48x64 test image


def red_box_image(height: int = 48, width: int = 64, box: tuple[int, int, int, int] = RED_BOX) -> torch.Tensor:
    """Black image with a pure red filled box. Under any HSV jitter black stays black and the letterbox/pad gray
    stays gray (chroma 0), while the box keeps a strong chroma: so the box's pixels can be found after augmenting."""
    image = torch.zeros(3, height, width, dtype=torch.uint8)
    x1, y1, x2, y2 = box
    image[0, y1:y2, x1:x2] = 255
    return image


def chroma_mask(image: torch.Tensor) -> torch.Tensor:
    return (image.amax(0) - image.amin(0)) > 0.25


def mask_box(mask: torch.Tensor) -> tuple[float, float, float, float] | None:
    ys, xs = mask.nonzero(as_tuple=True)
    if not len(xs):
        return None
    return float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)


@pytest.mark.parametrize("seed", range(24))
def test_train_transform_keeps_the_box_on_its_pixels(seed):
    image = red_box_image()
    target = {"labels": torch.tensor([3]), "boxes": torch.tensor([RED_BOX], dtype=torch.float32)}
    out, new = TrainTransform(jitter=0.2, min_box_size=1.0)(image, target, 64, torch.Generator().manual_seed(seed))
    assert out.shape == (3, 64, 64) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    found = mask_box(chroma_mask(out))
    if len(new["boxes"]) == 0:  # cropped away (or below min size): nothing red may remain either
        assert found is None or (found[2] - found[0]) * (found[3] - found[1]) <= 4
        return
    assert new["labels"].tolist() == [3]
    x1, y1, x2, y2 = new["boxes"][0].tolist()
    assert found is not None
    # The box covers the filled pixels (antialiased edges may bleed half a pixel) ...
    assert x1 <= found[0] + 1 and y1 <= found[1] + 1 and x2 >= found[2] - 1 and y2 >= found[3] - 1
    # ... and not much more.
    assert found[0] <= x1 + 1.5 and found[1] <= y1 + 1.5 and found[2] >= x2 - 1.5 and found[3] >= y2 - 1.5


def test_flip_and_jitter_both_happen_across_seeds():
    image = red_box_image()
    target = {"labels": torch.tensor([0]), "boxes": torch.tensor([RED_BOX], dtype=torch.float32)}
    centres = []
    for seed in range(16):
        _, new = TrainTransform(jitter=0.2)(image, target, 64, torch.Generator().manual_seed(seed))
        if len(new["boxes"]):
            centres.append(float(new["boxes"][0, [0, 2]].mean()))
    # Unflipped the box sits left of centre (x 14..41 of 64 -> ~27.5 scaled), flipped right of it.
    assert min(centres) < 30 and max(centres) > 34


def test_photometric_jitter_never_moves_boxes():
    image = red_box_image()
    target = {"labels": torch.tensor([1]), "boxes": torch.tensor([RED_BOX], dtype=torch.float32)}
    for seed in range(6):
        _, full = TrainTransform()(image, target, 64, torch.Generator().manual_seed(seed))
        _, plain = TrainTransform(hue=0, saturation=0, exposure=0)(image, target, 64,
                                                                   torch.Generator().manual_seed(seed))
        torch.testing.assert_close(full["boxes"], plain["boxes"])


def test_transforms_never_modify_inputs():
    image = red_box_image()
    boxes = torch.tensor([RED_BOX, (0, 0, 1, 1)], dtype=torch.float32)
    labels = torch.tensor([1, 2])
    target = {"labels": labels, "boxes": boxes, "image_id": 5}
    copies = (image.clone(), boxes.clone(), labels.clone(), dict(target))
    for transform in (TrainTransform(min_box_size=2.0), EvalTransform()):
        _, new = transform(image, target, 64, torch.Generator().manual_seed(0))
        assert new is not target
    assert torch.equal(image, copies[0]) and torch.equal(boxes, copies[1]) and torch.equal(labels, copies[2])
    assert target.keys() == copies[3].keys() and target["boxes"] is boxes and target["labels"] is labels


def test_small_boxes_dropped_with_their_labels():
    image = red_box_image()
    target = {"labels": torch.tensor([7, 8]), "boxes": torch.tensor([RED_BOX, (50, 40, 51, 41)], dtype=torch.float32)}
    _, new = EvalTransform(min_box_size=2.0)(image, target, 64)
    assert new["labels"].tolist() == [7] and new["boxes"].shape == (1, 4)


def test_classification_images_get_the_same_jitter_without_boxes():
    image = red_box_image()
    out, new = TrainTransform()(image, {"labels": torch.tensor([4])}, 96, torch.Generator().manual_seed(1))
    assert out.shape == (3, 96, 96) and "boxes" not in new and new["labels"].tolist() == [4]
    again, _ = TrainTransform()(image, {"labels": torch.tensor([4])}, 96, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # a generator makes augmentation reproducible


def test_eval_letterbox_maps_back_to_the_original():
    image = red_box_image(height=48, width=96, box=(10, 8, 50, 40))
    target = {"labels": torch.tensor([0]), "boxes": torch.tensor([[10.0, 8, 50, 40]])}
    out, new = EvalTransform()(image, target, 64)
    scale, pad_x, pad_y = new["letterbox"]
    assert scale == pytest.approx(64 / 96) and pad_x == 0 and pad_y == 16
    torch.testing.assert_close(out[:, :16], torch.full((3, 16, 64), 127 / 255))  # gray bars above and below
    torch.testing.assert_close(out[:, 48:], torch.full((3, 16, 64), 127 / 255))
    back = (new["boxes"] - torch.tensor([pad_x, pad_y, pad_x, pad_y])) / scale
    torch.testing.assert_close(back, target["boxes"], atol=0.6, rtol=0)


def test_letterbox_keeps_aspect_on_tall_images():
    image = torch.zeros(3, 80, 20, dtype=torch.uint8)
    out, _, (scale, pad_x, pad_y) = letterbox(image, None, 32)
    assert out.shape == (3, 32, 32) and scale == pytest.approx(8 / 20) and pad_x == 12 and pad_y == 0


def reference_distort(image: torch.Tensor, hue: float, saturation: float, exposure: float) -> torch.Tensor:
    """darknet's distort_image one pixel at a time (colorsys HSV, h wraps, s and v scaled unclamped, RGB clamped)."""
    out = torch.empty_like(image)
    for y in range(image.shape[1]):
        for x in range(image.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*image[:, y, x].tolist())
            rgb = colorsys.hsv_to_rgb((h + hue) % 1.0, s * saturation, v * exposure)
            out[:, y, x] = torch.tensor(rgb).clamp(0, 1)
    return out


@pytest.mark.parametrize("hue,saturation,exposure", [(0.0, 1.0, 1.0), (0.1, 1.75, 0.6), (-0.1, 0.57, 1.75),
                                                     (0.45, 1.3, 1.0)])
def test_hsv_jitter_matches_darknet_pixel_loop(hue, saturation, exposure):
    image = torch.rand(3, 6, 7, generator=torch.Generator().manual_seed(0))
    image[:, 0, 0] = 0.4          # gray: no hue
    image[:, 0, 1] = 0.0          # black
    image[:, 0, 2] = torch.tensor([0.9, 0.9, 0.2])  # two channels tie for the maximum
    before = image.clone()
    out = hsv_jitter(image, hue, saturation, exposure)
    torch.testing.assert_close(out, reference_distort(image, hue, saturation, exposure), atol=1e-5, rtol=0)
    assert torch.equal(image, before)


def reference_train_transform(transform: TrainTransform, image: torch.Tensor, target: dict, size: int,
                              generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """The earlier torchvision.transforms.v2 pipeline (pad, crop, resize, flip and pad with BoundingBoxes riding
    along): a slow, independent reference for `sample` + `render` + `transform_boxes`."""
    from torchvision import tv_tensors
    from torchvision.transforms.v2 import functional as F

    from yolo9000.data.transforms import _letterbox_layout, _rand_scale, _uniform

    boxes = tv_tensors.BoundingBoxes(target["boxes"], format="XYXY", canvas_size=tuple(image.shape[-2:]))
    height, width = image.shape[-2:]
    dw, dh = transform.jitter * width, transform.jitter * height
    left, right = (round(_uniform(-dw, dw, generator)) for _ in range(2))
    top, bottom = (round(_uniform(-dh, dh, generator)) for _ in range(2))
    right, bottom = min(right, width - left - 1), min(bottom, height - top - 1)
    padding = [max(0, -left), max(0, -top), max(0, -right), max(0, -bottom)]
    image, boxes = F.pad(image, padding, fill=127), F.pad(boxes, padding)
    crop = (max(0, top), max(0, left), height - top - bottom, width - left - right)
    image, boxes = F.crop(image, *crop), F.crop(boxes, *crop)
    new_h, new_w, padding = _letterbox_layout(*image.shape[-2:], size)
    image, boxes = F.resize(image, [new_h, new_w], antialias=True), F.resize(boxes, [new_h, new_w])
    if float(torch.rand((), generator=generator)) < 0.5:
        image, boxes = F.horizontal_flip(image), F.horizontal_flip(boxes)
        padding = [padding[2], padding[1], padding[0], padding[3]]
    image = F.to_dtype(image, torch.float32, scale=True)
    hsv = (_uniform(-transform.hue, transform.hue, generator), _rand_scale(transform.saturation, generator),
           _rand_scale(transform.exposure, generator))
    fill = float(hsv_jitter(torch.full((3, 1, 1), 127 / 255), *hsv)[0, 0, 0])
    image = F.pad(hsv_jitter(image, *hsv), padding, fill=fill)
    boxes = F.clamp_bounding_boxes(F.pad(boxes, padding)).as_subclass(torch.Tensor)
    wh = boxes[:, 2:] - boxes[:, :2]
    keep = (wh > 0).all(1) & (wh >= transform.min_box_size).all(1)
    return image, {"boxes": boxes[keep], "labels": target["labels"][keep]}


@pytest.mark.parametrize("seed", range(12))
def test_sample_render_match_the_torchvision_pipeline(seed):
    g = torch.Generator().manual_seed(100 + seed)
    height, width = int(torch.randint(20, 90, (), generator=g)), int(torch.randint(20, 90, (), generator=g))
    image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)
    xy = torch.rand(5, 2, generator=g) * torch.tensor([width, height])
    wh = torch.rand(5, 2, generator=g) * torch.tensor([width, height]) / 2
    target = {"labels": torch.arange(5), "boxes": torch.cat([xy, xy + wh], 1)}
    transform = TrainTransform(jitter=0.3, min_box_size=1.0)
    out, new = transform(image, target, 64, torch.Generator().manual_seed(seed))
    ref, ref_target = reference_train_transform(transform, image, target, 64, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(out, ref, atol=1 / 255, rtol=0)
    assert new["labels"].tolist() == ref_target["labels"].tolist()
    torch.testing.assert_close(new["boxes"], ref_target["boxes"], atol=1e-3, rtol=0)


def test_render_batched_equals_one_at_a_time():
    from yolo9000.data.transforms import render

    g = torch.Generator().manual_seed(3)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in ((40, 60), (70, 30))]
    transform = TrainTransform()
    params = [transform.sample(*im.shape[-2:], 48, g) for im in images]
    batched = render(images, params)
    for b, (image, p) in enumerate(zip(images, params)):
        torch.testing.assert_close(batched[b], render([image], [p])[0], atol=1e-6, rtol=0)

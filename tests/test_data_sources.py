"""Sources on small real-format files: COCO json, ImageNet wnid folders and lists, VOC XML, darknet lists, class maps.

The writers at the top are reused by the other data tests (`from test_data_sources import ...`).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from yolo9000.data.coco import CocoSource
from yolo9000.data.darknet_list import DarknetListSource
from yolo9000.data.imagenet import ImageNetSource
from yolo9000.data.images import load_image
from yolo9000.data.labels import ClassMapError, category_labels
from yolo9000.data.voc import VocSource
from yolo9000.errors import DatasetError


# ----------------------------------------------------------------------------------------------- file writers
def write_image(path: Path, height: int = 24, width: int = 32, seed: int = 0, mode: str = "RGB",
                fmt: str | None = None) -> Path:
    """A small noisy image in `mode`, saved by suffix (or `fmt`); returns the path."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    image.save(path, fmt)
    return path


def write_coco(path: Path, images: list[dict], annotations: list[dict], categories: list[tuple[int, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": i, "name": n} for i, n in categories]}))
    return path


def coco_ann(ann_id: int, image_id: int, category: int, bbox: list[float], crowd: int = 0) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": bbox, "iscrowd": crowd,
            "area": bbox[2] * bbox[3]}


CATEGORIES = [(1, "person"), (3, "car"), (7, "dog")]  # ids with gaps, as COCO's


@pytest.fixture
def coco_files(tmp_path: Path) -> tuple[Path, Path]:
    """3 images: a normal box per category, a crowd box, a zero-area box, a zero-height box."""
    images = tmp_path / "images"
    infos = []
    for i in range(3):
        write_image(images / f"{i}.jpg", seed=i)
        infos.append({"id": 10 + i, "file_name": f"{i}.jpg", "height": 24, "width": 32})
    anns = [coco_ann(1, 10, 1, [1, 2, 10, 8]), coco_ann(2, 10, 3, [5, 5, 4, 4]),
            coco_ann(3, 11, 7, [0, 0, 32, 24]), coco_ann(4, 11, 1, [2, 2, 20, 20], crowd=1),
            coco_ann(5, 12, 3, [3, 3, 0, 0]), coco_ann(6, 12, 7, [3, 3, 5, 0])]
    return write_coco(tmp_path / "instances.json", infos, anns, CATEGORIES), images


# ----------------------------------------------------------------------------------------------------- COCO
def test_coco_boxes_xyxy_flat_labels_crowd_and_zero_area_skipped(coco_files):
    annotations, images = coco_files
    source = CocoSource(annotations, images)
    assert source.kind == "detection" and len(source) == 3
    first = source.records[0]
    assert first.file == str(images / "0.jpg") and first.image_id == 10 and first.orig_size == (24, 32)
    torch.testing.assert_close(first.boxes, torch.tensor([[1.0, 2, 11, 10], [5, 5, 9, 9]]))
    assert first.labels.tolist() == [0, 1]  # flat: category-id order person, car, dog
    assert source.records[1].labels.tolist() == [2]  # the crowd box is gone
    assert source.records[2].labels.numel() == 0 and source.records[2].boxes.shape == (0, 4)
    assert source.skipped["crowd box"] == 1
    assert source.skipped["box with non-positive size"] == 2
    assert source.skipped.examples["crowd box"] == [str(images / "1.jpg")]
    kept = CocoSource(annotations, images, include_crowd=True)
    assert kept.records[1].labels.tolist() == [2, 0] and "crowd box" not in kept.skipped


def test_coco_item_is_uint8_rgb_with_target_copy(coco_files):
    annotations, images = coco_files
    source = CocoSource(annotations, images)
    image, target = source[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 24, 32)
    assert torch.equal(image, load_image(images / "0.jpg"))
    assert target["image_id"] == 10 and target["orig_size"] == (24, 32)
    target["boxes"] += 100  # the record must not share storage with what the caller gets
    assert source.records[0].boxes[0, 0] == 1


def test_coco_category_to_node_through_darknet_map(coco_files, tiny_tree, tmp_path):
    annotations, images = coco_files
    mapping = tmp_path / "tiny.map"
    mapping.write_text("2\n9\n6\n")  # person -> a1, car -> b1x_p, dog -> a3x (line k = k-th category by id)
    source = CocoSource(annotations, images, tiny_tree, mapping)
    assert source.records[0].labels.tolist() == [2, 9]
    assert source.records[1].labels.tolist() == [6]


def test_coco_category_to_node_through_wnid_yaml_and_unknown_reported_once(coco_files, tiny_tree, tmp_path, capsys):
    annotations, images = coco_files
    mapping = tmp_path / "map.yaml"
    mapping.write_text(yaml.safe_dump({"person": "a3y", 3: "b1"}))  # by name and by id; dog maps nowhere
    source = CocoSource(annotations, images, tiny_tree, mapping)
    assert source.records[0].labels.tolist() == [tiny_tree.index("a3y"), tiny_tree.index("b1")]
    assert source.records[1].labels.numel() == 0  # the dog box is skipped, never relabelled
    assert source.skipped["box with unknown category"] == 1
    err = capsys.readouterr().err
    assert err.count("skipped 1 boxes") == 1 and "dog (1)" in err


def test_coco_map_to_wnid_absent_from_tree_is_a_clear_error(coco_files, tiny_tree, tmp_path):
    annotations, images = coco_files
    mapping = tmp_path / "map.yaml"
    mapping.write_text(yaml.safe_dump({"person": "n99999999"}))
    with pytest.raises(ClassMapError, match=r"map.yaml entry 'person'.*n99999999"):
        CocoSource(annotations, images, tiny_tree, mapping)


def test_coco_duplicate_ids_counted(tmp_path):
    write_image(tmp_path / "images" / "a.jpg")
    write_image(tmp_path / "images" / "b.jpg")
    infos = [{"id": 1, "file_name": "a.jpg", "height": 24, "width": 32},
             {"id": 1, "file_name": "b.jpg", "height": 24, "width": 32}]
    anns = [coco_ann(5, 1, 1, [1, 1, 4, 4]), coco_ann(5, 1, 1, [2, 2, 4, 4])]
    source = CocoSource(write_coco(tmp_path / "a.json", infos, anns, CATEGORIES), tmp_path / "images")
    assert len(source) == 1
    assert source.skipped["duplicate image id"] == 1 and source.skipped["duplicate annotation id"] == 1


def test_coco_missing_annotations_names_the_file(tmp_path):
    with pytest.raises(DatasetError, match="nope.json"):
        CocoSource(tmp_path / "nope.json", tmp_path)


def test_category_labels_flat_tree_and_map_length(tiny_tree, tmp_path):
    cats = [(1, "a1"), (2, "zzz"), (5, "b1")]
    assert category_labels(cats, None) == {1: 0, 2: 1, 5: 2}
    assert category_labels(cats, tiny_tree) == {1: 2, 5: 5}  # names that are wnids; zzz maps nowhere
    short = tmp_path / "short.map"
    short.write_text("1\n")
    with pytest.raises(ClassMapError, match="1 lines for 3 categories"):
        category_labels(cats, tiny_tree, short)


# ------------------------------------------------------------------------------------------------- ImageNet
def test_imagenet_folders_unknown_wnids_reported_once_and_skipped(tiny_tree, tmp_path, capsys):
    root = tmp_path / "train"
    for wnid, count in (("a1", 2), ("b1x_q", 1), ("n00000001", 3), ("n00000002", 1)):
        for k in range(count):
            write_image(root / wnid / f"{wnid}_{k}.JPEG", seed=k, fmt="JPEG")
    (root / "a1" / "notes.txt").write_text("not an image")
    source = ImageNetSource(root, tree=tiny_tree)
    assert source.kind == "classification" and len(source) == 3
    assert [r.labels.tolist() for r in source.records] == [[2], [2], [10]]
    assert all(r.boxes is None for r in source.records)
    assert source.unknown_wnids == {"n00000001": 3, "n00000002": 1}
    assert source.skipped["image with wnid not in the tree"] == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skipped 4 images with 2 labels" in err and "n00000001 (3)" in err
    image, target = source[2]
    assert image.shape == (3, 24, 32) and target["labels"].tolist() == [10] and "boxes" not in target


def test_imagenet_list_file_relative_paths_duplicates_and_flat(tiny_tree, tmp_path):
    for name in ("x.jpg", "y.jpg"):
        write_image(tmp_path / "img" / name)
    listing = tmp_path / "val.txt"
    listing.write_text("# comment\nimg/x.jpg a3x\n\nimg/y.jpg b1\nimg/x.jpg b1\n")
    source = ImageNetSource(list_file=listing, tree=tiny_tree)
    assert [(Path(r.file).name, r.labels.item()) for r in source.records] == [("x.jpg", 6), ("y.jpg", 5)]
    assert source.skipped["duplicate file"] == 1
    flat = ImageNetSource(list_file=listing)
    assert [r.labels.item() for r in flat.records] == [0, 1]  # sorted wnids a3x, b1
    bad = tmp_path / "bad.txt"
    bad.write_text("onlyonefield\n")
    with pytest.raises(ValueError, match=r"bad.txt line 1"):
        ImageNetSource(list_file=bad)


# ------------------------------------------------------------------------------------------------------ VOC
def write_voc_xml(path: Path, filename: str, objects: list[tuple[str, list[int], int]], size=(24, 32)) -> None:
    objs = "".join(f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
                   f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
                   for n, b, d in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{size[1]}</width>"
                    f"<height>{size[0]}</height><depth>3</depth></size>{objs}</annotation>")


def test_voc_xml_flat_difficult_image_set(tmp_path):
    root = tmp_path / "VOC2007"
    write_voc_xml(root / "Annotations" / "000001.xml", "000001.jpg",
                  [("dog", [2, 3, 10, 12], 0), ("person", [1, 1, 5, 5], 1), ("unicorn", [1, 1, 4, 4], 0)])
    write_voc_xml(root / "Annotations" / "000002.xml", "000002.jpg", [("car", [5, 5, 5, 9], 0)])
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    source = VocSource(root)
    assert len(source) == 2 and source.records[0].file == str(root / "JPEGImages" / "000001.jpg")
    torch.testing.assert_close(source.records[0].boxes, torch.tensor([[1.0, 2, 10, 12], [0, 0, 5, 5]]))
    assert source.records[0].labels.tolist() == [11, 14]  # dog, person in VOC order
    assert source.records[0].orig_size == (24, 32)
    assert source.skipped["box with unknown category"] == 1 and source.skipped["box with non-positive size"] == 0
    assert VocSource(root, include_difficult=False).records[0].labels.tolist() == [11]
    assert len(VocSource(root, image_set="test")) == 1


def test_voc_with_tree_name_map_and_imagenet_det_wnid_names(tiny_tree, tmp_path):
    root = tmp_path / "VOC"
    write_voc_xml(root / "Annotations" / "1.xml", "1.jpg", [("dog", [1, 1, 9, 9], 0), ("cat", [2, 2, 6, 6], 0)])
    source = VocSource(root, tree=tiny_tree, class_map={"dog": "a3x", "cat": "b1x_q"})
    assert source.records[0].labels.tolist() == [6, 10]
    # ImageNet DET: wnids as names, file names without suffix, annotations and images in separate folders.
    det = tmp_path / "DET"
    write_voc_xml(det / "ann" / "ILSVRC2012_val_1.xml", "ILSVRC2012_val_1", [("b1x", [1, 1, 9, 9], 0),
                                                                              ("n01234567", [1, 1, 5, 5], 0)])
    write_image(det / "img" / "ILSVRC2012_val_1.JPEG", fmt="JPEG")
    source = VocSource(None, tree=tiny_tree, annotations=det / "ann", image_dir=det / "img")
    assert source.records[0].file == str(det / "img" / "ILSVRC2012_val_1.JPEG")
    assert source.records[0].labels.tolist() == [8]
    assert source.skipped["box with unknown category"] == 1


def test_voc_malformed_xml_names_the_file(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "bad.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match="bad.xml: not valid VOC XML"):
        VocSource(tmp_path)


# ------------------------------------------------------------------------------------------- darknet lists
def test_darknet_list_detection_and_classification_lines(tiny_tree, tmp_path):
    images = tmp_path / "images"
    write_image(images / "det.jpg", height=20, width=40)
    write_image(images / "cls.jpg")
    write_image(images / "unk.jpg")
    write_image(images / "empty.jpg")
    (images / "det.txt").write_text("0 0.5 0.5 0.5 0.5\n2 0.25 0.25 0.1 0.2\n7 0.5 0.5 0.1 0.1\n1 0.5 0.5 0 0.2\n")
    (images / "cls.txt").write_text("10 0 0 0 0\n")  # darknet: an already-tree index, no box
    (images / "unk.txt").write_text("99 0 0 0 0\n")
    listing = tmp_path / "train.list"
    listing.write_text("images/det.jpg\nimages/cls.jpg\nimages/unk.jpg\nimages/empty.jpg\nimages/det.jpg\n")
    mapping = tmp_path / "tiny.map"
    mapping.write_text("3\n4\n6\n")  # class 0 -> a2, 1 -> a3, 2 -> a3x; class 7 is beyond the map
    det = DarknetListSource(listing, "detection", tiny_tree, mapping)
    assert [Path(r.file).name for r in det.records] == ["det.jpg", "empty.jpg"]
    assert det.records[0].labels.tolist() == [3, 6]
    torch.testing.assert_close(det.records[0].boxes, torch.tensor([[10.0, 5, 30, 15], [8, 3, 12, 7]]))
    assert det.records[0].orig_size == (20, 40)
    assert det.records[1].labels.numel() == 0  # no label file: an image without objects
    assert det.skipped["label outside the tree/class map"] == 1
    assert det.skipped["box with non-positive size"] == 1 and det.skipped["duplicate file"] == 1
    cls = DarknetListSource(listing, "classification", tiny_tree, mapping)
    assert [(Path(r.file).name, r.labels.tolist(), r.boxes) for r in cls.records] == [("cls.jpg", [10], None)]
    assert cls.skipped["label outside the tree/class map"] == 1  # 99 is not a node; never passed through the map


def test_darknet_label_file_format_error_names_line(tmp_path):
    write_image(tmp_path / "a.jpg")
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n0 0.5 0.5\n")
    (tmp_path / "l.list").write_text("a.jpg\n")
    with pytest.raises(ValueError, match=r"a.txt line 2"):
        DarknetListSource(tmp_path / "l.list", "detection")


def test_darknet_list_missing_image_with_labels_is_skipped_and_counted(tmp_path):
    (tmp_path / "gone.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "l.list").write_text("gone.jpg\n")
    source = DarknetListSource(tmp_path / "l.list", "detection")
    assert len(source) == 0 and source.skipped["missing file"] == 1

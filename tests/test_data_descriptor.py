"""Dataset descriptors: every datasets/*.yaml parses; overrides, path resolution and clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from yolo9000.data.descriptor import DescriptorError, build_classification, build_detection, load_descriptor
from yolo9000.reference import darknet_dir

DATASETS = Path(__file__).resolve().parents[1] / "yolo9000" / "datasets"
# datasets/ also holds tree-building overrides (wordtree's); a descriptor is a YAML with `splits`.
DESCRIPTORS = sorted(p for p in DATASETS.glob("*.yaml") if "splits" in (yaml.safe_load(p.read_text()) or {}))


def test_the_expected_descriptors_exist():
    names = {p.stem for p in DESCRIPTORS}
    assert {"coco", "coco9k", "imagenet9k", "combine9k", "voc"} <= names


@pytest.mark.parametrize("path", DESCRIPTORS, ids=lambda p: p.stem)
def test_every_descriptor_parses(path):
    descriptor = load_descriptor(path)
    assert descriptor.splits, f"{path.name} has no splits"
    for name, split in descriptor.splits.items():
        assert split.detection or split.classification, f"{path.name}: split {name} is empty"
        for spec in split.detection + split.classification:
            assert spec.format in ("coco", "imagenet", "voc", "darknet", "pack")
            for key in ("annotations", "images", "list", "path"):
                value = getattr(spec, key)
                assert value is None or Path(value).is_absolute(), f"{path.name}: {key} not resolved"


def test_combine9k_is_the_papers_joint_set():
    d = load_descriptor("combine9k")
    assert d.tree == "9k"
    train = d.split("train")
    assert [s.format for s in train.detection] == ["coco"] and [s.format for s in train.classification] == ["imagenet"]
    # coco9k.map is not under the placeholder root, so it comes from the reference data.
    assert train.detection[0].class_map == darknet_dir() / "coco9k.map"
    assert d.split("eval").detection[0].format == "coco"
    assert d.split("eval_imagenet_det").detection[0].format == "voc"


def test_overrides_root_nested_keys_and_list_entries():
    d = load_descriptor("combine9k", ["root=/mnt/x", "splits.train.classification.images=/elsewhere/train"])
    assert d.root == Path("/mnt/x")
    assert d.split("train").detection[0].images == Path("/mnt/x/coco/train2017")
    assert d.split("train").classification[0].images == Path("/elsewhere/train")
    v = load_descriptor("voc", ["splits.train.detection.1.images=/v12"])
    assert [s.images for s in v.split("train").detection] == [Path("/data/VOCdevkit/VOC2007"), Path("/v12")]
    with pytest.raises(DescriptorError, match="not an index of a 2-entry list"):
        load_descriptor("voc", ["splits.train.detection.5.images=/x"])


def test_relative_paths_env_vars_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_DATA", str(tmp_path / "data"))
    path = tmp_path / "d.yaml"
    path.write_text("splits:\n  train:\n    detection: {format: coco, annotations: a.json, images: '${MY_DATA}/i'}\n")
    d = load_descriptor(path)
    assert d.name == "d" and d.root == tmp_path
    assert d.split("train").detection[0].annotations == tmp_path / "a.json"
    assert d.split("train").detection[0].images == tmp_path / "data" / "i"
    with pytest.raises(DescriptorError, match=r"no split 'eval' \(has train\)"):
        d.split("eval")
    path.write_text("splits:\n  train:\n    detection: {format: coco, annotation: a.json}\n")
    with pytest.raises(DescriptorError, match=r"splits.train.detection\[0\]: unknown key 'annotation'"):
        load_descriptor(path)
    path.write_text("splits:\n  train:\n    detection: {format: tfrecord}\n")
    with pytest.raises(DescriptorError, match="format 'tfrecord' is not one of"):
        load_descriptor(path)
    with pytest.raises(DescriptorError, match="does not exist"):
        load_descriptor(tmp_path / "missing.yaml")
    path.write_text("splits:\n  train:\n    detection: {format: coco, images: ${X}/i}\n")
    with pytest.raises(DescriptorError, match=r"d.yaml line 3: not valid YAML"):
        load_descriptor(path)


def test_build_parts_of_a_split(tmp_path):
    from test_data_sources import coco_ann, write_coco, write_image
    write_image(tmp_path / "im" / "a.jpg")
    write_image(tmp_path / "cls" / "n1" / "b.jpg")
    write_coco(tmp_path / "a.json", [{"id": 1, "file_name": "a.jpg", "height": 24, "width": 32}],
               [coco_ann(1, 1, 1, [1, 1, 5, 5])], [(1, "x")])
    path = tmp_path / "d.yaml"
    path.write_text("splits:\n  train:\n    detection: {format: coco, annotations: a.json, images: im}\n"
                    "    classification: [{format: imagenet, images: cls}, {format: imagenet, images: cls}]\n"
                    "  eval:\n    detection: {format: coco, annotations: a.json, images: im}\n")
    d = load_descriptor(path)
    assert len(build_detection(d, "train", None)) == 1
    assert len(build_classification(d, "train", None)) == 2  # two entries concatenated
    assert build_classification(d, "eval", None) is None

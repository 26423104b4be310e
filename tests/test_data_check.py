"""`yolo9000 data check`: every bad-input kind is reported with counts and file names; odd images load as RGB."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from test_data_sources import coco_ann, write_coco, write_image

from wordtree.io import write_darknet
from yolo9000.cli import main as cli_main
from yolo9000.data.check import check_dataset
from yolo9000.data.descriptor import load_descriptor, load_descriptor_tree
from yolo9000.data.images import decode_image, inspect_image

H, W = 24, 32


def write_odd_images(folder: Path) -> dict[str, Path]:
    """One image per format that must load as RGB; returns {kind: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    paths = {"grayscale": folder / "gray.jpg", "CMYK": folder / "cmyk.jpg", "alpha": folder / "alpha.png",
             "16-bit": folder / "deep.png", "palette": folder / "palette.png", "EXIF": folder / "exif.jpg"}
    rgb.convert("L").save(paths["grayscale"])
    rgb.convert("CMYK").save(paths["CMYK"])
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1))))
    rgba.save(paths["alpha"])
    Image.fromarray((rng.integers(0, 65536, (H, W))).astype(np.uint16)).save(paths["16-bit"])
    rgb.convert("P").save(paths["palette"])
    exif = rgb.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rgb.save(paths["EXIF"], exif=exif.tobytes())
    return paths


def test_odd_images_load_as_rgb(tmp_path):
    paths = write_odd_images(tmp_path)
    for kind, path in paths.items():
        image = decode_image(path.read_bytes(), str(path))
        assert image.dtype == torch.uint8 and image.shape[0] == 3, kind
    exif = decode_image(paths["EXIF"].read_bytes())
    assert exif.shape == (3, W, H)  # turned upright
    upright = np.array(ImageOps.exif_transpose(Image.open(paths["EXIF"])).convert("RGB"))
    assert torch.equal(exif, torch.from_numpy(upright).permute(2, 0, 1))
    deep = decode_image(paths["16-bit"].read_bytes())
    raw = np.asarray(Image.open(paths["16-bit"]), dtype=np.float64)
    assert abs(float(deep[0].double().mean()) - raw.mean() / 257) < 1  # scaled to 8 bits, not clipped
    alpha = decode_image(paths["alpha"].read_bytes())
    assert abs(int(alpha[:, 0, 0].float().mean()) - 127) <= 1  # fully transparent: the gray letterbox fill
    for kind, path in paths.items():
        info = inspect_image(path.read_bytes())
        expected = {"EXIF": ()}.get(kind, (kind,))
        assert set(expected) <= set(info.conversions), (kind, info.conversions)
        assert info.exif_rotated == (kind == "EXIF")


@pytest.fixture
def bad_dataset(tmp_path: Path, tiny_tree) -> Path:
    """A dataset holding every problem kind once (or a known number of times)."""
    write_darknet(tiny_tree, tmp_path / "tiny")
    (tmp_path / "map.yaml").write_text("p: a1\n")  # category q maps nowhere: unknown
    det = tmp_path / "det"
    odd = write_odd_images(det)
    write_image(det / "ok.jpg")
    write_image(det / "small.jpg", height=10, width=10)  # annotated 24x32 below: sizes disagree
    (det / "garbage.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    good = (det / "ok.jpg").read_bytes()
    (det / "cut.jpg").write_bytes(good[:len(good) // 2])
    names = ["ok.jpg", "small.jpg", "garbage.jpg", "cut.jpg", "gone.jpg"] + [p.name for p in odd.values()]
    infos = [{"id": i + 1, "file_name": n, "height": H, "width": W} for i, n in enumerate(names)]
    infos.append({"id": 1, "file_name": "ok.jpg", "height": H, "width": W})  # duplicate image id
    infos[-2]["height"], infos[-2]["width"] = W, H  # the EXIF image is annotated upright: consistent
    anns = [coco_ann(1, 1, 1, [1, 1, 5, 5]),
            coco_ann(2, 1, 1, [20, 10, 30, 10]),      # x2 = 50 > 32 wide: outside the image
            coco_ann(3, 1, 1, [2, 2, 0, 4]),          # non-positive size
            coco_ann(4, 1, 2, [2, 2, 4, 4]),          # unknown category
            coco_ann(5, 1, 1, [2, 2, 4, 4], crowd=1)]  # crowd: informational
    write_coco(tmp_path / "det.json", infos, anns, [(1, "p"), (2, "q")])
    for wnid, count in (("a3x", 2), ("n00000042", 3)):
        for k in range(count):
            write_image(tmp_path / "cls" / wnid / f"{wnid}_{k}.jpg", seed=k)
    write_image(tmp_path / "eval" / "e.jpg")
    path = tmp_path / "bad.yaml"
    path.write_text("tree: tiny.tree\nsplits:\n  train:\n"
                    "    detection: {format: coco, annotations: det.json, images: det, class_map: map.yaml}\n"
                    "    classification: {format: imagenet, images: cls}\n"
                    "  eval:\n    detection: [{format: coco, annotations: det.json, images: det, class_map: map.yaml},"
                    " {format: coco, annotations: nothere.json, images: eval}]\n")
    return path


EXPECTED_ERRORS = {"missing file": 2, "unreadable image": 2, "truncated image": 2, "box outside the image": 2,
                   "box with non-positive size": 2, "box with unknown category": 2, "duplicate image id": 2,
                   "image with wnid not in the tree": 3, "training image also in another split": 11,
                   "image size differs from annotation": 2, "source cannot be read": 1}


def test_every_problem_kind_is_reported(bad_dataset):
    descriptor = load_descriptor(bad_dataset)
    report = check_dataset(descriptor, load_descriptor_tree(descriptor), progress=False)
    problems = report.problems
    for kind, count in EXPECTED_ERRORS.items():
        assert problems[kind] == count, (kind, problems[kind])
    for kind in ("grayscale", "CMYK", "alpha", "16-bit", "palette"):
        assert problems[f"converted: {kind}"] >= 2, kind  # train and eval both hold the odd images
    assert problems["EXIF rotation"] == 2 and problems["crowd box"] == 2
    assert set(report.error_kinds) == set(EXPECTED_ERRORS) and report.exit_code == 1
    # The first few file names of each kind.
    assert any(e.endswith("gone.jpg") for e in problems.examples["missing file"])
    assert any(e.endswith("cut.jpg") for e in problems.examples["truncated image"])
    assert any(e.endswith("garbage.jpg") for e in problems.examples["unreadable image"])
    assert any("n00000042" in e for e in problems.examples["image with wnid not in the tree"])
    assert any("nothere.json" in e for e in problems.examples["source cannot be read"])
    assert report.images == {"train/detection": 11, "train/classification": 2, "eval/detection": 11}
    text = report.format()
    assert "error  missing file: 2" in text and "info   EXIF rotation: 2" in text and "problem kinds to fix" in text


def test_image_size_that_disagrees_with_the_annotation(tmp_path):
    write_image(tmp_path / "im" / "a.jpg", height=H, width=W)
    write_coco(tmp_path / "a.json", [{"id": 1, "file_name": "a.jpg", "height": W, "width": H}], [], [(1, "x")])
    path = tmp_path / "d.yaml"
    path.write_text("splits:\n  train:\n    detection: {format: coco, annotations: a.json, images: im}\n")
    report = check_dataset(load_descriptor(path), None, progress=False)
    assert report.problems["image size differs from annotation"] == 1 and report.exit_code == 1
    assert "annotation 32x24, image 24x32" in report.problems.examples["image size differs from annotation"][0]


def test_only_informational_kinds_exit_zero(tmp_path):
    odd = write_odd_images(tmp_path / "cls" / "n1")
    path = tmp_path / "d.yaml"
    path.write_text("splits:\n  train:\n    classification: {format: imagenet, images: cls}\n")
    report = check_dataset(load_descriptor(path), None, progress=False)
    assert report.exit_code == 0 and not report.error_kinds
    assert report.problems["converted: CMYK"] == 1 and report.problems["EXIF rotation"] == 1
    assert report.images == {"train/classification": len(odd)}
    assert report.format().endswith("informational kinds)")


def test_cli_check_exit_codes_json_and_workers(bad_dataset, tmp_path, capsys):
    out = tmp_path / "report.json"
    status = cli_main(["data", "check", str(bad_dataset), "--split", "train", "--workers", "2", "--json", str(out),
                       "--no-progress"])
    assert status == 1
    printed = capsys.readouterr().out
    assert "truncated image: 1" in printed and "train/detection: 11 images" in printed
    data = json.loads(out.read_text())
    assert data["exit_code"] == 1 and data["problems"]["missing file"]["count"] == 1
    assert data["problems"]["EXIF rotation"]["error"] is False
    assert cli_main(["data", "check", str(bad_dataset), "--split", "test"]) == 2
    assert "no split 'test'" in capsys.readouterr().err
    assert cli_main(["data", "check", str(bad_dataset), "--set", "tree=nope.tree"]) == 2
    assert "nope.tree does not exist" in capsys.readouterr().err

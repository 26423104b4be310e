"""Bad inputs as a user makes them (issue 14): each is generated here, run through the command line in-process, and
must give its exit code and one line naming the culprit (file, and line, annotation id, key or layer), never a
traceback. Exit codes: 2 bad input; `data check` 1 when it found errors (the report line names them); `detect` 1
when an input was skipped.
"""
from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from engine_data import REPO, write_config, write_dataset
from PIL import Image

from yolo9000.cli import main

TINY = str(REPO / "yolo9000" / "configs" / "tiny.yaml")


# ------------------------------------------------------------------------------------------------------ helpers
def run(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit:      # argparse's usage errors (values checked where they are parsed)
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_line(text: str, *needles: str) -> str:
    """The one line of `text` holding every needle; no traceback anywhere."""
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if all(n in line for n in needles)]
    assert lines, f"no line names {needles}:\n{text}"
    return lines[0]


def fails_with(args: list[str], capsys, *needles: str, code: int = 2) -> str:
    status, out, err = run(args, capsys)
    assert status == code, f"exit {status}, expected {code}\nstdout:\n{out}\nstderr:\n{err}"
    line = error_line(err, *needles)
    assert line.startswith("yolo9000 "), line
    return line


@pytest.fixture
def dataset(tmp_path) -> Path:
    """A tiny COCO + wnid-folder dataset, its descriptor and tree (tests/engine_data.py)."""
    return write_dataset(tmp_path, det_images=3, cls_per_class=1, eval_images=2)


def only_train(descriptor: Path) -> Path:
    """A descriptor with the train split only, so `data check` looks at the file under test."""
    text = descriptor.read_text().split("  eval:")[0]
    out = descriptor.with_name("train_only.yaml")
    out.write_text(text)
    return out


def jpeg_declaring(width: int, height: int) -> bytes:
    """A few-hundred-byte JPEG whose frame header declares `width` x `height` (a decompression bomb)."""
    buffer = BytesIO()
    Image.new("RGB", (8, 8), (90, 90, 90)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


# --------------------------------------------------------------------------------------------------- COCO json
def _edit(change: Callable[[dict], object]) -> Callable[[dict], str]:
    """The file text after `change` edited the parsed json in place."""
    def apply(data: dict) -> str:
        change(data)
        return json.dumps(data)
    return apply


def _set_ann(key, value):
    return _edit(lambda d: d["annotations"][0].__setitem__(key, value))


def _del_ann(key):
    return _edit(lambda d: d["annotations"][0].pop(key))


COCO_CASES = {
    "top-level list": (lambda d: json.dumps([d]), ["expected a JSON object", "got a list"]),
    "bbox of strings": (_set_ann("bbox", ["1", "2", "3", "4"]), ["annotation 1", "'bbox'"]),
    "category id string": (_set_ann("category_id", "1"), ["annotation 1", "'category_id'", "not an integer"]),
    "no bbox": (_del_ann("bbox"), ["annotation 1 has no 'bbox'"]),
    "no image_id": (_del_ann("image_id"), ["annotation 1 has no 'image_id'"]),
    "no category_id": (_del_ann("category_id"), ["annotation 1 has no 'category_id'"]),
    "no file_name": (_edit(lambda d: d["images"][0].pop("file_name")), ["image 100 has no 'file_name'"]),
    "bbox of 3 numbers": (_set_ann("bbox", [1, 2, 3]), ["annotation 1", "4 numbers"]),
    "height 338px": (_edit(lambda d: d["images"][0].__setitem__("height", "338px")),
                     ["image 100", "'height'", "338px"]),
    "not JSON": (lambda d: '{"images": [1, 2', ["line 1", "not valid JSON"]),
    "empty file": (lambda d: "", ["empty file"]),
    "empty object": (lambda d: "{}", ["no 'images' list"]),
    "no images": (_edit(lambda d: d.pop("images")), ["no 'images' list"]),
    "no annotations": (_edit(lambda d: d.pop("annotations")), ["no 'annotations' list"]),
    "zero images": (_edit(lambda d: d.__setitem__("images", [])), ["'images' is empty"]),
    "nested 100000 deep": (lambda d: "[" * 100000 + "]" * 100000, ["nested too deeply"]),
    "images of strings": (_edit(lambda d: d.__setitem__("images", ["000.jpg"])), ["images[0] is a str"]),
    "NaN in a bbox": (_set_ann("bbox", [1.0, math.nan, 4.0, 4.0]), ["annotation 1", "non-finite"]),
    "absolute file_name": (_edit(lambda d: d["images"][0].__setitem__("file_name", "/etc/hostname")),
                           ["image 100", "/etc/hostname", "allow_outside_root"]),
    "file_name with ..": (_edit(lambda d: d["images"][0].__setitem__("file_name", "../../cls/a2/0.jpg")),
                          ["image 100", "../../cls/a2/0.jpg"]),
}


@pytest.mark.parametrize("case", sorted(COCO_CASES))
def test_bad_coco_json(case, dataset, tmp_path, capsys):
    edit, needles = COCO_CASES[case]
    annotations = tmp_path / "det" / "annotations.json"
    annotations.write_text(edit(json.loads(annotations.read_text())))
    line = fails_with(["data", "pack", dataset, "--split", "train", "--out", tmp_path / "p.h5", "--no-progress"],
                      capsys, str(annotations), *needles)
    assert line.startswith("yolo9000 data pack:")
    assert not (tmp_path / "p.h5").exists()
    status, out, err = run(["data", "check", only_train(dataset), "--workers", "0", "--no-progress"], capsys)
    assert status == 1 and "Traceback" not in err
    assert "source cannot be read" in error_line(out, str(annotations), *needles)
    config = write_config(tmp_path, ["train.max_steps=1"])
    fails_with(["train", "--config", config, "--out", tmp_path / "run"], capsys, str(annotations), *needles)


def test_coco_not_utf8_names_the_file(dataset, tmp_path, capsys):
    annotations = tmp_path / "det" / "annotations.json"
    annotations.write_bytes(b"\xff\xfe\x00{" + bytes(range(128, 256)))
    fails_with(["data", "pack", dataset, "--split", "train", "--out", tmp_path / "p.h5", "--no-progress"], capsys,
               str(annotations), "not UTF-8")


def test_coco_annotation_for_a_missing_image_is_reported(dataset, tmp_path, capsys):
    annotations = tmp_path / "det" / "annotations.json"
    data = json.loads(annotations.read_text())
    data["annotations"][0]["image_id"] = 999
    annotations.write_text(json.dumps(data))
    status, out, err = run(["data", "check", only_train(dataset), "--workers", "0", "--no-progress"], capsys)
    assert status == 1
    error_line(out, "annotation for a missing image: 1", "annotation 1, image_id 999")
    # Training and packing say so too, once, instead of dropping the box without a word.
    status, _, err = run(["data", "pack", dataset, "--split", "train", "--out", tmp_path / "p.h5", "--no-progress"],
                         capsys)
    assert status == 0
    error_line(err, str(annotations), "left out 1 x annotation for a missing image", "image_id 999")


def test_allow_outside_root_lets_a_descriptor_use_absolute_paths(dataset, tmp_path, capsys):
    annotations = tmp_path / "det" / "annotations.json"
    data = json.loads(annotations.read_text())
    data["images"][0]["file_name"] = str(tmp_path / "det" / "images" / data["images"][0]["file_name"])
    annotations.write_text(json.dumps(data))
    allowed = dataset.with_name("allowed.yaml")
    allowed.write_text(only_train(dataset).read_text().replace("images: det/images}",
                                                               "images: det/images, allow_outside_root: true}"))
    status, out, err = run(["data", "check", allowed, "--workers", "0", "--no-progress"], capsys)
    assert status == 0, out + err


# ----------------------------------------------------------------------------------------------------- VOC XML
def _voc(root: Path, filename: str = "x.jpg", size: tuple[str, str] = ("48", "64"),
         box: dict[str, str] | None = None) -> Path:
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(exist_ok=True)
    Image.new("RGB", (64, 48), (10, 120, 30)).save(root / "JPEGImages" / "x.jpg")
    box = box if box is not None else {"xmin": "3", "ymin": "4", "xmax": "30", "ymax": "40"}
    fields = "".join(f"<{k}>{v}</{k}>" for k, v in box.items())
    xml = root / "Annotations" / "x.xml"
    xml.write_text(f"<annotation><filename>{filename}</filename><size><width>{size[1]}</width>"
                   f"<height>{size[0]}</height><depth>3</depth></size><object><name>dog</name>"
                   f"<difficult>0</difficult><bndbox>{fields}</bndbox></object></annotation>")
    descriptor = root / "voc.yaml"
    descriptor.write_text("splits:\n  train:\n    detection: {format: voc, images: .}\n")
    return descriptor


VOC_CASES = {
    "no xmax": ({"box": {"xmin": "3", "ymin": "4", "ymax": "40"}}, ["object 1", "no <xmax>"]),
    "xmin abc191.0": ({"box": {"xmin": "abc191.0", "ymin": "4", "xmax": "30", "ymax": "40"}},
                      ["<xmin> 'abc191.0' is not a number"]),
    "width abc": ({"size": ("48", "abc")}, ["<size>", "<width> 'abc' is not a number"]),
    "nan xmax": ({"box": {"xmin": "3", "ymin": "4", "xmax": "nan", "ymax": "40"}}, ["<xmax>", "not a finite"]),
    "filename with ../": ({"filename": "../x.jpg"}, ["<filename>", "'../x.jpg'", "leaves the dataset folder"]),
    "absolute filename": ({"filename": "/etc/hostname"}, ["<filename>", "/etc/hostname"]),
}


@pytest.mark.parametrize("case", sorted(VOC_CASES))
def test_bad_voc_xml(case, tmp_path, capsys):
    kwargs, needles = VOC_CASES[case]
    descriptor = _voc(tmp_path / "voc", **kwargs)
    xml = tmp_path / "voc" / "Annotations" / "x.xml"
    fails_with(["data", "pack", descriptor, "--split", "train", "--out", tmp_path / "p.h5", "--no-progress"],
               capsys, str(xml), *needles)
    status, out, _ = run(["data", "check", descriptor, "--workers", "0", "--no-progress"], capsys)
    assert status == 1
    error_line(out, "source cannot be read", str(xml), *needles)


def test_good_voc_packs(tmp_path, capsys):
    descriptor = _voc(tmp_path / "voc")
    status, _, err = run(["data", "pack", descriptor, "--split", "train", "--out", tmp_path / "p.h5",
                          "--no-progress"], capsys)
    assert status == 0, err


def test_empty_sources_are_errors_not_zero_images(tmp_path, capsys):
    (tmp_path / "voc" / "Annotations").mkdir(parents=True)
    (tmp_path / "cls").mkdir()
    descriptor = tmp_path / "empty.yaml"
    descriptor.write_text("splits:\n  train:\n    detection: {format: voc, images: voc}\n"
                          "    classification: {format: imagenet, images: cls}\n")
    fails_with(["data", "pack", descriptor, "--split", "train", "--out", tmp_path / "p.h5", "--no-progress"],
               capsys, str(descriptor), "splits.train.detection[0]", "holds no images")
    status, out, _ = run(["data", "check", descriptor, "--workers", "0", "--no-progress"], capsys)
    assert status == 1
    error_line(out, "source holds no images: 2", "splits.train.detection[0]")


# ---------------------------------------------------------------------------------------------- ImageNet, lists
def test_image_directly_in_an_imagenet_root_is_reported(dataset, tmp_path, capsys):
    stray = tmp_path / "cls" / "stray.jpg"
    Image.new("RGB", (16, 16)).save(stray)
    status, out, _ = run(["data", "check", only_train(dataset), "--workers", "0", "--no-progress"], capsys)
    assert status == 1
    error_line(out, "image outside any wnid folder: 1", str(stray))


def test_imagenet_list_path_outside_its_folder_refused(dataset, tmp_path, capsys):
    listing = tmp_path / "cls.txt"
    listing.write_text("cls/a2/0.jpg a2\n/etc/hostname a2\n")
    descriptor = tmp_path / "list.yaml"
    descriptor.write_text(f"tree: tree.json\nsplits:\n  train:\n    classification: {{format: imagenet, list: "
                          f"{listing.name}}}\n")
    fails_with(["data", "pack", descriptor, "--split", "train", "--out", tmp_path / "p.h5", "--no-progress"],
               capsys, f"{listing} line 2", "/etc/hostname")


# -------------------------------------------------------------------------------------------- decoded pixels
def test_header_declaring_20000x20000_is_refused_before_decoding(dataset, tmp_path, capsys):
    from yolo9000.data.images import ImageLoadError, decode_image, header_size
    bomb = jpeg_declaring(20000, 20000)
    assert header_size(bomb) == (20000, 20000) and len(bomb) < 2000
    with pytest.raises(ImageLoadError, match="too large") as caught:
        decode_image(bomb, "bomb.jpg")
    assert caught.value.reason == "too_large"
    png = BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    big_png = bytearray(png.getvalue())
    struct.pack_into(">II", big_png, 16, 30000, 30000)
    with pytest.raises(ImageLoadError, match="30000x30000"):
        decode_image(bytes(big_png), "bomb.png")

    # data check: counted under its own kind, naming the file.
    target = tmp_path / "det" / "images" / "000.jpg"
    target.write_bytes(bomb)
    status, out, _ = run(["data", "check", only_train(dataset), "--workers", "0", "--no-progress"], capsys)
    assert status == 1
    error_line(out, "image too large: 1", str(target))

    # detect: the image is skipped and named, the others processed.
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(good)
    status, out, err = run(["detect", "--config", TINY, "--set", f"model.tree={tmp_path / 'tree.json'}", good, target,
                            "--out", tmp_path / "detect", "--device", "cpu", "--size", "64"], capsys)
    assert status == 1 and "Traceback" not in err       # something was skipped: a script can tell
    error_line(err, "skipped", str(target), "too large")
    assert "1 skipped" in out
    assert not (tmp_path / "detect" / "000.png").exists()

    # training: the sample is skipped and counted by its kind, the run goes on.
    config = write_config(tmp_path, ["train.max_steps=1", "data.det_per_batch=3", "data.cls_per_batch=0"])
    status, _, err = run(["train", "--config", config, "--out", tmp_path / "run"], capsys)
    assert status == 0, err
    error_line(err, "data: skipped", str(target), "image too large")


def test_pixel_limit_from_the_environment(monkeypatch):
    from yolo9000.data.images import ImageLoadError, decode_image
    buffer = BytesIO()
    Image.new("RGB", (40, 30)).save(buffer, "PNG")
    assert decode_image(buffer.getvalue()).shape == (3, 30, 40)
    monkeypatch.setenv("YOLO9000_MAX_PIXELS", "1000")
    with pytest.raises(ImageLoadError, match="1,200 pixels; the limit is 1,000"):
        decode_image(buffer.getvalue(), "small.png")


# ------------------------------------------------------------------------------------------------------ packs
def _pack(dataset: Path, tmp_path: Path, capsys) -> tuple[Path, Path]:
    out = tmp_path / "train.h5"
    status, _, err = run(["data", "pack", dataset, "--split", "train", "--out", out, "--no-progress"], capsys)
    assert status == 0, err
    descriptor = tmp_path / "packed.yaml"
    descriptor.write_text(f"tree: tree.json\nsplits:\n  train:\n    detection: {{format: pack, path: {out}}}\n"
                          f"    classification: {{format: pack, path: {out}}}\n")
    return out, descriptor


def _corrupt_offsets(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        offsets = f["detection/byte_offsets"]
        values = offsets[:]
        values[1] = values[2] + 100       # goes back between image 1 and 2
        offsets[...] = values


def _offset_2_40(path: Path) -> None:
    with h5py.File(path, "r+") as f:
        offsets = f["detection/byte_offsets"]
        values = offsets[:]
        values[-1] = 2 ** 40
        offsets[...] = values


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 300)


def _not_hdf5(path: Path) -> None:
    path.write_bytes(b"garbage, not HDF5" * 10)


PACK_CASES = {
    "corrupted offsets": (_corrupt_offsets, ["damaged pack", "detection/byte_offsets"]),
    "offset 2^40": (_offset_2_40, ["damaged pack", "detection/byte_offsets"]),
    "truncated file": (_truncate, ["not a readable HDF5 pack", "truncated"]),
    "not HDF5": (_not_hdf5, ["not a readable HDF5 pack"]),
}


@pytest.mark.parametrize("case", sorted(PACK_CASES))
def test_bad_pack_refused_when_opened(case, dataset, tmp_path, capsys):
    damage, needles = PACK_CASES[case]
    pack, descriptor = _pack(dataset, tmp_path, capsys)
    damage(pack)
    config = write_config(tmp_path, ["train.max_steps=1", f"data.dataset={descriptor}"])
    fails_with(["train", "--config", config, "--out", tmp_path / "run"], capsys, str(pack), *needles)
    status, out, _ = run(["data", "check", descriptor, "--workers", "0", "--no-progress"], capsys)
    assert status == 1
    error_line(out, "source cannot be read", str(pack), *needles)


# ---------------------------------------------------------------------------------------------- cfg and trees
def test_cfg_not_utf8_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "bad.cfg"
    cfg.write_bytes(b"[net]\nwidth=416\n\xff\xfe\xfa height=416\n")
    fails_with(["info", "--cfg", cfg], capsys, str(cfg), "not UTF-8")
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    fails_with(["detect", "--cfg", cfg, image, "--out", tmp_path / "out"], capsys, str(cfg), "not UTF-8")


def test_tree_not_utf8_or_empty_names_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.tree"
    bad.write_bytes(b"n00001 -1\n\xe9t\xe9 0\n")
    fails_with(["tree", "stats", bad], capsys, str(bad), "not UTF-8")
    empty = tmp_path / "empty.tree"
    empty.write_text("")
    fails_with(["tree", "stats", empty], capsys, str(empty), "empty tree")
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    fails_with(["detect", "--config", TINY, "--set", f"model.tree={empty}", image, "--out", tmp_path / "out"],
               capsys, str(empty), "empty tree")


def test_tree_bom_is_stripped(tmp_path):
    from wordtree.io import load
    path = tmp_path / "bom.tree"
    path.write_bytes("\ufeffa -1\nb 0\n".encode())
    assert load(path).wnids == ("a", "b")


# ------------------------------------------------------------------------------------------------- checkpoints
def _tiny_state(tmp_path: Path, fill: float | None = None) -> dict:
    from yolo9000.config import load_config
    from yolo9000.builder import build_model
    model = build_model(load_config(TINY, [f"model.tree={tmp_path / 'tree.json'}"]).model)
    state = model.state_dict()
    if fill is not None:
        state = {k: v.clone().fill_(fill) if v.is_floating_point() else v for k, v in state.items()}
    return state


CHECKPOINT_CASES = {
    "zero bytes": (lambda path, tmp: path.write_bytes(b""), ["is empty (0 bytes)"]),
    "random bytes": (lambda path, tmp: path.write_bytes(np.random.default_rng(0).bytes(4096)),
                     ["is not a PyTorch checkpoint"]),
    "5-byte text": (lambda path, tmp: path.write_text("hello"), ["is not a PyTorch checkpoint", "5 bytes"]),
    "truncated zip": (lambda path, tmp: (torch.save({"model": _tiny_state(tmp)}, path),
                                         path.write_bytes(path.read_bytes()[:2000])), ["corrupt"]),
    "all NaN": (lambda path, tmp: torch.save({"model": _tiny_state(tmp, math.nan)}, path),
                ["non-finite values"]),
    "pickled object": (lambda path, tmp: torch.save({"model": {}, "x": Path("/")}, path),
                       ["other than tensors", "refused"]),
    "pickle garbage": (lambda path, tmp: path.write_bytes(b"\x80\x02" + np.random.default_rng(1).bytes(64)),
                       ["corrupt or not a checkpoint"]),
    "zip of something else": (lambda path, tmp: _plain_zip(path), ["corrupt"]),
}


def _plain_zip(path: Path) -> None:
    import zipfile
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")


@pytest.mark.parametrize("case", sorted(CHECKPOINT_CASES))
def test_bad_checkpoint(case, dataset, tmp_path, capsys):
    write, needles = CHECKPOINT_CASES[case]
    weights = tmp_path / "weights.pt"
    write(weights, tmp_path)
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    line = fails_with(["detect", "--config", TINY, "--set", f"model.tree={tmp_path / 'tree.json'}",
                       "--weights", weights, image, "--out", tmp_path / "out"], capsys, str(weights), *needles)
    assert "weights_only=False" not in line


def test_all_nan_darknet_weights_named(dataset, tmp_path, capsys):
    from yolo9000.config import load_config
    from yolo9000.darknet import save_darknet_weights
    from yolo9000.builder import build_model
    model = build_model(load_config(TINY, [f"model.tree={tmp_path / 'tree.json'}"]).model)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(math.nan)
    weights = save_darknet_weights(model, tmp_path / "nan.weights")
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    fails_with(["detect", "--config", TINY, "--set", f"model.tree={tmp_path / 'tree.json'}", "--weights", weights,
                image, "--out", tmp_path / "out"], capsys, str(weights), "non-finite")


def test_a_nan_state_is_never_saved_over_the_last_good_one(tmp_path):
    from yolo9000.checkpoint import NonFiniteStateError, load_checkpoint, save_checkpoint
    path = tmp_path / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(3)}, "step": 4}, path)
    with pytest.raises(NonFiniteStateError, match="tensor w holds 1 non-finite"):
        save_checkpoint({"model": {"w": torch.tensor([1.0, math.inf, 2.0])}, "step": 5}, path)
    assert load_checkpoint(path)["step"] == 4


def test_resume_from_a_nan_checkpoint_is_refused(dataset, tmp_path, capsys):
    config = write_config(tmp_path, ["train.max_steps=1"])
    run_dir = tmp_path / "run"
    status, _, err = run(["train", "--config", config, "--out", run_dir], capsys)
    assert status == 0, err
    state = torch.load(run_dir / "last.pt", weights_only=True)
    state["model"] = {k: v.fill_(math.nan) if v.is_floating_point() else v for k, v in state["model"].items()}
    torch.save(state, run_dir / "last.pt")
    fails_with(["train", "--resume", run_dir, "--set", "train.max_steps=2"], capsys, str(run_dir / "last.pt"),
               "non-finite")
    assert (run_dir / "last.pt").exists()   # the run folder is left as it was


# ------------------------------------------------------------------------------------------------------ devices
def test_device_that_does_not_exist(dataset, tmp_path, capsys):
    # Without a GPU `cuda` does not exist; with one, an index past the last GPU does not.
    missing = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    fails_with(["detect", "--config", TINY, "--set", f"model.tree={tmp_path / 'tree.json'}", "--device", missing,
                image, "--out", tmp_path / "out"], capsys, "argument --device", f"--device={missing}")
    fails_with(["detect", "--config", TINY, "--set", f"model.tree={tmp_path / 'tree.json'}", "--device", "gpu0",
                image, "--out", tmp_path / "out"], capsys, "--device='gpu0' is not a device")
    from yolo9000.api import Detector
    from yolo9000.config import ConfigError
    with pytest.raises(ConfigError, match=f"--device={missing}"):
        Detector.from_config(TINY, device=missing, overrides=[f"model.tree={tmp_path / 'tree.json'}"])
    config = write_config(tmp_path, ["train.max_steps=1", f"train.device={missing}"])
    fails_with(["train", "--config", config, "--out", tmp_path / "run"], capsys, f"train.device={missing}")


def test_anchors_leave_out_an_image_whose_size_cannot_be_read(dataset, tmp_path, capsys):
    annotations = tmp_path / "det" / "annotations.json"
    data = json.loads(annotations.read_text())
    for info in data["images"]:
        del info["height"], info["width"]          # sizes come from the image headers
    annotations.write_text(json.dumps(data))
    broken = tmp_path / "det" / "images" / "001.jpg"
    broken.write_bytes(b"not an image at all")
    status, out, err = run(["anchors", "--data", only_train(dataset), "--k", "2"], capsys)
    assert status == 0, err
    error_line(err, "left out the boxes of 1 images", str(broken))


# --------------------------------------------------------------------------------------------------- model YAML
MODEL_YAML_CASES = {
    "bad syntax": (b"model:\n  kind: yolov2\n  width: [1\n", ["line 4", "not valid YAML"]),
    "python tag": (b'model: !!python/object/apply:os.system ["touch PWNED"]\n',
                   ["line 1", "!!python/object/apply:os.system", "not allowed"]),
    "binary file": (bytes(range(256)) * 4, ["not UTF-8"]),
    "NUL bytes": (b"model:\n  kind: yolov2\x00\x00\n", ["binary file"]),
}


@pytest.mark.parametrize("case", sorted(MODEL_YAML_CASES))
def test_bad_model_yaml(case, dataset, tmp_path, capsys, monkeypatch):
    content, needles = MODEL_YAML_CASES[case]
    config = tmp_path / "model.yaml"
    config.write_bytes(content)
    monkeypatch.chdir(tmp_path)
    fails_with(["info", "--config", config], capsys, str(config), *needles)
    fails_with(["train", "--config", config, "--out", tmp_path / "run"], capsys, str(config), *needles)
    assert not (tmp_path / "PWNED").exists()


def test_bad_set_values(tmp_path, capsys):
    fails_with(["info", "--config", TINY, "--set", "model.anchors=[[1,2]"], capsys,
               "--set model.anchors=[[1,2]", "not valid YAML")
    fails_with(["info", "--config", TINY, "--set", "model.anchors"], capsys, "--set 'model.anchors'",
               "expected key=value")


def test_stride_is_blamed_not_a_size_never_passed(tmp_path, capsys):
    config = tmp_path / "stride.yaml"
    config.write_text(f"base: {TINY}\nmodel:\n  stride: 7\n")
    line = fails_with(["info", "--config", config], capsys, "model.stride", "7")
    assert "--size" not in line
    fails_with(["info", "--config", TINY, "--size", "100"], capsys, "--size 100", "multiple of 32")


def test_eval_exits_1_naming_an_image_it_skipped(dataset, tmp_path, capsys):
    config = write_config(tmp_path, ["train.max_steps=1"])
    status, _, err = run(["train", "--config", config, "--out", tmp_path / "run"], capsys)
    assert status == 0, err
    status, out, err = run(["eval", "--run", tmp_path / "run", "--split", "eval"], capsys)
    assert status == 0, err
    gone = tmp_path / "eval" / "images" / "001.jpg"
    gone.unlink()
    status, out, err = run(["eval", "--run", tmp_path / "run", "--split", "eval"], capsys)
    assert status == 1
    line = error_line(err, "skipped 1 images", str(gone), "missing file")
    assert line.startswith("yolo9000 eval:")
    assert "mAP" in out                                   # the metrics of the other images are still printed


# -------------------------------------------------------------------------------------------- command-line values
@pytest.mark.parametrize("flag,value,needle", [("--conf", "-1", "not in [0, 1]"), ("--conf", "nan", "not in [0, 1]"),
                                               ("--conf", "high", "expected a number"),
                                               ("--nms", "1.5", "not in [0, 1]"),
                                               ("--size", "100", "multiple of 16"), ("--size", "0", "multiple of 16"),
                                               ("--batch", "0", ">= 1")])
def test_values_checked_where_parsed(flag, value, needle, tmp_path, capsys):
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    fails_with(["detect", "--config", TINY, flag, value, image, "--out", tmp_path / "out"], capsys, flag, needle)
    assert not (tmp_path / "out").exists()       # refused before any model was built or file written


def test_finite_weights_with_non_finite_outputs_skip_and_name_the_image(dataset, tmp_path, capsys):
    state = _tiny_state(tmp_path)
    # Finite weights whose products overflow: large activations into a prediction layer of 3e38s.
    state = {k: v.fill_(100.0) if k.endswith("bn.bias") else v for k, v in state.items()}
    state["pred.weight"] = torch.full_like(state["pred.weight"], 3e38)
    weights = tmp_path / "overflow.pt"
    torch.save({"model": state}, weights)
    image = tmp_path / "a.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(image)
    status, out, err = run(["detect", "--config", TINY, "--set", f"model.tree={tmp_path / 'tree.json'}",
                            "--weights", weights, image, "--out", tmp_path / "out"], capsys)
    assert status == 1 and "Traceback" not in err
    error_line(err, "skipped", str(image), "NaN or infinity")
    assert "0 images, 0 detections, 1 skipped" in out

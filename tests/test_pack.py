"""HDF5 packs: round trip equals the source, loaders read packs (workers too), resume after SIGKILL, tree refusal."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import pytest
import torch
from test_data_sources import coco_ann, write_coco, write_image

import yolo9000.data.pack as pack_module
from wordtree.io import write_darknet
from wordtree.tree import WordTree
from yolo9000.cli import main as cli_main
from yolo9000.config import DataConfig
from yolo9000.data.descriptor import (build_classification, build_detection, load_descriptor, load_descriptor_tree,
                                      pack_split)
from yolo9000.data.loader import build_train_loader
from yolo9000.data.pack import PackError, PackSource

NUM_DET, NUM_CLS = 5, 6


@pytest.fixture
def dataset(tmp_path: Path, tiny_tree: WordTree) -> Path:
    """COCO (labels through a .map onto the tiny tree; one PNG, one missing file) + ImageNet folders."""
    write_darknet(tiny_tree, tmp_path / "tiny")
    (tmp_path / "tiny.map").write_text("2\n9\n")
    infos, anns = [], []
    for i in range(NUM_DET):
        name = f"{i}.png" if i == 1 else f"{i}.jpg"
        write_image(tmp_path / "det" / name, height=30 + i, width=40, seed=i)
        infos.append({"id": 100 + i, "file_name": name, "height": 30 + i, "width": 40})
        anns += [coco_ann(2 * i + 1, 100 + i, 1, [1, 2, 10, 12]), coco_ann(2 * i + 2, 100 + i, 2, [5, 5, 20, 3 + i])]
    infos.append({"id": 999, "file_name": "missing.jpg", "height": 30, "width": 40})
    write_coco(tmp_path / "det.json", infos, anns, [(1, "p"), (2, "q")])
    for k in range(NUM_CLS):
        write_image(tmp_path / "cls" / ("a3x" if k % 2 else "b1") / f"{k}.jpg", height=20 + k, seed=50 + k)
    path = tmp_path / "data.yaml"
    path.write_text(textwrap.dedent("""\
        tree: tiny.tree
        splits:
          train:
            detection: {format: coco, annotations: det.json, images: det, class_map: tiny.map}
            classification: {format: imagenet, images: cls}
        """))
    return path


def pack_descriptor(tmp_path: Path, pack: Path, tree: str = "tiny.tree") -> Path:
    path = tmp_path / "packed.yaml"
    path.write_text(f"tree: {tree}\nsplits:\n  train:\n    detection: {{format: pack, path: {pack}}}\n"
                    f"    classification: {{format: pack, path: {pack}}}\n")
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_equals_the_source(dataset, tmp_path):
    descriptor = load_descriptor(dataset)
    tree = load_descriptor_tree(descriptor)
    out = tmp_path / "train.h5"
    summary = pack_split(descriptor, "train", out, tree, progress=False)
    assert summary.images == {"detection": NUM_DET, "classification": NUM_CLS} and summary.num_missing == 1
    assert summary.missing["detection"][0].endswith("missing.jpg")
    for kind, build in (("detection", build_detection), ("classification", build_classification)):
        source = build(descriptor, "train", tree)
        packed = PackSource(out, tree, kind)
        originals = [r for r in source.records if Path(r.file).exists()]
        assert len(packed) == len(originals) and packed.kind == kind
        for i, (a, b) in enumerate(zip(originals, packed.records)):
            assert (a.file, a.image_id, a.orig_size) == (b.file, b.image_id, b.orig_size)
            assert torch.equal(a.labels, b.labels)
            assert (a.boxes is None and b.boxes is None) or torch.equal(a.boxes, b.boxes)
            assert packed.read_bytes(i) == Path(a.file).read_bytes()  # bytes exactly as stored
            assert packed.byte_size(i) == Path(a.file).stat().st_size
        image, target = packed[0]
        expected, expected_target = source[0]
        assert torch.equal(image, expected) and torch.equal(target["labels"], expected_target["labels"])
    with h5py.File(out) as f:
        assert f.attrs["split"] == "train" and "class_map: tiny.map" in f.attrs["descriptor_yaml"]
        assert [w.decode() for w in f["tree/wnids"][:]] == list(tree.wnids)


def test_descriptor_pack_source_and_loader_with_workers(dataset, tmp_path):
    descriptor = load_descriptor(dataset)
    out = tmp_path / "train.h5"
    pack_split(descriptor, "train", out, load_descriptor_tree(descriptor), progress=False)
    packed = load_descriptor(pack_descriptor(tmp_path, out))
    tree = load_descriptor_tree(packed)
    assert len(build_detection(packed, "train", tree)) == NUM_DET
    assert len(build_classification(packed, "train", tree)) == NUM_CLS
    config = DataConfig(det_per_batch=2, cls_per_batch=2, multiscale=(64,), workers=2)
    loader = build_train_loader(packed, tree, config, num_batches=4)
    batches = list(loader)  # each worker opens the h5 itself
    assert len(batches) == 4 and not loader.skipped
    labels = torch.cat([b.labels[~b.is_detection, 0] for b in batches])
    assert set(labels.tolist()) <= {tree.index("a3x"), tree.index("b1")}


def test_tree_mismatch_is_refused_with_a_clear_message(dataset, tmp_path, tiny_tree):
    descriptor = load_descriptor(dataset)
    out = tmp_path / "train.h5"
    pack_split(descriptor, "train", out, tiny_tree, progress=False)
    other = WordTree.from_parents(list(tiny_tree.wnids[:-1]) + ["zz"], tiny_tree.parent.tolist())
    with pytest.raises(PackError, match=r"packed with a 11-node tree .* first difference at node 10: the pack has "
                                        r"b1x_q \(parent 8\), this tree has zz \(parent 8\)"):
        PackSource(out, other, "detection")
    with pytest.raises(PackError, match=r"packed with a 11-node tree .* uses flat class indices"):
        PackSource(out, None, "detection")
    with pytest.raises(PackError, match="say which kind"):
        PackSource(out, tiny_tree)
    with pytest.raises(PackError, match=r"does not exist"):
        PackSource(tmp_path / "nope.h5", tiny_tree)


def test_existing_pack_is_kept_unless_inputs_change(dataset, tmp_path, tiny_tree):
    descriptor = load_descriptor(dataset)
    out = tmp_path / "train.h5"
    pack_split(descriptor, "train", out, tiny_tree, progress=False)
    before = digest(out)
    again = pack_split(descriptor, "train", out, tiny_tree, progress=False)
    assert again.written == 0 and digest(out) == before
    write_image(tmp_path / "cls" / "b1" / "new.jpg", seed=99)
    with pytest.raises(PackError, match="packed from other inputs.*--overwrite"):
        pack_split(descriptor, "train", out, tiny_tree, progress=False)
    replaced = pack_split(descriptor, "train", out, tiny_tree, progress=False, overwrite=True)
    assert replaced.images["classification"] == NUM_CLS + 1 and digest(out) != before


KILL_SCRIPT = """
import os, signal, sys
import yolo9000.data.pack as p
from yolo9000.data.descriptor import load_descriptor, load_descriptor_tree, pack_split
reads = 0
original = p._read_file
def read_then_die(source, index):
    global reads
    reads += 1
    if reads == {kill_at}:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(source, index)
p._read_file = read_then_die
d = load_descriptor(sys.argv[1])
pack_split(d, "train", sys.argv[2], load_descriptor_tree(d), progress=False, commit_bytes=1, threads=1)
"""


def test_sigkill_mid_pack_then_rerun_continues_and_matches(dataset, tmp_path, monkeypatch):
    descriptor = load_descriptor(dataset)
    tree = load_descriptor_tree(descriptor)
    reference = tmp_path / "reference.h5"
    pack_split(descriptor, "train", reference, tree, progress=False)

    out = tmp_path / "killed.h5"
    kill_at = NUM_DET + 3  # inside the classification part
    result = subprocess.run([sys.executable, "-c", KILL_SCRIPT.format(kill_at=kill_at), str(dataset), str(out)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == -9, result.stderr
    assert not out.exists() and out.with_name("killed.h5.partial").exists()
    assert out.with_name("killed.h5.progress").exists()
    with pytest.raises(PackError, match="packing was interrupted"):
        PackSource(out, tree, "detection")

    reads = []
    original = pack_module._read_file
    monkeypatch.setattr(pack_module, "_read_file", lambda source, index: reads.append(index) or original(source,
                                                                                                         index))
    summary = pack_split(descriptor, "train", out, tree, progress=False)
    # Images before the killed read were committed one by one (commit_bytes=1); only the rest is read again.
    assert summary.resumed_at == kill_at - 1 and summary.written == len(reads) == NUM_DET + NUM_CLS - (kill_at - 1)
    assert digest(out) == digest(reference)  # byte-identical to an uninterrupted pack
    assert not out.with_name("killed.h5.partial").exists() and not out.with_name("killed.h5.progress").exists()


def test_stale_progress_of_another_job_restarts_cleanly(dataset, tmp_path, tiny_tree):
    descriptor = load_descriptor(dataset)
    out = tmp_path / "train.h5"
    out.with_name("train.h5.partial").write_bytes(b"garbage from a crash while writing the structure")
    out.with_name("train.h5.progress").write_text('{"job": "something else", "done": {"detection": 3}}')
    summary = pack_split(descriptor, "train", out, tiny_tree, progress=False)
    assert summary.resumed_at == 0 and summary.written == NUM_DET + NUM_CLS
    assert len(PackSource(out, tiny_tree, "classification")) == NUM_CLS


def test_cli_pack_prints_the_descriptor_snippet(dataset, tmp_path, capsys):
    out = tmp_path / "cli.h5"
    assert cli_main(["data", "pack", str(dataset), "--split", "train", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert f"{NUM_DET} detection, {NUM_CLS} classification images" in printed.out
    assert f"classification: {{format: pack, path: {out.resolve()}}}" in printed.out
    assert "left out 1 images whose files are missing" in printed.err
    assert cli_main(["data", "pack", str(dataset), "--split", "nope", "--out", str(out)]) == 2
    assert "no split 'nope'" in capsys.readouterr().err

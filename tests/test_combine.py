"""`yolo9000 data combine`: COCO-format detection + wnid folders -> tree, class maps, descriptor that `data check`
and `train` take as they are (issue 12 §2); the same on the shapes world."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from engine_data import TEST_SETTINGS, _image

from wordtree.io import read_darknet, tree_text
from wordtree.wordnet import WordNet
from yolo9000.cli import main
from yolo9000.data.combine import VOC_NAMES, builtin_category_wnids, resolve_names, top_wnids
from yolo9000.reference import darknet_file, nltk_dir

pytestmark = pytest.mark.usefixtures("one_thread")

DOG, CAT, PERSON = "n02084071", "n02121620", "n00007846"  # darknet's (coco9k.map) dog, cat, person
DALMATIAN, TABBY, PUG = "n02110341", "n02123045", "n02110958"


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return WordNet.load(nltk_dir())


def write_coco(root: Path, names: list[str], count: int = 4, size: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """A COCO-format set: `count` images with one or two boxes, categories `names` (ids 1..K)."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for i in range(count):
        boxes = []
        for j in range(1 + i % 2):
            k = (i + j) % len(names)
            x, y, w, h = 4 + 20 * j, 6, 24, 30
            boxes.append(([x, y, x + w, y + h], names[k]))
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": k + 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
        _image(rng, size, boxes).save(root / "images" / f"{i:03d}.jpg", quality=95)
        images.append({"id": i + 1, "file_name": f"{i:03d}.jpg", "width": size, "height": size})
    categories = [{"id": k + 1, "name": n} for k, n in enumerate(names)]
    annotations_file = root / "instances.json"
    annotations_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return annotations_file, root / "images"


def write_folders(root: Path, counts: dict[str, int], size: int = 64, seed: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    for wnid, n in counts.items():
        (root / wnid).mkdir(parents=True)
        for i in range(n):
            _image(rng, size, [([8, 8, size - 8, size - 8], wnid)]).save(root / wnid / f"{i}.jpg", quality=95)
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def train_a_few_steps(descriptor: Path, tree: Path, run_dir: Path) -> int:
    """`train` on the descriptor as written: the model's tree is the descriptor's (no model.tree given)."""
    settings = [f"data.dataset={descriptor}", *TEST_SETTINGS, "train.max_steps=2"]
    status = main(["train", "--config", "tiny", "--out", str(run_dir),
                   *[arg for s in settings for arg in ("--set", s)]])
    if status == 0:
        assert f"tree: {tree.resolve()}" in (run_dir / "config.yaml").read_text()
    return status


def test_builtin_names_are_darknets_coco_map_and_wordnet_nouns(wordnet):
    names = builtin_category_wnids(wordnet)
    labels = darknet_file("9k.labels").read_text().split()
    coco = [n for n in darknet_file("coco.names").read_text().splitlines() if n.strip()]
    indices = [int(i) for i in darknet_file("coco9k.map").read_text().split()]
    assert [names[n] for n in coco] == [labels[i] for i in indices]  # line k of coco.names -> node coco9k.map[k]
    assert all(n in names for n in VOC_NAMES) and names["motorcycle"] == names["motorbike"]
    assert all(w in wordnet for w in names.values())
    assert wordnet.name(names["dog"]) == "dog" and wordnet.name(names["person"]) == "person"


def test_names_resolution_order(wordnet):
    choices = resolve_names(["dog", "crane", "qwzxv", DALMATIAN, "bus"], wordnet, {"bus": "n02924116"},
                            {"dog": DOG, "bus": "n00000000"})
    how = {c.name: (c.wnid, c.how) for c in choices}
    assert how["dog"] == (DOG, "built in")
    assert how["bus"] == ("n02924116", "names file")             # the file wins over the built-in map
    assert how[DALMATIAN] == (DALMATIAN, "wnid")
    assert how["qwzxv"] == (None, "unknown")
    crane = next(c for c in choices if c.name == "crane")
    assert crane.how == "WordNet, ambiguous" and crane.wnid == wordnet.noun_senses("crane")[0]
    assert len(crane.senses) >= 2


def test_top_wnids_by_image_count_ties_by_wnid():
    from collections import Counter
    assert top_wnids(Counter({"n3": 5, "n1": 2, "n2": 5, "n0": 2}), 3) == {"n2", "n3", "n0"}


def test_coco_plus_wnid_folders_check_and_train(tmp_path, capsys, wordnet):
    annotations, images = write_coco(tmp_path / "coco", ["dog", "cat", "person", "crane"])
    folders = write_folders(tmp_path / "imagenet", {DALMATIAN: 3, TABBY: 2, PUG: 1})
    out = tmp_path / "combined"
    status, text, err = run(capsys, "data", "combine", "--coco", str(annotations), str(images),
                            "--imagenet", str(folders), "--out", str(out))
    assert status == 0, err
    tree = read_darknet(out / "tree.tree")
    crane = wordnet.noun_senses("crane")[0]
    assert {DOG, CAT, PERSON, crane, DALMATIAN, TABBY, PUG} <= set(tree.wnids)
    assert "classes with boxes: 4; classes with only classification labels: 3" in text
    assert "images: 4 detection, 6 classification; 6 boxes" in text
    assert "1 names have several WordNet noun senses; the first was taken (crane -> crane.n.01 (a writer))" in text
    # the maps: YAML name -> wnid for the descriptor, darknet's .map (line k = node of category k) beside it
    assert yaml.safe_load((out / "class_map.yaml").read_text()) == {"dog": DOG, "cat": CAT, "person": PERSON,
                                                                      "crane": crane}
    assert (out / "coco0.map").read_text().split() == [str(tree.index(w)) for w in (DOG, CAT, PERSON, crane)]
    # the editable names file lists the looked-up name with its alternatives, not the built-in ones
    names_text = (out / "names.yaml").read_text()
    assert f'"crane": {crane}  # first of' in names_text and '"dog"' not in names_text
    summary = json.loads((out / "combine.json").read_text())
    assert summary["classes_with_boxes"] == 4 and summary["images"] == {"detection": 4, "classification": 6}
    # the descriptor is taken as it is
    descriptor = out / "dataset.yaml"
    status, text, err = run(capsys, "data", "check", str(descriptor), "--workers", "0")
    assert status == 0, text + err
    assert train_a_few_steps(descriptor, out / "tree.tree", tmp_path / "run") == 0
    # a second run reads names.yaml: an edited choice wins, and the output is otherwise the same
    (out / "names.yaml").write_text(names_text.replace(f'"crane": {crane}', '"crane": crane.n.04'))
    assert run(capsys, "data", "combine", "--coco", str(annotations), str(images), "--imagenet", str(folders),
               "--out", str(out))[0] == 0
    assert yaml.safe_load((out / "class_map.yaml").read_text())["crane"] == wordnet.wnid_for("crane.n.04")
    assert '"crane": ' + wordnet.wnid_for("crane.n.04") + "  # your choice" in (out / "names.yaml").read_text()


def test_unknown_names_are_written_for_the_next_run(tmp_path, capsys, wordnet):
    annotations, images = write_coco(tmp_path / "coco", ["dog", "qwzxv gadget"])
    out = tmp_path / "combined"
    status, text, _ = run(capsys, "data", "combine", "--coco", str(annotations), str(images), "--out", str(out))
    assert status == 1
    assert "problem: 1 category names have no wnid (qwzxv gadget): give each one in" in text
    assert yaml.safe_load((out / "names.yaml").read_text()) == {"qwzxv gadget": None}
    # the user gives a synset name; the next run reads it and the set is complete
    (out / "names.yaml").write_text('"qwzxv gadget": gadget.n.01\n"fire hydrant": n03346898\n')
    status, text, _ = run(capsys, "data", "combine", "--coco", str(annotations), str(images), "--out", str(out))
    assert status == 0 and "problem" not in text
    assert yaml.safe_load((out / "class_map.yaml").read_text())["qwzxv gadget"] == wordnet.wnid_for("gadget.n.01")
    # a choice for a name this data does not have is carried over, not lost
    assert yaml.safe_load((out / "names.yaml").read_text())["fire hydrant"] == "n03346898"
    status, text, err = run(capsys, "data", "check", str(out / "dataset.yaml"), "--workers", "0")
    assert status == 0, text + err
    # a malformed choice is a one-line error naming the file and entry
    (out / "names.yaml").write_text('"qwzxv gadget": n99999999\n')
    status, _, err = run(capsys, "data", "combine", "--coco", str(annotations), str(images), "--out", str(out))
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert "names.yaml: 'qwzxv gadget': n99999999 is not a WordNet 3.0 noun synset" in err


def test_top_k_keeps_the_largest_classes_and_lists_their_images(tmp_path, capsys):
    annotations, images = write_coco(tmp_path / "coco", ["dog"], count=2)
    folders = write_folders(tmp_path / "imagenet", {DALMATIAN: 3, TABBY: 2, PUG: 1})
    out = tmp_path / "combined"
    status, text, _ = run(capsys, "data", "combine", "--coco", str(annotations), str(images), "--imagenet",
                          str(folders), "--top", "2", "--out", str(out))
    assert status == 0 and "--top 2: 2 of 3 classification wnids kept by image count" in text
    listed = [line.split()[-1] for line in (out / "classification.list").read_text().splitlines()]
    assert sorted(listed) == sorted([DALMATIAN] * 3 + [TABBY] * 2)
    assert PUG not in read_darknet(out / "tree.tree")
    status, text, err = run(capsys, "data", "check", str(out / "dataset.yaml"), "--workers", "0")
    assert status == 0, text + err


def test_input_errors_are_one_line(tmp_path, capsys):
    for argv, fragment in ((["--out", str(tmp_path / "o")], "nothing to combine"),
                           (["--coco", str(tmp_path / "no.json"), str(tmp_path), "--out", str(tmp_path / "o")],
                            "no such COCO annotation file"),
                           (["--imagenet", str(tmp_path / "none"), "--out", str(tmp_path / "o")], "not a folder"),
                           (["--voc", str(tmp_path), "--out", str(tmp_path / "o")], "no Annotations/ folder")):
        status, _, err = run(capsys, "data", "combine", *argv)
        assert status == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_shapes_world_combined_gives_the_shapes_tree(tmp_path, capsys, wordnet):
    from yolo9000.data.shapes import FINE, write_world
    world = tmp_path / "world"
    write_world(world, num_det=6, num_cls=33, num_eval=0, wordnet=wordnet)
    assert {p.name for p in (world / "cls").iterdir()} == set(FINE)  # every fine class has images
    out = tmp_path / "combined"
    status, text, err = run(capsys, "data", "combine", "--coco", str(world / "det" / "annotations.json"),
                            str(world / "det" / "images"), "--imagenet", str(world / "cls"), "--root",
                            "plane_figure.n.01", "--out", str(out))
    assert status == 0, text + err
    # the shapes tree is the builder's tree for the same targets: combine must give the same one
    assert tree_text(read_darknet(out / "tree.tree")) == tree_text(read_darknet(world / "shapes.tree"))
    status, text, err = run(capsys, "data", "check", str(out / "dataset.yaml"), "--workers", "0")
    assert status == 0, text + err
    assert train_a_few_steps(out / "dataset.yaml", out / "tree.tree", tmp_path / "run") == 0


def write_voc(root: Path, objects: list[list[tuple[str, list[int]]]], size: int = 64, seed: int = 2) -> Path:
    """A VOC folder: Annotations/<id>.xml and JPEGImages/<id>.jpg, one image per entry of `objects`."""
    rng = np.random.default_rng(seed)
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for k, objs in enumerate(objects):
        name = f"{k:06d}"
        _image(rng, size, [(box, n) for n, box in objs]).save(root / "JPEGImages" / f"{name}.jpg", quality=95)
        xml_objects = "".join(
            f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>" for n, (x1, y1, x2, y2) in objs)
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{size}</width><height>{size}</height>"
            f"<depth>3</depth></size>{xml_objects}</annotation>")
    return root


def test_voc_and_coco_together(tmp_path, capsys, wordnet):
    annotations, images = write_coco(tmp_path / "coco", ["dog", "motorcycle"], count=2)
    voc = write_voc(tmp_path / "VOC2007", [[("motorbike", [4, 4, 40, 40]), ("sofa", [30, 30, 60, 60])],
                                           [("tvmonitor", [10, 10, 50, 40])]])
    out = tmp_path / "combined"
    status, text, err = run(capsys, "data", "combine", "--coco", str(annotations), str(images), "--voc", str(voc),
                            "--out", str(out))
    assert status == 0, text + err
    names = builtin_category_wnids(wordnet)
    class_map = yaml.safe_load((out / "class_map.yaml").read_text())
    # COCO's "motorcycle" and VOC's "motorbike" are one class (darknet's map), so 4 classes with boxes, not 5
    assert class_map["motorcycle"] == class_map["motorbike"] == names["motorbike"]
    assert "classes with boxes: 4; classes with only classification labels: 0" in text
    assert "images: 4 detection, 0 classification; 6 boxes" in text
    descriptor = yaml.safe_load((out / "dataset.yaml").read_text())
    assert [s["format"] for s in descriptor["splits"]["train"]["detection"]] == ["coco", "voc"]
    status, text, err = run(capsys, "data", "check", str(out / "dataset.yaml"), "--workers", "0")
    assert status == 0, text + err

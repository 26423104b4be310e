"""`yolo9000 data combine`: darknet's combine9k as one command (YOLO9000 section 4, "Dataset combination with
WordTree").

The paper trains one detector on COCO boxes and ImageNet classification labels by putting both label sets on one
WordTree. Darknet users do this by hand in six steps (collect wnids, build the tree, write the maps, write the data
file, check, train); this module does it in one:

1. every detection category name gets a wnid: COCO's 80 and VOC's 20 from darknet's own maps (`coco.names` line k
   -> node `coco9k.map[k]` of `9k.labels`), any other name by WordNet lookup (noun senses, the first by default);
   names with several senses or none are listed and written to an editable YAML that the next run reads;
2. classification wnids come from wnid folders or `path wnid` lists, optionally the top K folders by image count;
3. the tree is built from WordNet for the union of the targets (`wordtree.build.build_tree`);
4. written to one folder: `tree.tree/.names/.labels`, one class map per detection source, and `dataset.yaml`, a
   descriptor `data check` and `train` accept as they are.
"""
from __future__ import annotations

from pathlib import Path

from wordtree.io import read_map
from wordtree.wordnet import WordNet
from yolo9000.reference import darknet_file

# VOC's 20 names are darknet's own spellings in coco.names (aeroplane, motorbike, sofa, pottedplant, diningtable,
# tvmonitor); the COCO json files spell six of them differently. Both spellings are built in.
VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
             "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
COCO_JSON_SPELLINGS = {"airplane": "aeroplane", "motorcycle": "motorbike", "couch": "sofa",
                       "potted plant": "pottedplant", "dining table": "diningtable", "tv": "tvmonitor"}


class CombineError(ValueError):
    """A user input of `data combine` cannot be used; the message names it."""


def builtin_category_wnids(wordnet: WordNet | None = None, home: Path | None = None) -> dict[str, str]:
    """COCO's 80 and VOC's 20 category names -> wnid, as darknet labels them on its 9k tree.

    Read from the reference data (`yolo9000 setup`): name k of darknet's `coco.names` is node `coco9k.map[k]` of
    `9k.labels`. Both darknet's spellings (VOC's) and the COCO json's are keys. Some of darknet's choices are broad
    (fire hydrant -> plumbing fixture, stop sign -> street sign); they are kept so a combined tree labels COCO as
    darknet does.

    Args:
        wordnet: when given, every wnid is checked to be a WordNet 3.0 noun.
    Raises:
        CombineError: darknet's files disagree with each other or with WordNet.
    """
    names = [n.strip() for n in darknet_file("coco.names", home).read_text().splitlines() if n.strip()]
    labels = darknet_file("9k.labels", home).read_text().split()
    indices = read_map(darknet_file("coco9k.map", home))
    if len(names) != 80 or len(indices) != 80:
        raise CombineError(f"darknet's coco.names / coco9k.map hold {len(names)} / {len(indices)} entries, not 80")
    out = {name: labels[i] for name, i in zip(names, indices)}
    for coco, darknet in COCO_JSON_SPELLINGS.items():
        out[coco] = out[darknet]
    missing = [n for n in VOC_NAMES if n not in out]
    if missing:
        raise CombineError(f"darknet's coco.names lacks VOC names {missing}")
    if wordnet is not None:
        bad = sorted(f"{n} -> {w}" for n, w in out.items() if w not in wordnet)
        if bad:
            raise CombineError(f"darknet's COCO map names wnids that are not WordNet 3.0 nouns: {', '.join(bad)}")
    return out

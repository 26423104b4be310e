"""`yolo9000 setup`: fetch reference data into the data dir and print that dir as the last line."""
from __future__ import annotations

import argparse
from pathlib import Path

from yolo9000 import reference


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wordnet-dir", type=Path, help="WordNet 3.0 dict folder (or an NLTK data dir) to use")
    parser.add_argument("--darknet-data", type=Path, help="darknet checkout (data/ and cfg/) to copy the 9k files from")
    parser.add_argument("--home", type=Path, help="data dir (default $YOLO9000_HOME or ~/.cache/yolo9000)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = reference.ensure_all(args.home, args.wordnet_dir, args.darknet_data)
    print(home)
    return 0

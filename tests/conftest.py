"""Shared fixtures: a tiny hand-built tree, darknet's 9k tree, seeded generators."""
from __future__ import annotations

import pytest
import torch

from wordtree.tree import WordTree


@pytest.fixture(scope="session")
def tiny_tree() -> WordTree:
    """A small tree with every shape that matters: two roots, one-child group, deep chain, internal labels.

        0 a (root)            1 b (root)
        ├── 2 a1              └── 5 b1
        ├── 3 a2                  └── 8 b1x
        └── 4 a3                      ├── 9  b1x_p
            ├── 6 a3x                 └── 10 b1x_q
            └── 7 a3y
    """
    wnids = ["a", "b", "a1", "a2", "a3", "b1", "a3x", "a3y", "b1x", "b1x_p", "b1x_q"]
    parents = [-1, -1, 0, 0, 0, 1, 4, 4, 5, 8, 8]
    return WordTree.from_parents(wnids, parents, names=[w.upper() for w in wnids])


@pytest.fixture(scope="session")
def darknet_9k_tree() -> WordTree:
    from wordtree.io import read_darknet
    from yolo9000.reference import darknet_file
    return read_darknet(darknet_file("9k.tree"), darknet_file("9k.names"))


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread, and OpenMP threads spinning on a busy 2-core box cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

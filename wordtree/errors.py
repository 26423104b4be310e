"""wordtree's user errors: one base, `WordTreeError`; each message is one line naming the input.

A command line catches `WordTreeError` (and nothing broader) to print `error: ...` and exit 2; any other exception is
a bug and keeps its traceback. Each class also derives from the builtin it used to be, so `except ValueError` around
a tree load still works.
"""
from __future__ import annotations

from typing import Any

__all__ = ["AmbiguousNodeError", "CliError", "InputError", "NodeError", "TreeError", "WordNetError", "WordTreeError"]


class WordTreeError(Exception):
    """Base of every user error raised by wordtree."""


class TreeError(WordTreeError, ValueError):
    """A tree breaks an invariant; the message names the line (1-based) or node and the problem."""


class WordNetError(WordTreeError, LookupError):
    """WordNet data is missing or malformed, or a wnid / synset name is unknown; the message names it."""


class CliError(WordTreeError):
    """A command-line input is wrong (missing file, unreadable logits, out-of-range index)."""


class NodeError(WordTreeError, KeyError):
    """A key names no node of the tree (or several, see `AmbiguousNodeError`)."""

    def __str__(self) -> str:  # KeyError would print the message repr'd
        return str(self.args[0]) if self.args else ""


class AmbiguousNodeError(NodeError):
    """A name matches several tree nodes; `candidates` holds their indices."""

    def __init__(self, key: str, candidates: list[int], tree: Any) -> None:
        self.key, self.candidates = key, candidates
        listed = ", ".join(f"{tree.wnids[i]} {' < '.join(tree.names[j] for j in reversed(tree.path(i)))}"
                           for i in candidates)
        super().__init__(f"{key!r} names {len(candidates)} nodes ({listed}); give a wnid")


class InputError(WordTreeError, ValueError):
    """An input of the tree builder (a targets file, an overrides file, an ImageNet folder) is missing or malformed."""

"""Read-only access to the WordNet 3.0 noun graph: the only module of the project that touches WordNet.

ImageNet ids are WordNet 3.0 noun offsets (`n02084071` -> offset 2084071 -> `dog.n.01`). We parse `data.noun`
directly instead of going through NLTK's reader: about a second for all 82,115 nouns (NLTK needs 5 s to open the
corpus and 8 s more to read every noun) and a fixed, documented order for every list, so builds are reproducible
(wordtree_build.md, "WordNet 3.0 offline"). NLTK keeps pointers in sets, so its hypernym order is not even stable
between processes; the hypernym *sets* and the lemmas are what must agree, and they do for every noun
(tests/test_wordnet.py, bench/tree_build.py). NLTK is used only to *locate* the corpus when no folder is given.

`load(..., cache_dir=DIR)` keeps the parsed graph in DIR as a `marshal` file keyed by data.noun's path, size and
mtime, the format version and the Python version: the same maps back in about a fifth of the parse time, never stale.

`data.noun` line format (after the licence header, whose lines start with two spaces):

    offset lex_filenum ss_type w_cnt(hex) [word lex_id]... p_cnt [pointer_symbol offset pos source/target]... | gloss

Pointer `@` is a hypernym and `@i` an instance hypernym; `~` / `~i` are the inverses (hyponyms).
"""
from __future__ import annotations

import hashlib
import io
import marshal
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, Callable, Iterator

from wordtree.errors import WordNetError  # noqa: F401  (re-exported)

# Pointer symbols kept from data.noun: hypernym edges (both kinds) and their inverses.
_HYPERNYM_POINTERS = frozenset({"@", "@i"})
_HYPONYM_POINTERS = frozenset({"~", "~i"})
_CACHE_FORMAT = 1  # bump when what `parse` returns changes


def wnid_of(offset: int | str) -> str:
    """The ImageNet-style id of a noun offset: 2084071 -> 'n02084071'."""
    return f"n{int(offset):08d}"


@dataclass(frozen=True, eq=False)
class WordNet:
    """The WordNet 3.0 noun hierarchy, keyed by wnid ('n' + 8-digit offset).

    Every list keeps the order of `data.noun` (pointer order for hypernyms/hyponyms), so results are deterministic.

    Attributes:
        lemmas: wnid -> the synset's lemmas, as written in data.noun (underscores for spaces).
        hypernym_map: wnid -> hypernym wnids (`@` and `@i` pointers, file order).
        hyponym_map: wnid -> hyponym wnids (`~` and `~i` pointers, file order).
        index_path: `index.noun`, read lazily by `wnid_for` only.
    """

    lemmas: dict[str, tuple[str, ...]] = field(repr=False)
    hypernym_map: dict[str, tuple[str, ...]] = field(repr=False)
    hyponym_map: dict[str, tuple[str, ...]] = field(repr=False)
    index_opener: Callable[[], IO[str]] | None = field(default=None, repr=False)
    source: str = "data.noun"

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, nltk_root: str | Path | None = None, cache_dir: str | Path | None = None) -> "WordNet":
        """Load the noun graph.

        Args:
            nltk_root: an NLTK data dir holding `corpora/wordnet/data.noun` (or the wordnet dict folder itself).
                None: NLTK's default search path (`nltk.data.find('corpora/wordnet')`, e.g. after
                `nltk.download('wordnet')`), zipped or not.
            cache_dir: where to keep the parsed graph for the next load (a plain data.noun file only); None: parse.

        Raises:
            WordNetError: when no data.noun can be found, saying where we looked.
        """
        if nltk_root is not None:
            root = Path(nltk_root).expanduser()
            for folder in (root / "corpora" / "wordnet", root / "wordnet", root):
                if (folder / "data.noun").exists():
                    return cls._load_file(folder / "data.noun", folder / "index.noun", cache_dir)
            raise WordNetError(f"no WordNet data.noun under {root} (looked in corpora/wordnet/, wordnet/ and the "
                               "folder itself); run `yolo9000 setup` or pass the folder holding data.noun")
        try:
            import nltk
            pointer = nltk.data.find("corpora/wordnet/data.noun")
            index_pointer = nltk.data.find("corpora/wordnet/index.noun")
        except (ImportError, LookupError):
            raise WordNetError("WordNet 3.0 not found on NLTK's search path: run `yolo9000 setup` and pass its "
                               "nltk_data dir, or `nltk.download('wordnet')`") from None

        if isinstance(pointer, nltk.data.FileSystemPathPointer):
            return cls._load_file(Path(pointer.path), Path(index_pointer.path), cache_dir)

        def open_text(p) -> IO[str]:
            return io.TextIOWrapper(p.open(), encoding="utf-8") if hasattr(p, "open") else open(str(p))
        with open_text(pointer) as f:
            return cls.parse(f, source=str(pointer), index_opener=lambda: open_text(index_pointer))

    @classmethod
    def _load_file(cls, data: Path, index: Path, cache_dir: str | Path | None) -> "WordNet":
        def index_opener() -> IO[str]:
            return open(index, encoding="utf-8")
        cache = None
        if cache_dir is not None:
            stat = data.stat()
            key = f"{data.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{_CACHE_FORMAT}|{sys.version_info[:2]}"
            cache = Path(cache_dir) / f"wordnet-nouns-{hashlib.sha1(key.encode()).hexdigest()[:16]}.marshal"
            try:
                lemmas, hypernyms, hyponyms = marshal.loads(cache.read_bytes())
                return cls(lemmas, hypernyms, hyponyms, index_opener, str(data))
            except (OSError, EOFError, ValueError, TypeError):
                pass  # no cache yet, or a damaged one: parse (and rewrite it)
        with open(data, encoding="utf-8") as f:
            wordnet = cls.parse(f, source=str(data), index_opener=index_opener)
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                partial = cache.with_name(f"{cache.name}.{os.getpid()}.partial")
                partial.write_bytes(marshal.dumps((wordnet.lemmas, wordnet.hypernym_map, wordnet.hyponym_map)))
                os.replace(partial, cache)  # readers see the whole file or none
            except OSError:
                pass  # a read-only cache dir only costs the next load its speed
        return wordnet

    @classmethod
    def parse(cls, lines: IO[str] | list[str], source: str = "data.noun",
              index_opener: Callable[[], IO[str]] | None = None) -> "WordNet":
        """Parse the text of `data.noun` (an open file or a list of lines).

        Raises:
            WordNetError: naming the line of a malformed record.
        """
        lemmas: dict[str, tuple[str, ...]] = {}
        hypernyms: dict[str, tuple[str, ...]] = {}
        hyponyms: dict[str, tuple[str, ...]] = {}
        for lineno, line in enumerate(lines, 1):
            if line.startswith("  ") or not line.strip():
                continue  # licence header
            try:
                wnid, words, ups, downs = _parse_record(line)
            except (ValueError, IndexError):
                raise WordNetError(f"{source} line {lineno}: malformed synset record {line[:60]!r}") from None
            lemmas[wnid] = words
            hypernyms[wnid] = ups
            hyponyms[wnid] = downs
        if not lemmas:
            raise WordNetError(f"{source}: no synsets found (empty or not a WordNet data.noun file)")
        return cls(lemmas, hypernyms, hyponyms, index_opener, source)

    # ------------------------------------------------------------------ lookups
    def __len__(self) -> int:
        return len(self.lemmas)

    def __contains__(self, wnid: object) -> bool:
        return wnid in self.lemmas

    def exists(self, wnid: str) -> bool:
        return wnid in self.lemmas

    def _check(self, wnid: str) -> None:
        if wnid not in self.lemmas:
            raise WordNetError(f"wnid {wnid!r} is not a WordNet 3.0 noun synset")

    def name(self, wnid: str) -> str:
        """Display name: the first lemma with underscores as spaces (darknet's 9k.names style)."""
        self._check(wnid)
        return self.lemmas[wnid][0].replace("_", " ")

    def hypernyms(self, wnid: str) -> list[str]:
        """Direct hypernyms, instance hypernyms included (sun -> star), in data.noun order."""
        self._check(wnid)
        return list(self.hypernym_map[wnid])

    def hyponyms(self, wnid: str) -> list[str]:
        """Direct hyponyms, instance hyponyms included, in data.noun order."""
        self._check(wnid)
        return list(self.hyponym_map[wnid])

    def hypernym_paths(self, wnid: str) -> list[list[str]]:
        """Every path from a top synset (entity) down to `wnid`, root first, `wnid` last.

        Order: for each hypernym in data.noun order, that hypernym's paths in order (as NLTK's `hypernym_paths`).
        """
        self._check(wnid)
        return [list(p) for p in self._paths(wnid)]

    def _paths(self, wnid: str) -> tuple[tuple[str, ...], ...]:
        cache = self._path_cache
        if wnid in cache:
            return cache[wnid]
        # Iterative post-order so deep chains never hit the recursion limit.
        stack = [wnid]
        while stack:
            w = stack[-1]
            pending = [h for h in self.hypernym_map.get(w, ()) if h not in cache]
            if pending:
                stack.extend(pending)
                continue
            stack.pop()
            ups = self.hypernym_map.get(w, ())
            cache[w] = tuple(p + (w,) for h in ups for p in cache[h]) if ups else ((w,),)
        return cache[wnid]

    @cached_property
    def _path_cache(self) -> dict[str, tuple[tuple[str, ...], ...]]:
        return {}

    # ------------------------------------------------------------------ synset names
    @cached_property
    def _sense_index(self) -> dict[str, tuple[str, ...]]:
        """lemma (lower case) -> wnids in sense order, from index.noun (lemma pos n p [ptr]*p s t offset*n)."""
        if self.index_opener is None:
            raise WordNetError(f"{self.source}: no index.noun beside it, so synset names cannot be resolved")
        out: dict[str, tuple[str, ...]] = {}
        with self.index_opener() as f:
            for line in f:
                if line.startswith("  "):
                    continue
                fields = line.split()
                num_senses, num_pointers = int(fields[2]), int(fields[3])
                offsets = fields[6 + num_pointers: 6 + num_pointers + num_senses]
                out[fields[0]] = tuple(wnid_of(o) for o in offsets)
        return out

    def noun_senses(self, word: str) -> tuple[str, ...]:
        """The wnids of a word's noun senses in WordNet's sense order (most frequent first), as NLTK's
        `synsets(word, 'n')` lists them for an exact lemma: 'crane' -> (bird, lifting device, ...). Spaces and hyphens
        may stand for underscores; case is ignored. () when WordNet has no such noun."""
        key = word.strip().lower().replace(" ", "_")
        return self._sense_index.get(key) or self._sense_index.get(key.replace("-", "_"), ())

    def wnid_for(self, synset_name: str) -> str:
        """The wnid of an NLTK-style synset name: 'dog.n.01' -> 'n02084071'.

        Raises:
            WordNetError: for a malformed name, a non-noun, or an unknown lemma / sense number.
        """
        parts = synset_name.rsplit(".", 2)
        if len(parts) != 3 or not parts[2].isdigit():
            raise WordNetError(f"synset name {synset_name!r} is not of the form 'lemma.n.NN'")
        lemma, pos, sense = parts
        if pos != "n":
            raise WordNetError(f"synset name {synset_name!r}: only nouns ('.n.') are loaded")
        senses = self._sense_index.get(lemma.lower().replace(" ", "_"))
        if not senses:
            raise WordNetError(f"synset name {synset_name!r}: no noun lemma {lemma!r} in WordNet")
        k = int(sense)
        if not 1 <= k <= len(senses):
            raise WordNetError(f"synset name {synset_name!r}: {lemma!r} has {len(senses)} noun senses")
        return senses[k - 1]

    def synset_name(self, wnid: str) -> str:
        """NLTK-style name of a wnid: 'n02084071' -> 'dog.n.01' (first lemma, its sense number)."""
        self._check(wnid)
        lemma = self.lemmas[wnid][0]
        senses = self._sense_index.get(lemma.lower(), ())
        k = senses.index(wnid) + 1 if wnid in senses else 1
        return f"{lemma.lower()}.n.{k:02d}"

    def descendants(self, wnid: str) -> Iterator[str]:
        """All hyponyms below `wnid`, each once, breadth-first in data.noun order."""
        self._check(wnid)
        seen, frontier = {wnid}, [wnid]
        while frontier:
            nxt = []
            for w in frontier:
                for h in self.hyponym_map.get(w, ()):
                    if h not in seen:
                        seen.add(h)
                        nxt.append(h)
                        yield h
            frontier = nxt


def _parse_record(line: str) -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """One data.noun record -> (wnid, lemmas, hypernym wnids, hyponym wnids). Offsets are 8 digits in data.noun."""
    fields = line.partition(" | ")[0].split()
    if len(fields[0]) != 8 or not fields[0].isdigit():
        raise ValueError(f"offset {fields[0]!r} is not 8 digits")
    num_words = int(fields[3], 16)
    at = 4 + 2 * num_words
    ups, downs = [], []
    for k in range(at + 1, at + 1 + 4 * int(fields[at]), 4):
        symbol = fields[k]
        if fields[k + 2] != "n":
            continue
        if symbol in _HYPERNYM_POINTERS:
            ups.append("n" + fields[k + 1])
        elif symbol in _HYPONYM_POINTERS:
            downs.append("n" + fields[k + 1])
    return "n" + fields[0], tuple(fields[4:at:2]), tuple(ups), tuple(downs)

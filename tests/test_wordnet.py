"""WordNet access: data.noun parsing on synthetic records, and the real WordNet 3.0 of the reference data."""
from __future__ import annotations

import io
import marshal
import os

import pytest

from wordtree.wordnet import WordNet, WordNetError, wnid_of
from yolo9000.reference import nltk_dir

LICENCE = "  1 This software and database is being provided to you, the LICENSEE, by Princeton University"


def synset(offset: int, words: list[str], hypernyms=(), instance_of=(), hyponyms=()) -> str:
    """One data.noun record: offset lex_filenum ss_type w_cnt word lex_id ... p_cnt pointers | gloss."""
    pointers = [("@", h) for h in hypernyms] + [("@i", h) for h in instance_of] + [("~", h) for h in hyponyms]
    pointers.append(("+", 99))  # a derivational pointer to a verb: skipped by the parser
    ptr_text = " ".join(f"{sym} {o:08d} {'v' if sym == '+' else 'n'} 0000" for sym, o in pointers)
    word_text = " ".join(f"{w} 0" for w in words)
    return f"{offset:08d} 03 n {len(words):02x} {word_text} {len(pointers):03d} {ptr_text} | a gloss with | bars"


@pytest.fixture
def tiny_wordnet() -> WordNet:
    lines = [
        LICENCE,
        synset(1, ["entity"], hyponyms=[2]),
        synset(2, ["physical_entity"], hypernyms=[1], hyponyms=[10, 51]),
        synset(10, ["animal", "beast"], hypernyms=[2], hyponyms=[11]),
        synset(11, ["dog", "domestic_dog"], hypernyms=[10]),
        synset(51, ["star"], hypernyms=[2], hyponyms=[50]),
        synset(50, ["sun", "Sun"], instance_of=[51]),
        synset(60, ["pet"], hypernyms=[51, 10]),
    ]
    index = "  1 licence\ndog n 2 1 @ 2 0 00000011 00000060\nsun n 1 0 1 0 00000050\n"
    return WordNet.parse(lines, index_opener=lambda: io.StringIO(index))


def test_parse_synthetic_records(tiny_wordnet):
    wn = tiny_wordnet
    assert len(wn) == 7 and "n00000011" in wn and wn.exists("n00000050") and "n00000099" not in wn
    assert wn.name("n00000002") == "physical entity" and wn.lemmas["n00000011"] == ("dog", "domestic_dog")
    assert wn.hypernyms("n00000011") == ["n00000010"]
    assert wn.hypernyms("n00000050") == ["n00000051"]  # instance hypernym: sun -> star
    assert wn.hyponyms("n00000002") == ["n00000010", "n00000051"]
    assert wn.hypernym_paths("n00000060") == [["n00000001", "n00000002", "n00000051", "n00000060"],
                                              ["n00000001", "n00000002", "n00000010", "n00000060"]]
    assert list(wn.descendants("n00000002")) == ["n00000010", "n00000051", "n00000011", "n00000050"]


def test_synset_names_from_index(tiny_wordnet):
    wn = tiny_wordnet
    assert wn.wnid_for("dog.n.01") == "n00000011" and wn.wnid_for("dog.n.02") == "n00000060"
    assert wn.synset_name("n00000050") == "sun.n.01"
    with pytest.raises(WordNetError, match="'dog.n.03': 'dog' has 2 noun senses"):
        wn.wnid_for("dog.n.03")
    with pytest.raises(WordNetError, match="no noun lemma 'cat'"):
        wn.wnid_for("cat.n.01")
    with pytest.raises(WordNetError, match="only nouns"):
        wn.wnid_for("dog.v.01")
    with pytest.raises(WordNetError, match="not of the form 'lemma.n.NN'"):
        wn.wnid_for("dog")


def test_parse_errors():
    with pytest.raises(WordNetError, match=r"data.noun line 3: malformed synset record '00000002 03 n zz"):
        WordNet.parse([LICENCE, synset(1, ["entity"]), "00000002 03 n zz"])
    with pytest.raises(WordNetError, match="no synsets found"):
        WordNet.parse([LICENCE])
    with pytest.raises(WordNetError, match="wnid 'n00000099' is not a WordNet 3.0 noun synset"):
        WordNet.parse([synset(1, ["entity"])]).name("n00000099")
    with pytest.raises(WordNetError, match="no index.noun"):
        WordNet.parse([synset(1, ["entity"])]).wnid_for("entity.n.01")


def test_load_from_a_folder_and_missing_folder(tmp_path):
    (tmp_path / "wordnet").mkdir()
    (tmp_path / "wordnet" / "data.noun").write_text("\n".join([LICENCE, synset(1, ["entity"])]) + "\n")
    assert len(WordNet.load(tmp_path)) == 1
    with pytest.raises(WordNetError, match="no WordNet data.noun under"):
        WordNet.load(tmp_path / "nowhere")


def test_load_keeps_the_parsed_graph_in_the_cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "wordnet"
    folder.mkdir()
    data = folder / "data.noun"
    data.write_text("\n".join([LICENCE, synset(1, ["entity"], hyponyms=[2]), synset(2, ["thing"], hypernyms=[1])]))
    cache = tmp_path / "cache"
    parsed = WordNet.load(tmp_path, cache_dir=cache)
    (cached_file,) = cache.iterdir()
    # the second load must come from the cache: parsing is made to fail
    real_parse = WordNet.parse.__func__
    monkeypatch.setattr(WordNet, "parse", classmethod(lambda *a, **k: pytest.fail("parsed again")))
    again = WordNet.load(tmp_path, cache_dir=cache)
    assert (again.lemmas, again.hypernym_map, again.hyponym_map) == (parsed.lemmas, parsed.hypernym_map,
                                                                     parsed.hyponym_map)
    assert again.source == str(data)
    # a changed data.noun (size and mtime) is parsed again, never served stale; so is a damaged cache file
    monkeypatch.setattr(WordNet, "parse", classmethod(real_parse))
    data.write_text("\n".join([LICENCE, synset(1, ["entity"]), synset(3, ["idea"], hypernyms=[1])]))
    os.utime(data, ns=(1, 1))
    assert WordNet.load(tmp_path, cache_dir=cache).name("n00000003") == "idea"
    for f in cache.iterdir():
        f.write_bytes(b"not marshal data")
    assert WordNet.load(tmp_path, cache_dir=cache).name("n00000003") == "idea"
    assert all(marshal.loads(f.read_bytes())[0]["n00000003"] == ("idea",) for f in cache.iterdir()
               if f != cached_file)  # rewritten after the damage


def test_wnid_of():
    assert wnid_of(2084071) == "n02084071" and wnid_of("00001930") == "n00001930"


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return WordNet.load(nltk_dir())


def test_real_wordnet_3_0(wordnet):
    assert len(wordnet) == 82115
    assert wordnet.name("n02084071") == "dog"
    assert [wordnet.name(h) for h in wordnet.hypernyms("n02084071")] == ["canine", "domestic animal"]
    assert wordnet.hypernyms("n09450163") == ["n09444100"]  # sun is an instance of star
    assert wordnet.wnid_for("dog.n.01") == "n02084071" and wordnet.synset_name("n02084071") == "dog.n.01"
    assert wordnet.wnid_for("physical_entity.n.01") == "n00001930"
    assert wordnet.wnid_for("plane_figure.n.01") == "n13863186"
    paths = wordnet.hypernym_paths("n02084071")
    assert len(paths) == 2 and all(p[0] == "n00001740" and p[-1] == "n02084071" for p in paths)
    assert "n00001930" in paths[0]


@pytest.mark.slow
def test_parser_agrees_with_nltk_on_every_noun(wordnet):
    """NLTK's reader on the same files: the same nouns, lemmas and hypernym sets (NLTK keeps pointers in sets, so
    only the order can differ). About 15 s: NLTK reads every noun."""
    nltk = pytest.importorskip("nltk")
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    nltk.data.path.insert(0, str(nltk_dir()))  # NLTK reads only below its data path
    try:
        reader = WordNetCorpusReader(nltk.data.find("corpora/wordnet"), None)
        seen = 0
        for s in reader.all_synsets("n"):
            wnid = wnid_of(s.offset())
            assert tuple(lemma.name() for lemma in s.lemmas()) == wordnet.lemmas[wnid], wnid
            assert {wnid_of(h.offset()) for h in s.hypernyms() + s.instance_hypernyms()} == set(
                wordnet.hypernym_map[wnid]), wnid
            seen += 1
    finally:
        nltk.data.path.remove(str(nltk_dir()))
    assert seen == len(wordnet) == 82115

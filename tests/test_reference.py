"""Reference-data setup: copying WordNet from a user folder, lexnames, darknet files, clear errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from yolo9000 import reference
from yolo9000.cli import main


def _fake_wordnet(folder: Path, crlf: bool = False) -> Path:
    folder.mkdir(parents=True)
    eol = "\r\n" if crlf else "\n"
    for name in ("data.noun", "index.noun", "index.sense"):
        (folder / name).write_bytes(f"  licence header{eol}02084071 05 n 01 dog 0 000 | a dog{eol}".encode())
    return folder


def test_lexnames_are_the_45_wordnet_files():
    lines = reference.lexnames_text().splitlines()
    assert len(lines) == 45
    assert lines[0] == "00\tadj.all\t3"
    assert lines[3] == "03\tnoun.Tops\t1"
    assert lines[44] == "44\tadj.ppl\t3"


def test_wordnet_dir_is_copied_with_crs_stripped_and_lexnames(tmp_path):
    src = _fake_wordnet(tmp_path / "dict", crlf=True)
    dest = reference.ensure_wordnet(tmp_path / "home", wordnet_dir=src, log=lambda *_: None)
    assert dest == tmp_path / "home" / "nltk_data" / "corpora" / "wordnet"
    assert b"\r" not in (dest / "data.noun").read_bytes()
    assert (dest / "lexnames").read_text() == reference.lexnames_text()
    # idempotent: a second call returns at once, even with the source gone
    (src / "data.noun").unlink()
    assert reference.ensure_wordnet(tmp_path / "home", wordnet_dir=src, log=lambda *_: None) == dest


def test_wordnet_dir_without_data_noun_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(reference.ReferenceDataError, match="no data.noun"):
        reference.ensure_wordnet(tmp_path / "home", wordnet_dir=tmp_path / "empty", log=lambda *_: None)


def test_darknet_checkout_is_copied(tmp_path):
    checkout = tmp_path / "darknet"
    (checkout / "data").mkdir(parents=True)
    (checkout / "cfg").mkdir()
    for name in reference.DARKNET_DATA_FILES:
        (checkout / "data" / name).write_text(name)
    for name in reference.DARKNET_CFG_FILES:
        (checkout / "cfg" / name).write_text(name)
    (checkout / "data" / "dog.jpg").write_bytes(b"jpg")
    dest = reference.ensure_darknet(tmp_path / "home", darknet_data=checkout, log=lambda *_: None)
    assert (dest / "9k.tree").read_text() == "9k.tree"
    assert (dest / "yolo9000.cfg").read_text() == "yolo9000.cfg"
    assert (dest / "dog.jpg").exists()


def test_incomplete_darknet_checkout_names_the_missing_files(tmp_path):
    (tmp_path / "darknet" / "data").mkdir(parents=True)
    (tmp_path / "darknet" / "data" / "9k.tree").write_text("x")
    with pytest.raises(reference.ReferenceDataError, match="missing darknet files .*9k.names"):
        reference.ensure_darknet(tmp_path / "home", darknet_data=tmp_path / "darknet", log=lambda *_: None)


def test_setup_without_apt_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reference, "_apt_available", lambda: False)
    monkeypatch.setattr(reference, "nltk_has_own_wordnet", lambda: None)
    monkeypatch.setattr(reference, "Path", Path)
    real_exists = Path.exists
    # Pretend the system has no /usr/share/wordnet, as on a machine without the Debian packages.
    monkeypatch.setattr(Path, "exists", lambda self: False if str(self).startswith("/usr/share/wordnet")
                        else real_exists(self))
    status = main(["setup", "--home", str(tmp_path / "home")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("yolo9000 setup: error: ")
    assert "apt-get is not available" in err and "--wordnet-dir" in err
    assert "Traceback" not in err


def test_setup_prints_the_data_dir_last(capsys):
    # The real data dir was filled by `make test`'s set-up; a second run fetches nothing and prints the dir.
    assert main(["setup"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(reference.data_home())


def test_missing_reference_file_error_says_run_setup(tmp_path):
    with pytest.raises(reference.ReferenceDataError, match="yolo9000 setup"):
        reference.darknet_file("9k.tree", home=tmp_path)

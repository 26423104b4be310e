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
    for name in reference.DARKNET_CFG_FILES + reference.DARKNET_NETWORK_CFGS + ("yolov3.cfg",):
        (checkout / "cfg" / name).write_text(name)
    (checkout / "data" / "dog.jpg").write_bytes(b"jpg")
    dest = reference.ensure_darknet(tmp_path / "home", darknet_data=checkout, log=lambda *_: None)
    assert (dest / "9k.tree").read_text() == "9k.tree"
    assert (dest / "yolo9000.cfg").read_text() == "yolo9000.cfg"
    assert (dest / "dog.jpg").exists()
    # Every cfg is copied, also those of layers we do not build.
    assert [p.name for p in reference.darknet_cfgs(tmp_path / "home")] == sorted(
        set(reference.DARKNET_CFG_FILES + reference.DARKNET_NETWORK_CFGS + ("yolov3.cfg",)))


def test_an_older_darknet_folder_gains_the_missing_cfgs(tmp_path):
    checkout = tmp_path / "darknet"
    (checkout / "data").mkdir(parents=True)
    (checkout / "cfg").mkdir()
    for name in reference.DARKNET_DATA_FILES:
        (checkout / "data" / name).write_text(name)
    for name in reference.DARKNET_CFG_FILES + reference.DARKNET_NETWORK_CFGS:
        (checkout / "cfg" / name).write_text(name)
    dest = tmp_path / "home" / "darknet"
    dest.mkdir(parents=True)
    (dest / "9k.tree").write_text("kept")  # what an earlier setup (or another process) put there stays
    assert reference.ensure_darknet(tmp_path / "home", darknet_data=checkout, log=lambda *_: None) == dest
    assert (dest / "9k.tree").read_text() == "kept"
    assert (dest / "resnet50.cfg").read_text() == "resnet50.cfg"
    assert not list(dest.glob("*.partial"))


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


def _fake_wheel(folder: Path, lists: dict[str, str]) -> Path:
    import zipfile
    wheel = folder / "timm-9.9.9-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in lists.items():
            z.writestr(f"timm/data/_info/{name}", text)
        z.writestr("timm/__init__.py", "")
    return wheel


def _wnids(count: int, crlf: bool = False) -> str:
    return "".join(f"n{k:08d}{chr(13) if crlf else ''}\n" for k in range(count))


def test_label_lists_come_from_the_wheel_once(tmp_path, monkeypatch):
    # No timm installed: the wheel `pip download --no-deps` would fetch is faked, so no network is used.
    monkeypatch.setattr(reference.importlib.util, "find_spec", lambda name: None)
    calls = []

    def fake_run(cmd):
        calls.append(cmd)
        _fake_wheel(Path(cmd[cmd.index("-d") + 1]), {"imagenet_synsets.txt": _wnids(1000, crlf=True),
                                                     "imagenet22k_synsets.txt": _wnids(21841)})
        return reference.subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(reference, "_run", fake_run)
    messages = []
    dest = reference.ensure_label_lists(tmp_path / "home", log=messages.append)
    assert calls and calls[0][1:6] == ["-m", "pip", "download", "--no-deps", "--only-binary"]
    assert (dest / "imagenet_synsets.txt").read_text() == _wnids(1000)  # CRs stripped
    assert len((dest / "imagenet22k_synsets.txt").read_text().split()) == 21841
    assert "pip download --no-deps timm" in messages[0] and "21841 wnids" in messages[-1]
    # idempotent: nothing fetched, nothing said the second time
    calls.clear()
    messages.clear()
    assert reference.ensure_label_lists(tmp_path / "home", log=messages.append) == dest
    assert calls == [] and messages == []
    assert reference.label_list("imagenet_synsets.txt", home=tmp_path / "home") == dest / "imagenet_synsets.txt"


def test_label_list_in_a_bad_wheel_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(reference.importlib.util, "find_spec", lambda name: None)

    def fake_run(cmd):
        _fake_wheel(Path(cmd[cmd.index("-d") + 1]), {"imagenet_synsets.txt": _wnids(999),
                                                     "imagenet22k_synsets.txt": _wnids(21841)})
        return reference.subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(reference, "_run", fake_run)
    with pytest.raises(reference.ReferenceDataError, match="imagenet_synsets.txt is not 1000 distinct wnids"):
        reference.ensure_label_lists(tmp_path / "home", log=lambda *_: None)
    assert not (tmp_path / "home" / "labels" / "imagenet_synsets.txt").exists()


def test_failed_pip_download_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(reference.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(reference, "_run", lambda cmd: reference.subprocess.CompletedProcess(cmd, 1, "", "no network"))
    with pytest.raises(reference.ReferenceDataError, match="(?s)pip download --no-deps timm` failed.*no network.*"
                                                           "pip install timm"):
        reference.ensure_label_lists(tmp_path / "home", log=lambda *_: None)
    with pytest.raises(reference.ReferenceDataError, match="yolo9000 setup"):
        reference.label_list("imagenet_synsets.txt", home=tmp_path / "home")

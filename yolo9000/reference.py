"""Reference data from package registries: WordNet 3.0 (Debian) and darknet's 9k files (Debian `darknet`).

Everything lands in one data dir, `$YOLO9000_HOME` (default `~/.cache/yolo9000`), never in the repository:

    <home>/nltk_data/corpora/wordnet/   WordNet 3.0 dict files + generated `lexnames`, readable by NLTK
    <home>/darknet/                     9k.tree 9k.names 9k.labels coco9k.map inet9k.map ..., every cfg, sample photos
    <home>/cache/                       the parsed WordNet noun graph (rebuilt whenever data.noun changes)
    <home>/labels/                      real label lists from PyPI wheels (timm's ILSVRC-2012 and ImageNet-22k wnids)

Fetching is idempotent: a file already present is never fetched again.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from yolo9000.errors import ReferenceDataError  # noqa: F401  (re-exported)

DARKNET_DATA_FILES = (
    "9k.tree", "9k.names", "9k.labels", "coco9k.map", "inet9k.map", "coco.names",
    "imagenet.labels.list", "imagenet.shortnames.list",
)
DARKNET_CFG_FILES = ("yolo9000.cfg", "yolov2.cfg", "darknet19.cfg", "darknet19_448.cfg", "darknet9000.cfg")
# The package's cfgs made of the layers `DarknetNet` builds (issue 13); setup copies every `*.cfg` it finds and
# requires these. Their names are the Debian package's (resnext101-32x4d.cfg, not resnext101.cfg).
DARKNET_NETWORK_CFGS = tuple(f"{name}.cfg" for name in (
    "yolov2", "yolov2-voc", "yolov2-tiny", "yolov2-tiny-voc", "yolo9000", "darknet", "darknet19", "darknet19_448",
    "darknet9000", "tiny", "extraction", "darknet53", "darknet53_448", "resnet18", "resnet34", "resnet50",
    "resnet101", "resnet152", "resnext50", "resnext101-32x4d", "resnext152-32x4d", "densenet201"))
WORDNET_FILES = ("data.noun", "index.noun", "index.sense", "data.verb", "index.verb", "data.adj", "index.adj",
                 "data.adv", "index.adv", "adj.exc", "adv.exc", "noun.exc", "verb.exc")
WORDNET_PACKAGES = ("wordnet-base", "wordnet-sense-index")

# The 45 lexicographer files of WordNet 3.0 (number, name, syntactic category); NLTK needs this file and Debian
# does not ship it.
LEXNAMES = """adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body
noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive
noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity noun.relation
noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition verb.communication
verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion verb.perception
verb.possession verb.social verb.stative verb.weather adj.ppl""".split()
_LEX_CATEGORY = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}


def data_home() -> Path:
    return Path(os.environ.get("YOLO9000_HOME") or Path.home() / ".cache" / "yolo9000").expanduser()


def darknet_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / "darknet"


def nltk_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / "nltk_data"


def darknet_file(name: str, home: Path | None = None) -> Path:
    """Path of one of darknet's reference files; a clear error when `yolo9000 setup` has not been run."""
    path = darknet_dir(home) / name
    if not path.exists():
        raise ReferenceDataError(f"{path} is missing: run `yolo9000 setup` (or `make setup`) to fetch darknet's files")
    return path


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{_LEX_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES))


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


def _apt_available() -> bool:
    return shutil.which("apt-get") is not None and shutil.which("dpkg-deb") is not None


def _apt_known(package: str) -> bool:
    out = _run(["apt-cache", "policy", package]).stdout
    return "Candidate:" in out and "Candidate: (none)" not in out


def _apt_update_if_unknown(packages: tuple[str, ...], log) -> None:
    if all(_apt_known(p) for p in packages):
        return
    log("apt-get update (package lists do not know " + ", ".join(p for p in packages if not _apt_known(p)) + ")")
    res = _run(["apt-get", "update", "-qq"])
    if res.returncode != 0:
        raise ReferenceDataError(f"`apt-get update` failed:\n{res.stderr.strip()}")


def _wordnet_source_dir(path: Path) -> Path | None:
    """Find the folder holding `data.noun` under a user-given path (a dict dir, an NLTK data dir, a corpus dir)."""
    for cand in (path, path / "corpora" / "wordnet", path / "wordnet", path / "dict"):
        if (cand / "data.noun").exists():
            return cand
    return None


def _copy_wordnet(src: Path, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in WORDNET_FILES:
        if (src / name).exists():
            # Strip CRs: files with CRLF make NLTK silently return None for offsets (wordtree_build.md).
            data = (src / name).read_bytes().replace(b"\r\n", b"\n")
            (tmp / name).write_bytes(data)
    missing = [n for n in ("data.noun", "index.noun", "index.sense") if not (tmp / n).exists()]
    if missing:
        raise ReferenceDataError(f"{src} has no {', '.join(missing)}: not a WordNet 3.0 dict folder")
    (tmp / "lexnames").write_text(lexnames_text())
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)  # whole folder appears at once: an interrupted copy is never mistaken for a complete one


def nltk_has_own_wordnet() -> Path | None:
    """The folder of NLTK's own `wordnet` corpus when a user installed it (nltk.download('wordnet')), else None."""
    try:
        import nltk
        found = nltk.data.find("corpora/wordnet")
    except (LookupError, ImportError):
        return None
    return Path(str(found))


def ensure_wordnet(home: Path, wordnet_dir: Path | None = None, log=print) -> Path:
    """Make WordNet 3.0 readable by NLTK under `<home>/nltk_data`; return the dict folder used."""
    dest = nltk_dir(home) / "corpora" / "wordnet"
    if (dest / "data.noun").exists() and (dest / "lexnames").exists():
        return dest
    if wordnet_dir is not None:
        src = _wordnet_source_dir(Path(wordnet_dir).expanduser())
        if src is None:
            raise ReferenceDataError(f"--wordnet-dir {wordnet_dir}: no data.noun found there (give the folder holding "
                                     "WordNet 3.0's data.noun/index.noun/index.sense, or an NLTK data dir)")
        log(f"WordNet: copying {src}")
        _copy_wordnet(src, dest)
        return dest
    own = nltk_has_own_wordnet()
    if own is not None and own.is_dir() and (own / "data.noun").exists():
        log(f"WordNet: using NLTK's own corpus at {own}")
        return own
    system = Path("/usr/share/wordnet")
    if not (system / "data.noun").exists() or not (system / "index.sense").exists():
        if not _apt_available():
            raise ReferenceDataError(
                "WordNet 3.0 is missing and apt-get is not available. Either run "
                "`python -c \"import nltk; nltk.download('wordnet')\"` on a machine with network, or get WordNet 3.0's "
                "dict folder (data.noun, index.noun, index.sense) and run `yolo9000 setup --wordnet-dir DIR`.")
        _apt_update_if_unknown(WORDNET_PACKAGES, log)
        log("WordNet: apt-get install -y --no-install-recommends " + " ".join(WORDNET_PACKAGES))
        res = _run(["apt-get", "install", "-y", "--no-install-recommends", *WORDNET_PACKAGES])
        if res.returncode != 0:
            raise ReferenceDataError(
                f"apt-get could not install {' '.join(WORDNET_PACKAGES)} (are you root?):\n{res.stderr.strip()[-800:]}\n"
                "Install them yourself (`sudo apt-get install --no-install-recommends wordnet-base "
                "wordnet-sense-index`) or pass `--wordnet-dir DIR` with WordNet 3.0's dict folder.")
    log(f"WordNet: copying {system}")
    _copy_wordnet(system, dest)
    return dest


def _darknet_required() -> tuple[str, ...]:
    return tuple(dict.fromkeys(DARKNET_DATA_FILES + DARKNET_CFG_FILES + DARKNET_NETWORK_CFGS))


def _darknet_complete(dest: Path) -> bool:
    return all((dest / n).exists() for n in _darknet_required())


def darknet_cfgs(home: Path | None = None) -> list[Path]:
    """Every darknet `.cfg` `yolo9000 setup` extracted (all of the package's), sorted by name."""
    return sorted(darknet_dir(home).glob("*.cfg"))


def _copy_darknet_tree(root: Path, dest: Path) -> None:
    """Copy the 9k files, every cfg and the sample photos from a darknet checkout or an extracted package."""
    candidates = [root, root / "data", root / "cfg", root / "usr/share/darknet/data", root / "usr/share/darknet/cfg"]
    found: dict[str, Path] = {}
    for folder in candidates:
        if folder.is_dir():
            for f in folder.iterdir():
                if f.name in DARKNET_DATA_FILES or f.suffix in (".jpg", ".cfg"):
                    found.setdefault(f.name, f)
    missing = [n for n in _darknet_required() if n not in found]
    if missing:
        raise ReferenceDataError(f"{root}: missing darknet files {', '.join(missing)} (expected a darknet checkout "
                                 "with data/ and cfg/ folders)")
    if dest.is_dir():
        # An older setup filled the folder: add what is missing, one file at a time (each appears whole), without
        # removing a folder other processes may be reading.
        for name, f in sorted(found.items()):
            if not (dest / name).exists():
                part = dest / (name + ".partial")
                shutil.copyfile(f, part)
                os.replace(part, dest / name)
        return
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, f in sorted(found.items()):
        shutil.copyfile(f, tmp / name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def ensure_darknet(home: Path, darknet_data: Path | None = None, log=print) -> Path:
    dest = darknet_dir(home)
    if _darknet_complete(dest):
        return dest
    if darknet_data is not None:
        log(f"darknet: copying from {darknet_data}")
        _copy_darknet_tree(Path(darknet_data).expanduser(), dest)
        return dest
    if not _apt_available():
        raise ReferenceDataError(
            "darknet's 9k files are missing and apt-get is not available. Get a darknet checkout "
            "(its data/ and cfg/ folders) and run `yolo9000 setup --darknet-data DIR`.")
    _apt_update_if_unknown(("darknet",), log)
    with tempfile.TemporaryDirectory(prefix="yolo9000-darknet-") as tmp:
        log("darknet: apt-get download darknet (the .deb only; never `apt-get install darknet`)")
        res = subprocess.run(["apt-get", "download", "darknet"], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("darknet_*.deb"))
        if res.returncode != 0 or not debs:
            raise ReferenceDataError(
                f"`apt-get download darknet` failed:\n{res.stderr.strip()[-800:]}\nDownload the darknet .deb "
                "yourself and extract it (`dpkg-deb -x darknet_*.deb DIR`), or use a darknet checkout, then run "
                "`yolo9000 setup --darknet-data DIR`.")
        extracted = Path(tmp) / "x"
        res = _run(["dpkg-deb", "-x", str(debs[0]), str(extracted)])
        if res.returncode != 0:
            raise ReferenceDataError(f"dpkg-deb -x {debs[0].name} failed: {res.stderr.strip()}")
        _copy_darknet_tree(extracted, dest)
    return dest


# ---------------------------------------------------------------------------------------------------- label lists
# Real label lists as users bring them, from a widely used vision package's wheel (timm ships them as package data;
# `timm/data/_info/*.txt`, one wnid per line). Used by the builder's tests and bench (issue 12).
LABEL_LIST_PACKAGE = "timm"
LABEL_LISTS = {"imagenet_synsets.txt": 1000, "imagenet22k_synsets.txt": 21841}  # file -> number of wnids
_LABEL_LIST_DIR = "timm/data/_info"


def labels_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / "labels"


def label_list(name: str, home: Path | None = None) -> Path:
    """Path of a fetched label list (a key of LABEL_LISTS); a clear error when `yolo9000 setup` has not been run."""
    path = labels_dir(home) / name
    if not path.exists():
        raise ReferenceDataError(f"{path} is missing: run `yolo9000 setup` (or `make setup`) to fetch the label lists")
    return path


def _check_label_list(name: str, data: bytes, origin: str) -> None:
    wnids = data.decode("utf-8").split()
    bad = next((w for w in wnids if not (len(w) == 9 and w[0] == "n" and w[1:].isdigit())), None)
    if bad is not None or len(wnids) != LABEL_LISTS[name] or len(set(wnids)) != len(wnids):
        raise ReferenceDataError(f"{origin}: {name} is not {LABEL_LISTS[name]} distinct wnids "
                                 f"(got {len(wnids)}{', e.g. ' + repr(bad) if bad else ''})")


def ensure_label_lists(home: Path, log=print) -> Path:
    """Copy timm's label lists into `<home>/labels`: from an installed timm, else from `pip download --no-deps timm`
    (the wheel only, nothing installed). Idempotent: does nothing when every list is there."""
    dest = labels_dir(home)
    missing = [n for n in LABEL_LISTS if not (dest / n).exists()]
    if not missing:
        return dest
    found: dict[str, bytes] = {}
    spec = importlib.util.find_spec(LABEL_LIST_PACKAGE)
    if spec is not None and spec.origin:
        folder = Path(spec.origin).parent / "data" / "_info"
        found = {n: (folder / n).read_bytes() for n in missing if (folder / n).exists()}
        if len(found) == len(missing):
            log(f"label lists: copying {', '.join(missing)} from the installed {LABEL_LIST_PACKAGE} ({folder})")
    if len(found) < len(missing):
        with tempfile.TemporaryDirectory(prefix="yolo9000-labels-") as tmp:
            log(f"label lists: pip download --no-deps {LABEL_LIST_PACKAGE} (the wheel only, for {', '.join(missing)})")
            res = _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-q",
                        "-d", tmp, LABEL_LIST_PACKAGE])
            wheels = sorted(Path(tmp).glob(f"{LABEL_LIST_PACKAGE}-*.whl"))
            if res.returncode != 0 or not wheels:
                raise ReferenceDataError(
                    f"`pip download --no-deps {LABEL_LIST_PACKAGE}` failed:\n{res.stderr.strip()[-800:]}\n"
                    f"Install {LABEL_LIST_PACKAGE} (`pip install {LABEL_LIST_PACKAGE}`) and run `yolo9000 setup` "
                    "again, "
                    f"or copy {', '.join(missing)} from its {_LABEL_LIST_DIR}/ into {dest}/.")
            with zipfile.ZipFile(wheels[0]) as wheel:
                names = set(wheel.namelist())
                for n in missing:
                    member = f"{_LABEL_LIST_DIR}/{n}"
                    if member not in names:
                        raise ReferenceDataError(f"{wheels[0].name} has no {member}")
                    found[n] = wheel.read(member)
            origin = wheels[0].name
    else:
        origin = f"installed {LABEL_LIST_PACKAGE}"
    for n in missing:
        _check_label_list(n, found[n], origin)
    dest.mkdir(parents=True, exist_ok=True)
    for n in missing:
        tmp_file = dest / (n + ".partial")
        tmp_file.write_bytes(found[n].replace(b"\r\n", b"\n"))
        tmp_file.rename(dest / n)  # appears whole or not at all
    log(f"label lists: {', '.join(f'{n} ({LABEL_LISTS[n]} wnids)' for n in missing)} in {dest}")
    return dest


def ensure_all(home: Path | None = None, wordnet_dir: Path | None = None, darknet_data: Path | None = None,
               log=print) -> Path:
    home = home or data_home()
    home.mkdir(parents=True, exist_ok=True)
    ensure_wordnet(home, wordnet_dir, log)
    ensure_darknet(home, darknet_data, log)
    ensure_label_lists(home, log)
    return home


def wordnet_cache_dir(home: Path | None = None) -> Path:
    """Where `WordNet.load` keeps the parsed noun graph between runs."""
    return (home or data_home()) / "cache"


def wordnet_nltk_root(home: Path | None = None) -> Path | None:
    """The NLTK data dir to put on `nltk.data.path`, or None when NLTK's own corpus should be used."""
    d = nltk_dir(home)
    return d if (d / "corpora" / "wordnet" / "data.noun").exists() else None

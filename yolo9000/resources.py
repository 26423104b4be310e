"""The files shipped inside the package: model/training configs (`yolo9000/configs`) and dataset descriptors
(`yolo9000/datasets`), found through `importlib.resources`, so a wheel installed anywhere finds them by name.

    config_file("yolo9000")                 -> <package>/configs/yolo9000.yaml
    config_file("stages/3_yolo9000_joint")  -> <package>/configs/stages/3_yolo9000_joint.yaml
    dataset_file("shapes")                  -> <package>/datasets/shapes.yaml
    config_file("my/run/config.yaml")       -> that path (an existing file always wins over a name)
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from yolo9000.errors import ConfigError, DescriptorError

__all__ = ["config_file", "config_names", "dataset_file", "dataset_names"]


def _folder(kind: str) -> Path:
    # A plain Path: the package is installed as files (wheel, editable or a checkout), and configs name their
    # `base:` by a path relative to themselves.
    return Path(str(files("yolo9000") / kind))


def _names(kind: str) -> list[str]:
    root = _folder(kind)
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def config_names() -> list[str]:
    """The shipped configs, e.g. ['darknet19', ..., 'stages/3_yolo9000_joint', 'tiny', 'yolo9000', 'yolov2']."""
    return _names("configs")


def dataset_names() -> list[str]:
    """The shipped dataset descriptors, e.g. ['coco', 'coco9k', ..., 'shapes', 'voc']."""
    return _names("datasets")


def _find(spec: str | Path, kind: str, error: type[Exception], what: str) -> Path:
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    shipped = _folder(kind) / (path if path.suffix == ".yaml" else path.with_name(path.name + ".yaml"))
    if path.is_absolute() or not shipped.is_file():
        raise error(f"{what} {spec} does not exist (give a path, or one of: {', '.join(_names(kind))})")
    return shipped


def config_file(spec: str | Path) -> Path:
    """A config path, or the name of a shipped config (`yolo9000`, `tiny`, `stages/3_yolo9000_joint`).

    Raises:
        ConfigError: neither a file nor a shipped name; the message lists the names.
    """
    return _find(spec, "configs", ConfigError, "config file")


def dataset_file(spec: str | Path) -> Path:
    """A dataset descriptor path, or the name of a shipped one (`shapes`, `coco`, `combine9k`).

    Raises:
        DescriptorError: neither a file nor a shipped name; the message lists the names.
    """
    return _find(spec, "datasets", DescriptorError, "dataset descriptor")

"""Configs are frozen dataclasses; YAML is only how they are stored (STYLE A.2.7).

A config file has up to four sections, `model`, `loss`, `data`, `train`, each mapping onto one dataclass below;
a missing section takes the defaults. An unknown key, or a value of the wrong type, is an error naming the key.
`load_config(path, overrides=["train.lr=0.01", ...])` applies command-line overrides with the same checks.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from yolo9000.errors import ConfigError  # noqa: F401  (re-exported)
from yolo9000.yaml_io import parse_yaml, read_yaml


# ----------------------------------------------------------------------------------------------------- sections
class _Section:
    """Validation shared by the sections: every Literal field holds one of its values, then the section's ranges.

    It runs in `__post_init__`, so a config built in Python is checked like one read from YAML, once, here;
    the code that uses a value does not check it again.
    """

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            hint, value = hints[f.name], getattr(self, f.name)
            if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
                choices = ", ".join(repr(a) for a in typing.get_args(hint))
                raise ConfigError(f"{self.section}.{f.name}: {value!r} is not one of {choices}")
        self.check()

    def check(self) -> None:
        """Ranges and relations between fields; raise ConfigError naming `section.key`."""

    def _require(self, ok: bool, key: str, rule: str) -> None:
        if not ok:
            raise ConfigError(f"{self.section}.{key}: {getattr(self, key)!r} {rule}")


@dataclass(frozen=True)
class ModelConfig(_Section):
    """Network architecture (paper sections 2-4; darknet `yolov2.cfg`, `yolo9000.cfg`, `darknet19.cfg`).

    A model is a trunk plus a head (`yolo9000.builder`): `kind` darknet19 is the classifier head, yolov2 and yolo9000
    the region head; `tree` makes the classes WordTree nodes (YOLO9000's head), and then the class count is the
    tree's, so `num_classes` is derived from it (`yolo9000.builder.resolve_model_config`).
    """

    section: ClassVar[str] = "model"

    kind: Literal["darknet19", "yolov2", "yolo9000"] = "yolov2"
    num_classes: int = 80                 # flat classes; with `tree` set, derived: the tree's node count
    tree: str | None = None               # path of a .tree/.json, "9k" for darknet's, or None for a flat model
    trunk: str = "darknet19"              # "darknet19" (with width, depth) or "torchvision:<name>", e.g. resnet18
    trunk_weights: str | None = None      # a torchvision trunk's state_dict file (nothing is downloaded)
    width: float = 1.0                    # channel multiplier (1.0 = the paper's network; tiny uses less)
    depth: Literal["full", "tiny"] = "full"
    anchors: tuple[tuple[float, float], ...] = (
        (0.57273, 0.677385), (1.87446, 2.06253), (3.33843, 5.47434), (7.88282, 3.52778), (9.77052, 9.16828))
    passthrough: bool = True              # YOLOv2's reorg route from the 26x26 features
    head_convs: int = 3                   # extra 3x3x1024 convs before the prediction (yolov2: 3, yolo9000: 0)
    input_size: int = 416                 # default square input; any multiple of 32 works
    stride: int = 32                      # 16: the darknet19 trunk's last max-pool keeps the size (yolov2-tiny)

    def check(self) -> None:
        self._require(self.stride in (16, 32), "stride", "must be 32 or 16")
        if self.stride == 16:
            self._require(self.trunk == "darknet19" and self.head == "region", "stride",
                          "16 needs the darknet19 trunk and a region head (its last max-pool keeps the size)")
            self._require(not self.passthrough, "passthrough",
                          "must be false with stride 16 (it folds stride-16 features onto a stride-32 grid)")
        self._require(self.width > 0, "width", "must be positive")
        self._require(self.tree is not None or self.num_classes >= 1, "num_classes", "must be at least 1")
        self._require(self.input_size > 0 and self.input_size % self.stride == 0, "input_size",
                      f"is not a positive multiple of {self.stride}")
        self._require(self.head_convs >= 0, "head_convs", "must be >= 0")
        if self.head == "region":
            self._require(len(self.anchors) > 0, "anchors", "is empty; a detector needs at least one anchor")
            self._require(all(w > 0 and h > 0 for w, h in self.anchors), "anchors",
                          "must be positive (w, h) pairs in grid units")

    @property
    def head(self) -> Literal["classifier", "region"]:
        """The head `kind` names: Darknet-19's classifier (image logits) or the YOLOv2 region head."""
        return "classifier" if self.kind == "darknet19" else "region"


@dataclass(frozen=True)
class LossConfig(_Section):
    """Region loss weights and rules (darknet_yolo9000.md section 4)."""

    section: ClassVar[str] = "loss"

    coord: float = 1.0
    obj: float = 5.0
    noobj: float = 1.0
    cls: float = 1.0
    prior: float = 0.01                   # pull to the anchor at the cell centre while seen < prior_images
    prior_images: int = 12800
    ignore_iou: float = 0.6               # predictions overlapping any GT above this get no no-object penalty
    rescore: bool = True                  # objectness target = IoU with the truth (else 1)
    classification_objectness: Literal["paper", "darknet"] = "paper"  # paper: push up to .3; darknet: no gradient
    classification_min_iou: float = 0.3
    # No-object term on the other predictions of a classification image: darknet (and issue 4) apply it; the paper
    # says "when it sees a classification image we only backpropagate classification loss" (and objectness at the
    # chosen box), which is `false`.
    classification_noobj: bool = True
    # Which prediction of a classification image gets the class term: `label` is the paper's and darknet's (highest
    # objectness x P(label)); `objectness` picks the highest objectness alone, the box the detector would report,
    # so the label cannot steer which prediction learns it (see README, "The demo").
    classification_match: Literal["label", "objectness"] = "label"
    max_boxes: int | None = None          # None: keep every box; an int caps per image and logs the count dropped

    def check(self) -> None:
        for key in ("coord", "obj", "noobj", "cls", "prior", "prior_images"):
            self._require(getattr(self, key) >= 0, key, "must be >= 0")
        for key in ("ignore_iou", "classification_min_iou"):
            self._require(0 <= getattr(self, key) <= 1, key, "must lie in [0, 1]")
        self._require(self.max_boxes is None or self.max_boxes >= 1, "max_boxes", "must be >= 1 (or null: no cap)")


@dataclass(frozen=True)
class DataConfig(_Section):
    """What to train and evaluate on, and how batches are formed (darknet_yolo9000.md section 8)."""

    section: ClassVar[str] = "data"

    dataset: str | None = None            # datasets/*.yaml descriptor
    det_per_batch: int = 2                # detection images per batch
    cls_per_batch: int = 8                # classification images per batch (2 + 8: the paper's ImageNet:COCO 4:1)
    mixing: Literal["quota", "uniform"] = "quota"
    multiscale: tuple[int, ...] = (320, 352, 384, 416, 448, 480, 512, 544, 576, 608)
    multiscale_period: int = 10           # batches between size changes
    eval_size: int = 416
    jitter: float = 0.2
    hue: float = 0.1
    saturation: float = 0.75
    exposure: float = 0.75
    flip: bool = True
    min_box_size: float = 2.0             # boxes smaller than this (pixels, after augmentation) are dropped
    workers: int = 2
    # cpu: loader workers decode and augment; device: workers hand over JPEG bytes and drawn augmentations, and
    # decoding (nvjpeg on CUDA) and augmentation run batched on the training device (data/device.py).
    decode: Literal["cpu", "device"] = "cpu"
    cache: bool = False                   # keep decoded training images in memory (per loader process): small data
    class_map: str | None = None          # darknet .map, or a YAML of category -> wnid

    def check(self) -> None:
        for key in ("det_per_batch", "cls_per_batch", "workers", "min_box_size", "hue", "saturation", "exposure"):
            self._require(getattr(self, key) >= 0, key, "must be >= 0")
        self._require(self.det_per_batch + self.cls_per_batch >= 1, "det_per_batch",
                      f"+ cls_per_batch {self.cls_per_batch} must be >= 1 (images per batch)")
        self._require(len(self.multiscale) > 0 and all(s > 0 for s in self.multiscale), "multiscale",
                      "must be a non-empty list of positive sizes")
        self._require(self.multiscale_period >= 1, "multiscale_period", "must be >= 1")
        self._require(self.eval_size > 0, "eval_size", "must be positive")
        self._require(0 <= self.jitter < 1, "jitter", "must lie in [0, 1)")
        self._require(not (self.cache and self.decode == "device"), "cache",
                      "keeps decoded images, but data.decode: device decodes them on the device; use one")


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Optimisation and run bookkeeping (darknet [net] sections)."""

    section: ClassVar[str] = "train"

    epochs: int = 1
    max_steps: int | None = None
    optimizer: Literal["sgd", "adamw"] = "sgd"  # sgd: darknet's; adamw (momentum = beta1) for short CPU runs
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0005
    burn_in: int = 1000
    schedule: Literal["steps", "poly", "cosine", "constant"] = "steps"
    final_lr: float = 0.0                 # cosine: the factor it decays to at the last step
    steps: tuple[int, ...] = ()
    scales: tuple[float, ...] = ()
    power: float = 4.0
    subdivisions: int = 1                 # gradient accumulation (darknet's subdivisions)
    clip_grad_norm: float | None = None
    device: str = "auto"                  # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"  # auto: bf16 where the CPU/GPU has it, CUDA else fp16
    channels_last: bool = True
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    out: str = "runs/train"
    init: str | None = None               # checkpoint or darknet .weights to start from
    max_seconds: float | None = None      # wall-clock budget: stop (with a final checkpoint) once exceeded
    progress: bool = True                 # tqdm bar with loss and images/s (rank 0 only)
    init_mode: Literal["auto", "full", "trunk"] = "auto"  # auto: whole model if it fits, else the trunk only
    freeze_bn: bool = False               # batch norm in eval mode (fixed statistics) for tiny per-device batches
    tensorboard: bool = True              # also write TensorBoard events under <run>/tb
    ema: float | None = None              # decay of a moving average of the weights, which the checkpoint serves

    def check(self) -> None:
        for key in ("epochs", "subdivisions", "log_every"):
            self._require(getattr(self, key) >= 1, key, "must be >= 1")
        for key in ("lr", "weight_decay", "burn_in", "final_lr", "checkpoint_every"):
            self._require(getattr(self, key) >= 0, key, "must be >= 0")
        for key in ("max_steps", "max_seconds"):
            self._require(getattr(self, key) is None or getattr(self, key) >= 0, key, "must be >= 0 (or null)")
        self._require(0 <= self.momentum < 1, "momentum", "must lie in [0, 1)")
        self._require(self.power > 0, "power", "must be > 0")
        self._require(self.ema is None or 0 < self.ema < 1, "ema", "must lie in (0, 1) (or null: no average)")
        self._require(self.clip_grad_norm is None or self.clip_grad_norm > 0, "clip_grad_norm",
                      "must be > 0 (or null: no clipping)")
        self._require(self.schedule != "steps" or len(self.steps) == len(self.scales), "steps",
                      f"has {len(self.steps)} entries but train.scales has {len(self.scales)}")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # Relations across sections: input sizes must give whole grid cells.
        stride = self.model.stride
        bad = [s for s in (*self.data.multiscale, self.data.eval_size) if s % stride]
        if bad:
            key = "data.eval_size" if bad[-1] == self.data.eval_size and bad[-1] not in self.data.multiscale \
                else "data.multiscale"
            raise ConfigError(f"{key}: {bad[0]} is not a multiple of model.stride {stride}")


# ----------------------------------------------------------------------------------------------------- parsing
def _convert(value: Any, hint: Any, key: str) -> Any:
    """Check and convert a YAML value to the annotated type, raising ConfigError that names the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {hint}")
    if origin is Literal:
        if isinstance(value, bool) and ("on" if value else "off") in args:
            value = "on" if value else "off"   # YAML 1.1 reads a bare `off` (e.g. amp: off) as false
        return value                           # the section's __post_init__ checks it is one of `args`
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{key}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type, data: Any, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and bad values raise ConfigError naming the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(f"unknown config key {where}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {k: _convert(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(config: Any) -> dict:
    """Plain-YAML-friendly dict (tuples become lists)."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(config))


def _set_path(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {dotted}: {p} is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str] | None) -> dict:
    """`["train.lr=0.01", "data.multiscale=[320,416]"]` -> nested dict; values parsed as YAML."""
    out: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=0.01")
        key, raw = item.split("=", 1)
        _set_path(out, key.strip(), parse_yaml(raw, f"--set {item}", ConfigError, show_line=False))
    return out


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_with_base(path: Path, chain: tuple[Path, ...]) -> dict:
    """A config file's sections, laid over its `base:` file's (a path relative to it) when it names one."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = read_yaml(path, ConfigError, "a YAML config") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = (path.parent / str(base)).resolve()
    chain = chain + (path.resolve(),)
    if base_path in chain:
        raise ConfigError(f"{path}: base {base} includes itself")
    if not base_path.exists():
        raise ConfigError(f"{path}: base file {base_path} does not exist")
    return _merge(_read_with_base(base_path, chain), data)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (sections model/loss/data/train) and apply `key=value` overrides.

    `path` is a file or the name of a config shipped in `yolo9000/configs` (`yolo9000`, `tiny`,
    `stages/3_yolo9000_joint`).

    A file may start from another with `base: other.yaml` (relative to it): its sections are merged key by key
    over the base's, so a training-stage config names only what it adds to a model config.
    """
    data: dict = {}
    if path is not None:
        from yolo9000.resources import config_file
        data = _read_with_base(config_file(path), ())
    data = _merge(data, parse_overrides(overrides))
    return from_dict(Config, data)


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))

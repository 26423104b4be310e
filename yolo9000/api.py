"""The Python API: load a detector, run it on images, ask hierarchy questions (paper section 4).

    from yolo9000.api import Detector
    detector = Detector.from_run("runs/demo")                      # or Detector.from_config("configs/yolo9000.yaml",
    detections = detector("photo.jpg")                             #        weights="yolo9000.weights")
    for d in detections:
        print(d.name, d.score, " < ".join(f"{s.name} {s.prob:.2f}" for s in reversed(d.path)))
    detector.subtree_probability(detections, "dog")                # P(box is a dog, any dog) per box
    detector.in_subtree(detections, "animal")                      # the detections decided as some animal

A detection's `path` runs from the root to the decided node with P(node | parent) at each step; their product is
`prob`, and `score = objectness * prob`.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from wordtree.io import load_tree
from wordtree.ops import DECIDE_MODES, subtree_prob
from yolo9000.builder import build_model, build_postprocess
from yolo9000.config import Config, ConfigError, ModelConfig, from_dict, load_config
from yolo9000.data.images import ImageLoadError, _pil_to_rgb, load_image
from yolo9000.data.transforms import letterbox
from yolo9000.device import select_device
from yolo9000.errors import AmbiguousNodeError, CheckpointError, NodeError  # noqa: F401  (re-exported)
from yolo9000.model.load import load_weights
from yolo9000.postprocess import NMS_GROUPINGS, Detection, PathStep, PostProcess
from yolo9000.reference import darknet_file

__all__ = ["AmbiguousNodeError", "Detection", "Detector", "DetectorOptions", "ImageInput", "ImageLoadError", "PathStep",
           "NonFiniteOutputWarning", "RandomWeightsWarning", "to_uint8_image"]

ImageInput = str | Path | Image.Image | Tensor | np.ndarray
CONFIG_NAME = "config.yaml"
CHECKPOINT_NAME = "last.pt"


class RandomWeightsWarning(UserWarning):
    """The detector runs with freshly initialised weights: its detections are meaningless."""


class NonFiniteOutputWarning(UserWarning):
    """The network's output for one image holds NaN or infinity (weights that overflow on it): that image has no
    meaningful detections. `index` is the image's position in the `batch()` call."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


def unit_interval(value: float, name: str) -> None:
    if not 0 <= value <= 1:
        raise ConfigError(f"{name}: {value} is not in [0, 1]")


def positive_multiple_of_16(value: int, name: str) -> None:
    # 16: the finest model stride (`model.stride`); the Detector checks the size against its model's own.
    if value <= 0 or value % 16:
        raise ConfigError(f"{name}: {value} is not a positive multiple of 16 (the model's stride: 16 or 32)")


def check_size_fits(size: int, config: ModelConfig, name: str = "--size") -> None:
    """ConfigError when `size` is no whole number of the model's grid cells."""
    if size % config.stride:
        raise ConfigError(f"{name}: {size} is not a multiple of the model's stride {config.stride}")


def at_least(low: int) -> Callable[[int, str], None]:
    def check(value: int, name: str) -> None:
        if value < low:
            raise ConfigError(f"{name}: {value} must be >= {low}")
    return check


def _option(default: Any, flag: str, help: str, check: Callable[[Any, str], None] | None = None,
            choices: Sequence[str] | None = None, unset: str | None = None) -> Any:
    """A DetectorOptions field with its command-line flag, help, and the check both the CLI and the API apply;
    `unset` says what a None default means."""
    return field(default=default, metadata={"flag": flag, "help": help, "check": check, "choices": choices,
                                            "unset": unset})


@dataclass(frozen=True)
class DetectorOptions:
    """Inference options.

    Attributes:
        conf_threshold: minimum score = objectness * P(decided node) (darknet `detect`: .25).
        nms_iou: NMS IoU (darknet: .45).
        nms_by: which boxes compete in NMS (`yolo9000.postprocess.DecisionScorer`): "root" (default: decided nodes
            under the same tree root, so a "pentagon" and a "polygon" box on one figure are one object; flat models:
            per class), "label" (darknet's per-class NMS) or "all".
        hier_threshold: the tree decision walk's threshold (darknet `-hier`: .5).
        mode: "paper" (multiply conditionals while above the threshold) or "darknet" (darknet's exact walk).
        max_depth: cap every decision at this depth (0 = roots); None for no cap.
        node: decide inside this node's subtree (a wnid, name or index): the walk starts at it with P(. | node), and
            score = objectness x P(node) x P(decided | node); None: the whole tree. Tree models only.
        leaf: walk down to a leaf whatever `hier_threshold` (the most specific answer).
        size: letterbox input size (a multiple of the model's stride); None: the model config's input_size.
        max_detections: per image.
        batch_size: images per forward pass in `Detector.batch`.
        amp: "bf16" runs the network under bf16 autocast (CPU or CUDA); "off" in float32. Decoding and the tree
            softmax always run in float32.
        channels_last: run the network in channels_last memory format (faster convolutions on CPU and GPU).
        compat: "off" (the defaults above) or "darknet": darknet's own preprocessing and detection rules
            (`yolo9000.compat_darknet`: stb decoding, `letterbox_image`, every class over `conf_threshold`,
            `do_nms_sort` at `nms_iou`, darknet's walk at `hier_threshold`; boxes unclipped, darknet's order, no cap).
    """

    # Each option carries its command-line flag and help; `yolo9000.commands.options` generates the flags of
    # `detect`, `query` and `eval` from these fields, so the vocabulary is written once, here.
    conf_threshold: float = _option(0.25, "--conf", "score threshold: objectness x P(decided node)", unit_interval)
    nms_iou: float = _option(0.45, "--nms", "NMS IoU threshold", unit_interval)
    nms_by: str = _option("root", "--nms-by", "which boxes compete in NMS: decided nodes under one tree root, the "
                          "same node (darknet's per-class NMS), or all", choices=NMS_GROUPINGS)
    hier_threshold: float = _option(0.5, "--hier", "tree decision threshold (darknet -hier; lower = more specific)",
                                    unit_interval)
    mode: str = _option("paper", "--mode", "tree decision walk: the paper's product of conditionals, or darknet's "
                        "exact rule", choices=DECIDE_MODES)
    max_depth: int | None = _option(None, "--depth", "decide no deeper than this tree depth (0 = roots)",
                                    at_least(0), unset="no cap")
    node: str | None = _option(None, "--node", "decide inside this node's subtree (wnid, name or index): the walk "
                               "starts there with P(.|node)", unset="the whole tree")
    leaf: bool = _option(False, "--leaf", "walk to a leaf whatever --hier (the most specific answer)")
    size: int | None = _option(None, "--size", "input size, a multiple of the model's stride (32, or 16)",
                               positive_multiple_of_16,
                               unset="the config's")
    max_detections: int = _option(100, "--max-detections", "detections kept per image", at_least(1))
    batch_size: int = _option(8, "--batch", "images per forward pass", at_least(1))
    amp: str = _option("off", "--amp", "bf16 autocast for the network", choices=("off", "bf16"))
    compat: str = _option("off", "--compat", "darknet: darknet's own preprocessing, detection rules and NMS "
                          "(yolo9000.compat_darknet)", choices=("off", "darknet"))
    channels_last: bool = True

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, check, choices = getattr(self, f.name), f.metadata.get("check"), f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(f"{f.name}: {value!r} is not one of {', '.join(map(repr, choices))}")
            if check is not None and value is not None:
                check(value, f.name)
        if self.compat == "darknet":
            # darknet's walk has no leaf mode or depth cap: refuse them rather than ignore them. (--node stays: query
            # reports P(subtree) of darknet's detections with it.)
            unsupported = [flag for flag, on in (("--leaf", self.leaf), ("--depth", self.max_depth is not None)) if on]
            if unsupported:
                raise ConfigError(f"compat darknet: {', '.join(unsupported)} has no darknet equivalent; "
                                  "drop it or use --compat off")


def to_uint8_image(image: ImageInput) -> Tensor:
    """Any supported image input as UInt8[3, H, W] RGB.

    Args:
        image: a file path; a PIL image (any mode); a UInt8[3, H, W] tensor; a float [3, H, W] tensor in 0..1;
            a UInt8 numpy array [H, W, 3] (RGB) or [H, W].
    Raises:
        ImageLoadError: the file cannot be read (names it).
        ValueError: a tensor or array of an unsupported shape or dtype.
    """
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return torch.from_numpy(np.asarray(_pil_to_rgb(image)).copy()).permute(2, 0, 1).contiguous()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"numpy image: expected UInt8 [H, W, 3] or [H, W], got {image.dtype} {image.shape}")
        array = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
        return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"tensor image: expected [3, H, W] RGB, got shape {tuple(image.shape)}")
        if image.dtype == torch.uint8:
            return image.detach().cpu()
        if image.is_floating_point():
            return (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        raise ValueError(f"tensor image: expected uint8 or float in 0..1, got {image.dtype}")
    raise ValueError(f"unsupported image input of type {type(image).__name__} (path, PIL image, tensor or array)")


def _flat_names(num_classes: int, names: Sequence[str] | str | Path | None) -> list[str] | None:
    """Class names of a flat model: given, read from a file, COCO's for an 80-class model, else None."""
    if names is not None:
        if isinstance(names, (str, Path)):
            if not Path(names).is_file():
                raise ConfigError(f"names file {names} does not exist (one class name per line)")
            names = [ln.strip() for ln in Path(names).read_text().splitlines() if ln.strip()]
        names = list(names)
        if len(names) != num_classes:
            raise ConfigError(f"names: {len(names)} names for a model with {num_classes} classes")
        return names
    if num_classes == 80:
        try:
            coco = [ln.strip() for ln in darknet_file("coco.names").read_text().splitlines() if ln.strip()]
        except (FileNotFoundError, OSError):
            return None
        return coco if len(coco) == 80 else None
    return None


class Detector:
    """A detector ready for inference: model in eval mode on its device, tree, names and options.

    Args:
        model: a YOLODetector (raw output Float[B, A, 5+N, H, W]).
        config: the ModelConfig it was built from.
        postprocess: its `PostProcess` (`yolo9000.builder.build_postprocess`); moved to `device` here.
        names: class names of a flat model (default "class<k>").
        device: "auto", "cpu", "cuda", ...
        random_weights: warn that detections are meaningless (once, at construction).
        **options: DetectorOptions fields.
    """

    def __init__(self, model: torch.nn.Module, config: ModelConfig, postprocess: PostProcess,
                 names: Sequence[str] | None = None, device: str | torch.device = "auto",
                 random_weights: bool = False, **options: Any) -> None:
        if config.head == "classifier":
            raise ConfigError("model.kind: darknet19 is a classifier; the Detector needs a yolov2 or yolo9000 model")
        if options.get("size") is None:
            options["size"] = config.input_size
        self.options = DetectorOptions(**options)
        check_size_fits(self.options.size, config)
        self.config = config
        self.device = select_device(device, flag="--device")
        self.tree = load_tree(config.tree)                                # names, paths, queries (CPU)
        self.postprocess = postprocess.to(self.device)
        self.names = list(names) if names is not None else None
        self.random_weights = random_weights
        model = model.eval().to(self.device)
        if self.options.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        if random_weights:
            warnings.warn("the detector has random weights (no --weights / checkpoint given): its boxes and classes "
                          "are meaningless; use it to check the pipeline only", RandomWeightsWarning, stacklevel=2)

    # ------------------------------------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, config: str | Path | Config | ModelConfig, weights: str | Path | None = None,
                    device: str | torch.device = "auto", overrides: Sequence[str] | None = None,
                    names: Sequence[str] | str | Path | None = None, **options: Any) -> Detector:
        """Build the model a config describes and load weights into it.

        Args:
            config: a YAML config path, a darknet `.cfg` path, a Config or a ModelConfig.
            weights: our checkpoint or a darknet `.weights`; None leaves random weights (with a warning).
            device: "auto" (CUDA if present), "cpu", "cuda", ...
            overrides: `key=value` overrides for a YAML config (e.g. "model.tree=my.tree").
            names: class names (list or `.names` file) of a flat model; default COCO's for 80 classes.
            **options: DetectorOptions fields (conf_threshold, nms_iou, hier_threshold, mode, max_depth, size, ...).
        """
        model_cfg = _model_config(config, overrides)
        model = build_model(model_cfg)
        if weights is not None:
            load_weights(model, weights)
        return cls._assemble(model, model_cfg, names, device, weights is None, options)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str | torch.device = "auto", checkpoint: str = CHECKPOINT_NAME,
                 names: Sequence[str] | str | Path | None = None, **options: Any) -> Detector:
        """Load a training run: `<run>/config.yaml` (or the checkpoint's own config) and `<run>/last.pt`.

        A relative tree path in the config that does not exist from the current directory is looked up in the run
        directory, so a run directory can be moved.
        """
        from yolo9000.checkpoint import load_checkpoint

        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise CheckpointError(f"run directory {run_dir} does not exist")
        weights = run_dir / checkpoint
        if not weights.exists():
            raise CheckpointError(f"{run_dir}: no {checkpoint} checkpoint (has this run saved one yet?)")
        config_path = run_dir / CONFIG_NAME
        if config_path.exists():
            model_cfg = load_config(config_path).model
        else:
            saved = load_checkpoint(weights).get("config")
            if not isinstance(saved, dict):
                raise ConfigError(f"{run_dir}: neither {CONFIG_NAME} nor a config inside {checkpoint}")
            model_cfg = from_dict(Config, saved).model
        if model_cfg.tree not in (None, "9k") and not Path(model_cfg.tree).expanduser().exists():
            moved = run_dir / Path(model_cfg.tree).name
            if moved.exists():
                model_cfg = dataclasses.replace(model_cfg, tree=str(moved))
        model = build_model(model_cfg)
        load_weights(model, weights)
        return cls._assemble(model, model_cfg, names, device, False, options)

    @classmethod
    def _assemble(cls, model: torch.nn.Module, cfg: ModelConfig, names: Any, device: Any, random_weights: bool,
                  options: dict) -> Detector:
        flat_names = None if cfg.tree is not None else _flat_names(model.num_classes, names)
        return cls(model, cfg, build_postprocess(cfg), flat_names, device, random_weights, **options)

    # ------------------------------------------------------------------------------------------- inference
    def with_options(self, **options: Any) -> Detector:
        """A detector sharing this one's model, with some options changed (no reload, no new warning)."""
        new = object.__new__(Detector)
        new.__dict__.update(self.__dict__)
        if "size" in options and options["size"] is None:
            options["size"] = self.config.input_size
        new.options = dataclasses.replace(self.options, **options)
        check_size_fits(new.options.size, self.config)
        return new

    @property
    def size(self) -> int:
        """The letterbox input size S."""
        return self.options.size

    def preprocess(self, images: Sequence[ImageInput]) -> tuple[Tensor, Tensor, Tensor]:
        """Letterbox images into one batch.

        Returns:
            batch Float[B, 3, S, S] RGB 0..1, letterbox Float[B, 3] (scale, pad_x, pad_y), orig_sizes Long[B, 2].
        """
        size = self.size
        batch, boxes, sizes = [], [], []
        for image in images:
            pixels = to_uint8_image(image)
            boxed, _, lb = letterbox(pixels, None, size)
            batch.append(boxed)
            boxes.append(lb)
            sizes.append(tuple(pixels.shape[-2:]))
        if not batch:
            return (torch.zeros(0, 3, size, size), torch.zeros(0, 3), torch.zeros(0, 2, dtype=torch.long))
        return (torch.stack(batch).float().div_(255), torch.tensor(boxes, dtype=torch.float32),
                torch.tensor(sizes, dtype=torch.long))

    @torch.inference_mode()
    def forward_raw(self, batch: Tensor) -> Tensor:
        """The network's raw output Float[B, A, 5+N, H, W] (float32) for a preprocessed batch."""
        x = batch.to(self.device, non_blocking=True)
        if self.options.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.options.amp == "bf16":
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                return self.model(x).float()
        return self.model(x).float()

    def _darknet_detections(self, image: ImageInput) -> list[Detection]:
        """One image through darknet's pipeline (`compat="darknet"`, yolo9000.compat_darknet)."""
        from yolo9000 import compat_darknet as dn

        if isinstance(image, (str, Path)):
            pixels = dn.load_image(image)
        else:
            pixels = (to_uint8_image(image).numpy().astype(np.float64) / 255.0).astype(np.float32)
        size, o = self.size, self.options
        raw = self.forward_raw(torch.from_numpy(dn.letterbox_image(pixels, size, size))[None])[0].cpu()
        activated = dn.region_activations(raw, self.tree)
        height, width = pixels.shape[1:]
        found = dn.detections_from_activations(activated, self.postprocess.anchors.cpu(), width, height, size, size,
                                               o.conf_threshold, o.hier_threshold, o.nms_iou, self.tree)
        return dn.to_detections(found, activated, width, height, self.tree, self.names)

    def batch(self, images: Iterable[ImageInput]) -> list[list[Detection]]:
        """Detections for each image (one list per image, best score first), `batch_size` images per pass.
        With `compat="darknet"`: darknet's detections, one image at a time, in darknet's order."""
        images = list(images)
        if self.options.compat == "darknet":
            return [self._darknet_detections(image) for image in images]
        out: list[list[Detection]] = []
        step = self.options.batch_size
        o = self.options
        if o.node is not None and self.tree is None:
            raise ConfigError(f"node {o.node!r}: deciding inside a subtree needs a tree model; this one is flat")
        subtree = None if o.node is None else self.resolve_node(o.node)
        for start in range(0, len(images), step):
            batch, lb, sizes = self.preprocess(images[start:start + step])
            raw = self.forward_raw(batch)
            for i in (~torch.isfinite(raw.flatten(1)).all(dim=1)).nonzero().flatten().tolist():
                warnings.warn(NonFiniteOutputWarning(f"image {start + i}: the network output holds NaN or infinity "
                                                     "(weights that overflow on it): no meaningful detections",
                                                     start + i), stacklevel=2)
            # Postprocess outside inference mode so the detections' tensors (`probs`) are ordinary tensors.
            with torch.no_grad():
                out.extend(self.postprocess.detections(
                    raw, self.names, conf_threshold=o.conf_threshold, nms_iou=o.nms_iou, nms_by=o.nms_by,
                    hier_threshold=o.hier_threshold, mode=o.mode, max_depth=o.max_depth, start=subtree, leaf=o.leaf,
                    max_detections=o.max_detections, letterbox=lb.to(self.device), orig_sizes=sizes.to(self.device)))
        return out

    def __call__(self, image: ImageInput) -> list[Detection]:
        """Detections of one image, best score first."""
        return self.batch([image])[0]

    # ------------------------------------------------------------------------------------------- queries
    def resolve_node(self, node: int | str) -> int:
        """Node index of a wnid, a name or an index (a flat model: a class index or name).

        Raises:
            AmbiguousNodeError: a name shared by several nodes (lists them with their paths).
            KeyError: no such node (`wordtree.tree.NodeError` for a tree).
        """
        if self.tree is None:
            if isinstance(node, int) or str(node).isdigit():
                index = int(node)
                if not 0 <= index < self.model.num_classes:
                    raise NodeError(f"class {index} out of range 0..{self.model.num_classes - 1}")
                return index
            names = [n.lower() for n in (self.names or [])]
            if str(node).lower() not in names:
                raise NodeError(f"no class named {node!r}")
            return names.index(str(node).lower())
        return self.tree.resolve_one(node)

    def _detections(self, image_or_detections: ImageInput | Sequence[Detection]) -> list[Detection]:
        if isinstance(image_or_detections, (list, tuple)) and all(isinstance(d, Detection)
                                                                 for d in image_or_detections):
            return list(image_or_detections)
        return self(image_or_detections)

    def subtree_probability(self, image_or_detections: ImageInput | Sequence[Detection],
                            node: int | str) -> list[float]:
        """P(box is `node` or any of its descendants) for each detection: objectness * P(node).

        P(node) is the sum of the absolute probabilities of the node's leaves (`wordtree.ops.subtree_prob`), which
        for the tree's own softmax equals the node's absolute probability. A flat model: objectness * P(class).

        Args:
            image_or_detections: an image (any ImageInput) or the detections already computed for it.
            node: wnid, name or index.
        Returns:
            One probability per detection, in the detections' order.
        """
        detections = self._detections(image_or_detections)
        index = self.resolve_node(node)
        if not detections:
            return []
        probs = torch.stack([d.probs for d in detections])
        objectness = torch.tensor([d.objectness for d in detections], dtype=probs.dtype)
        if self.tree is None:
            return (objectness * probs[:, index]).tolist()
        return (objectness * subtree_prob(probs, self.tree, index)).tolist()

    def in_subtree(self, image_or_detections: ImageInput | Sequence[Detection], node: int | str,
                   min_prob: float | None = None) -> list[Detection]:
        """The detections of `node`'s subtree ("all animals").

        Args:
            image_or_detections: an image or its detections.
            node: wnid, name or index.
            min_prob: None: detections whose decided node is `node` or a descendant. A number: instead, every
                detection whose subtree probability (objectness * P(node)) is at least this, which also finds
                boxes decided at a coarser level than `node`.
        """
        detections = self._detections(image_or_detections)
        index = self.resolve_node(node)
        if min_prob is not None:
            probs = self.subtree_probability(detections, index)
            return [d for d, p in zip(detections, probs) if p >= min_prob]
        if self.tree is None:
            return [d for d in detections if d.label == index]
        return [d for d in detections if any(step.node == index for step in d.path)]

    def describe(self) -> dict[str, Any]:
        """What the detector is: model kind, classes/tree, device, options (for JSON outputs)."""
        cfg = self.config
        return {"kind": cfg.kind, "tree": cfg.tree, "num_classes": self.model.num_classes,
                "anchors": [[round(v, 5) for v in a] for a in self.postprocess.anchors.tolist()],
                "device": str(self.device), "random_weights": self.random_weights,
                "options": dataclasses.asdict(self.options)}


def _model_config(config: str | Path | Config | ModelConfig, overrides: Sequence[str] | None) -> ModelConfig:
    if isinstance(config, ModelConfig):
        if overrides:
            raise ConfigError("overrides need a YAML config path or a Config, not a ModelConfig")
        return config
    if isinstance(config, Config):
        if overrides:
            raise ConfigError("overrides need a YAML config path; apply them with load_config instead")
        return config.model
    path = Path(config)
    if path.suffix == ".cfg":
        if overrides:
            raise ConfigError(f"{path}: --set overrides apply to YAML configs, not darknet .cfg files")
        from yolo9000.darknet import cfg_model_config
        return cfg_model_config(path)
    return load_config(path, list(overrides or [])).model


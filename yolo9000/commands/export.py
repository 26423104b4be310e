"""`yolo9000 export`: the network and its PostProcess's pre-NMS stage as ONNX, or a darknet `.cfg` + `.weights` pair.

    yolo9000 export --config configs/yolov2.yaml --weights runs/x/last.pt --format onnx --out yolov2.onnx
    yolo9000 export --cfg yolo9000.cfg --weights yolo9000.weights --format onnx --out yolo9000.onnx --verify
    yolo9000 export --config configs/tiny.yaml --weights runs/x/last.pt --format darknet --out tiny  # tiny.cfg/.weights

ONNX: input `images` Float[B, 3, H, W] (RGB in 0..1, H and W multiples of 32, batch and size dynamic). Outputs of
a detector, P = A * H/32 * W/32 boxes per image:

    raw         Float[B, A, 5+N, H/32, W/32]  exactly as `model(x)` returns it (for the tree's decision walk)
    boxes       Float[B, P, 4]   xyxy, input pixels, clipped to the input        (`PostProcess.dense`:
    objectness  Float[B, P]                                                      the builder's postprocess,
    scores      Float[B, P, N]   objectness * P(node) (tree: absolute; flat: softmax)   decode + scores)

Thresholding, letterbox mapping and NMS are the consumer's (per node: `batched_nms(boxes, scores[:, k], ...)`
reproduces `PostProcess` with `categories`). A classifier exports `logits` Float[B, N]. Batch norm is folded into
the convolutions first (same values, a smaller graph). The model config, anchors and stride are stored as ONNX
metadata (`yolo9000.config`, `anchors`, `stride`, `outputs`).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from torch import Tensor

from yolo9000.builder import build_model, build_postprocess
from yolo9000.commands.info import add_model_arguments, input_size, model_config_from_args
from yolo9000.config import ModelConfig, to_dict
from yolo9000.darknet import save_darknet_weights, write_cfg
from yolo9000.model.inference import prepare_for_inference
from yolo9000.postprocess import PostProcess

DETECTOR_OUTPUTS = ("raw", "boxes", "objectness", "scores")


def register(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--weights", help="our checkpoint (.pt) or darknet .weights; omitted: random weights")
    parser.add_argument("--format", choices=("onnx", "darknet"), default="onnx",
                        help="onnx: the network and its PostProcess up to NMS; darknet: .cfg + .weights (default onnx)")
    parser.add_argument("--out", required=True, help="output file (.onnx), or the .cfg/.weights prefix for darknet")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (18: the torch.export exporter's lowest)")
    parser.add_argument("--static", action="store_true", help="fix batch 1 and --size instead of dynamic axes")
    parser.add_argument("--torchscript", action="store_true",
                        help="use PyTorch's legacy TorchScript-based ONNX exporter (deprecated, but exports in a "
                             "second where the default torch.export-based one takes 10-30 s on 2 cores)")
    parser.add_argument("--no-fold", dest="fold", action="store_false", help="keep batch norm as separate ops")
    parser.add_argument("--verify", action="store_true",
                        help="run the ONNX file with onnxruntime on a random input and compare with PyTorch")
    parser.set_defaults(func=run)


class ExportGraph(nn.Module):
    """The exported graph of a detector: the network, then its PostProcess's pre-NMS stage (`PostProcess.dense`)."""

    def __init__(self, model: nn.Module, postprocess: PostProcess) -> None:
        super().__init__()
        self.model, self.postprocess = model, postprocess

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        raw = self.model(x)
        dense = self.postprocess.dense(raw)
        return raw, dense.boxes, dense.objectness, dense.scores


def export_onnx(model: nn.Module, cfg: ModelConfig, path: str | Path, size: int, opset: int = 18,
                dynamic: bool = True, torchscript: bool = False, fold: bool = True) -> Path:
    """Write `model` (with the builder's postprocess for a detector: `ExportGraph`) to an ONNX file and check it
    with `onnx.checker`.

    Args:
        model: a network from `build_model` (left unchanged; a prepared copy is exported).
        cfg: its config, stored as metadata.
        path: the .onnx file.
        size: the example input's side in pixels (the only size when `dynamic` is False).
        opset: ONNX opset version.
        dynamic: batch, height and width as dynamic axes.
        torchscript: PyTorch's legacy TorchScript-based exporter instead of the torch.export-based default.
        fold: fold batch norm into the convolutions first.
    Returns:
        The path written.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = prepare_for_inference(model.cpu().float(), fold_bn=fold, channels_last=False)
    postprocess = build_postprocess(cfg)
    outputs = ("logits",) if postprocess is None else DETECTOR_OUTPUTS
    if postprocess is not None:
        graph = ExportGraph(graph, postprocess).eval()
    example = torch.rand(1, 3, size, size)
    names = {"input_names": ["images"], "output_names": list(outputs)}
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated and that our shape checks become Python ints;
        # the checks only raise on bad sizes, and tests/test_export.py runs its graphs at other sizes.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        if not torchscript:
            kwargs = {}
            if dynamic:
                side = torch.export.Dim("cells_h", min=1, max=64), torch.export.Dim("cells_w", min=1, max=64)
                kwargs["dynamic_shapes"] = {"x": {0: torch.export.Dim("batch", min=1, max=1024),
                                                  2: 32 * side[0], 3: 32 * side[1]}}
            torch.onnx.export(graph, (example,), str(path), dynamo=True, opset_version=opset, verbose=False,
                              external_data=False, **names, **kwargs)
        else:
            axes = None
            if dynamic:
                axes = {"images": {0: "batch", 2: "height", 3: "width"}, "raw": {0: "batch", 3: "grid_height",
                        4: "grid_width"}, "logits": {0: "batch"}, "boxes": {0: "batch", 1: "boxes"},
                        "objectness": {0: "batch", 1: "boxes"}, "scores": {0: "batch", 1: "boxes"}}
                axes = {name: axes[name] for name in ("images", *outputs)}
            torch.onnx.export(graph, (example,), str(path), dynamo=False, opset_version=opset,
                              dynamic_axes=axes, **names)
    proto = onnx.load(str(path))
    metadata = {"yolo9000.config": json.dumps(to_dict(cfg)), "stride": str(cfg.stride),
                "anchors": json.dumps([list(a) for a in cfg.anchors]) if cfg.head == "region" else "[]",
                "outputs": "raw Float[B, A, 5+N, H/32, W/32] (tx, ty, tw, th, objectness logit, N class logits); "
                "boxes Float[B, P, 4] xyxy input pixels clipped; objectness Float[B, P]; scores Float[B, P, N] "
                "objectness * P(node)" if postprocess is not None else "logits Float[B, N]"}
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def verify_onnx(model: nn.Module, cfg: ModelConfig, path: str | Path, size: int, batch: int = 2) -> float:
    """Max |onnxruntime - PyTorch| over every output on a random input (eval mode; `PostProcess.dense` for the
    decoded outputs)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    got = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = model.eval()(x)
        postprocess = build_postprocess(cfg)
        expected = (expected,) if postprocess is None else ExportGraph(model, postprocess)(x)
    return max((torch.from_numpy(g) - e).abs().max().item() for g, e in zip(got, expected))


def run(args: argparse.Namespace) -> int:
    try:
        cfg = model_config_from_args(args)
        size = input_size(args, cfg)
        model = build_model(cfg)
        if args.weights:
            from yolo9000.model.load import load_weights
            load_weights(model, args.weights)
        else:
            print("yolo9000 export: no --weights given: exporting randomly initialised weights", file=sys.stderr)
        model.eval()
        if args.format == "darknet":
            prefix = Path(args.out)
            prefix = prefix.with_suffix("") if prefix.suffix in (".cfg", ".weights") else prefix
            cfg_path = write_cfg(cfg, prefix.with_name(prefix.name + ".cfg"))
            weights_path = save_darknet_weights(model, prefix.with_name(prefix.name + ".weights"))
            print(f"wrote {cfg_path} and {weights_path}")
            return 0
        path = export_onnx(model, cfg, args.out, size, args.opset, not args.static, args.torchscript, args.fold)
    except ImportError as err:
        print(f"yolo9000 export: ONNX export needs {err.name or 'onnx'}: pip install onnx onnxscript "
              "(or the project's dev extra: pip install -e '.[dev]')", file=sys.stderr)
        return 2
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB): input images Float[B, 3, H, W], "
          f"outputs {', '.join(('logits',) if cfg.head == 'classifier' else DETECTOR_OUTPUTS)}")
    if args.verify:
        try:
            diff = verify_onnx(model, cfg, path, size, batch=1 if args.static else 2)
        except ImportError:
            print("yolo9000 export: --verify needs onnxruntime (pip install onnxruntime)", file=sys.stderr)
            return 2
        print(f"onnxruntime vs PyTorch: max |diff| {diff:.2e}")
    return 0

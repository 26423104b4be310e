"""Our DarknetNet and `--compat darknet` against darknet itself, on darknet's cfgs and sample photos.

Needs a darknet checkout (pjreddie/darknet; Debian's package is 61c9d02e) built as `libdarknet.a` (`make
libdarknet.a`, CPU, no OpenCV); this script compiles `dump.c` against it. For each `NAME.cfg:SIZE[:GAIN[:THRESH]]`
it writes the cfg at SIZE with batch 1, random weights (BN statistics calibrated on the image, every 17th channel
dead with variance 0, the last conv's weights times GAIN), runs darknet's `dump` (letterboxed input, every layer's
output, `get_network_boxes` + `do_nms_sort`) and prints, side by side with ours:

* the letterboxed input's max |difference| (0 with stb_image decoding, `pip install libstb`);
* the worst layer's max |difference| / max |darknet's value|, fed darknet's own input;
* for detectors, whether the detection sets (class, probability, objectness, box) agree within 1e-4, absolute or
  relative. darknet's CPU region layer mis-indexes the tree softmax (darknet_yolo9000.md section 3), so for tree
  models dump.c recomputes the region with darknet's GPU semantics before `get_network_boxes`.

    python bench/darknet_parity/compare.py --darknet ~/src/darknet yolov2-tiny.cfg:416:3:0.1 resnet50.cfg:224
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from yolo9000 import compat_darknet as dn  # noqa: E402
from yolo9000.darknet import parse_cfg_text, save_darknet_weights  # noqa: E402
from yolo9000.model.darknet_net import DarknetConv, DarknetNet  # noqa: E402
from yolo9000.reference import darknet_file  # noqa: E402

HERE = Path(__file__).resolve().parent


def build_dump(darknet: Path, out: Path) -> Path:
    library = darknet / "libdarknet.a"
    if not library.exists():
        raise SystemExit(f"{library} is missing: run `make libdarknet.a` in {darknet} first")
    subprocess.run(["gcc", f"-I{darknet / 'include'}", f"-I{darknet / 'src'}", "-O2", str(HERE / "dump.c"),
                    str(library), "-lm", "-pthread", "-o", str(out)], check=True)
    return out


def randomize(net: DarknetNet, gain: float, x: torch.Tensor, seed: int = 0) -> None:
    """Random weights with sane activations: BN statistics from the image itself, then perturbed."""
    g = torch.Generator().manual_seed(seed)
    convs = [m for m in net.modules() if isinstance(m, DarknetConv)]
    with torch.no_grad():
        for m in convs:
            if m.bn is not None:
                m.bn.momentum = 1.0
                m.bn.weight.uniform_(0.5, 1.5, generator=g)
                m.bn.bias.uniform_(-0.2, 0.2, generator=g)
            if m.conv.bias is not None:
                m.conv.bias.uniform_(-0.2, 0.2, generator=g)
        convs[-1].conv.weight.mul_(gain)
        net.train()
        for m in net.modules():
            if isinstance(m, torch.nn.Dropout):
                m.eval()
        net(x)
        net.eval()
        for m in convs:
            if m.bn is not None:
                m.bn.running_var.mul_(torch.empty_like(m.bn.running_var).uniform_(0.8, 1.25, generator=g))
                dead = torch.arange(m.bn.num_features) % 17 == 5
                m.conv.weight[dead] = 0
                m.bn.running_var[dead] = 0
                m.bn.running_mean[dead] = 0


def close(a: tuple, b: tuple) -> bool:
    return a[0] == b[0] and np.allclose(a[1:], b[1:], rtol=1e-4, atol=1e-4)


def compare(dump: Path, name: str, size: int, gain: float, thresh: float, hier: float, image: str) -> dict:
    text = darknet_file(name).read_text()
    for key, value in (("batch", 1), ("subdivisions", 1), ("width", size), ("height", size)):
        text = re.sub(rf"(?m)^\s*{key}\s*=.*$", f"{key}={value}", text)
    text = re.sub(r"(?m)^tree\s*=.*9k.tree$", f"tree={darknet_file('9k.tree')}", text)
    text = re.sub(r"(?m)^map\s*=.*$", "", text)   # detector test passes no map
    tmp = Path(tempfile.mkdtemp(prefix="darknet-parity-"))
    cfg = tmp / "net.cfg"
    cfg.write_text(text)
    torch.manual_seed(0)
    net = DarknetNet(parse_cfg_text(text, str(cfg)), cfg).eval()
    im = dn.load_image(darknet_file(image))
    x = dn.letterbox_image(im, size, size)
    randomize(net, gain, torch.from_numpy(x)[None])
    save_darknet_weights(net, tmp / "net.weights")
    out = subprocess.run([str(dump), str(cfg), str(tmp / "net.weights"), str(darknet_file(image)), str(tmp),
                          str(thresh), str(hier)], capture_output=True, text=True, check=True).stdout
    theirs = np.fromfile(tmp / "input.bin", dtype="<f4").reshape(x.shape)
    result = {"cfg": name, "size": size, "input_max_abs_diff": float(np.abs(theirs - x).max())}
    with torch.no_grad():
        layers = net.forward_layers(torch.from_numpy(theirs)[None])
        raw = net(torch.from_numpy(theirs)[None])[0]
    worst = (0.0, -1)
    for i, ours in enumerate(layers):
        if net.tree is not None and net.head == "region" and i == len(layers) - 1:
            ref = np.fromfile(tmp / "region_gpu.bin", dtype="<f4")
        else:
            ref = np.fromfile(tmp / f"layer_{i:03d}.bin", dtype="<f4")
        diff = np.abs(ref - ours.numpy().ravel()).max() / max(float(np.abs(ref).max()), 1e-30)
        worst = max(worst, (float(diff), i))
    result.update({"layers": len(layers), "worst_relative_diff": worst[0], "worst_layer": worst[1]})
    if net.head == "region":
        darknet_dets = sorted((int(line.split()[2]), *map(float, line.split()[3:])) for line in out.splitlines()
                              if line.startswith("det "))
        found = dn.detections(raw, net.anchors, im.shape[2], im.shape[1], size, size, thresh, hier, 0.45, net.tree,
                              bool(int(net.region.options.get("softmax", "0"))))
        ours_dets = sorted((d.label, d.prob, d.objectness, *d.box) for d in found)
        only_ours = [d for d in ours_dets if not any(close(d, e) for e in darknet_dets)]
        only_darknet = [d for d in darknet_dets if not any(close(d, e) for e in ours_dets)]
        result.update({"detections": len(darknet_dets), "ours": len(ours_dets), "only_ours": only_ours,
                       "only_darknet": only_darknet})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--darknet", type=Path, required=True, help="darknet checkout with libdarknet.a built")
    parser.add_argument("--image", default="dog.jpg", help="one of darknet's sample photos")
    parser.add_argument("--hier", type=float, default=0.5)
    parser.add_argument("specs", nargs="+", metavar="NAME.cfg:SIZE[:GAIN[:THRESH]]")
    args = parser.parse_args()
    dump = build_dump(args.darknet.expanduser(), Path(tempfile.mkdtemp(prefix="darknet-dump-")) / "dump")
    torch.set_grad_enabled(False)
    for spec in args.specs:
        name, size, *rest = spec.split(":")
        gain = float(rest[0]) if rest else 1.0
        thresh = float(rest[1]) if len(rest) > 1 else 0.5
        r = compare(dump, name, int(size), gain, thresh, args.hier, args.image)
        line = (f"{name} @ {size}: input max|diff| {r['input_max_abs_diff']:.1e}; {r['layers']} layers, worst "
                f"max|diff|/max|darknet| {r['worst_relative_diff']:.1e} (layer {r['worst_layer']})")
        if "detections" in r:
            line += (f"; detections darknet {r['detections']}, ours {r['ours']}, only ours {len(r['only_ours'])}, "
                     f"only darknet {len(r['only_darknet'])}")
        print(line)
        for d in r.get("only_ours", []) + r.get("only_darknet", []):
            print(f"    differs: class {d[0]} prob {d[1]:.6f} box {tuple(round(v, 4) for v in d[3:])}")


if __name__ == "__main__":
    main()

"""Model speed on this CPU (issue 3 section 6): inference images/s of YOLOv2 at 416 and YOLO9000 at 544 (batch 1),
one training step (forward + backward) of YOLOv2 at batch 4, 416, and the achieved GFLOP/s against a large
`torch.mm` measured in the same run (the machine's practical peak, fp32 and bf16).

    .venv/bin/python bench/model_speed.py [--rounds 5] [--no-compile] [--quick] [--threads 2] [--cfg-only]
    .venv/bin/python bench/model_speed.py --lightnet [--rounds 15]   # only: side by side with lightnet 4.0

It also times YOLOv2 built from darknet's `yolov2.cfg` (the generic `DarknetNet`) against our `YOLODetector` on
the same weights and prints the time ratio (cfg-built / ours; 1.00 = as fast).

`--lightnet` (needs `pip install lightnet`, an optional bench dependency) times, float32 and batch 1 in one
process, round-robin, lightnet's YoloV2 at 416 and its Darknet-19 + 1x1 head (YOLO9000's shape: lightnet has
no YOLO9000 class) at 544 against ours eager (`model.eval()`, what evaluation during training runs) and prepared
(BN folded + channels_last), and reports each as a multiple of lightnet's time and a fraction of the matmul peak.

Every variant runs once per round, round after round (round-robin), and medians over rounds are reported, so a
change in machine load hits all variants alike. Two clocks are kept: wall time (the figure that matters on a
quiet machine) and process CPU time. On a shared machine two threads wait for each other whenever the other
core is busy, which inflates wall time; with `--threads 1` CPU time is the undisturbed per-core cost, so the
"cpu" ratios of a 1-thread run are the load-independent efficiency figures.

FLOPs are darknet's count (2 x multiply-adds of the convolutions, yolo9000.model.summary); a training step
counts 3x the forward pass minus the first layer's unneeded input gradient. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from yolo9000.config import load_config  # noqa: E402
from yolo9000.builder import build_model  # noqa: E402
from yolo9000.darknet import load_darknet_weights, save_darknet_weights  # noqa: E402
from yolo9000.model.darknet_net import darknet_net_from_cfg  # noqa: E402
from yolo9000.model.inference import prepare_for_inference  # noqa: E402
from yolo9000.reference import darknet_file  # noqa: E402
from yolo9000.model.summary import summarize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MM_SIZE = 2048
MM_FLOPS = 2 * MM_SIZE ** 3


def round_robin(variants: dict[str, Callable[[], object]], rounds: int,
                warmup: int = 1) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per call of each variant, measured interleaved: one call of each per round."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in variants}


def matmul_variants() -> dict[str, Callable[[], object]]:
    g = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(MM_SIZE, MM_SIZE, generator=g), torch.randn(MM_SIZE, MM_SIZE, generator=g)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    return {"mm_fp32": lambda: torch.mm(a32, b32), "mm_bf16": lambda: torch.mm(a16, b16)}


def report(title: str, seconds: dict[str, tuple[float, float]], flops: float, images: int) -> dict:
    """Print one table (wall and CPU clocks, each against its own matmul peak) and return it as a dict."""
    mm32, mm16 = seconds.pop("mm_fp32"), seconds.pop("mm_bf16")
    peaks = {"fp32_wall": MM_FLOPS / mm32[0] / 1e9, "bf16_wall": MM_FLOPS / mm16[0] / 1e9,
             "fp32_cpu": MM_FLOPS / mm32[1] / 1e9, "bf16_cpu": MM_FLOPS / mm16[1] / 1e9}
    print(f"\n{title}, {flops / 1e9:.2f} GFLOP per call")
    print(f"  matmul peak: fp32 {peaks['fp32_wall']:.1f} GFLOP/s wall ({peaks['fp32_cpu']:.1f} per CPU-second), "
          f"bf16 {peaks['bf16_wall']:.1f} ({peaks['bf16_cpu']:.1f})")
    print(f"  {'variant':<28} {'s/call':>7} {'img/s':>7} {'GFLOP/s':>8} {'of fp32':>8} {'of bf16':>8} "
          f"{'vs eager':>8} | {'cpu: of fp32':>12} {'of bf16':>8}")
    out = {"gflop_per_call": flops / 1e9, "matmul_peak_gflops": peaks, "variants": {}}
    base = seconds["eager"][0]
    for name, (wall, cpu) in seconds.items():
        gflops, gflops_cpu = flops / wall / 1e9, flops / cpu / 1e9
        row = {"seconds": wall, "cpu_seconds": cpu, "images_per_s": images / wall, "gflops": gflops,
               "of_fp32_peak": gflops / peaks["fp32_wall"], "of_bf16_peak": gflops / peaks["bf16_wall"],
               "cpu_of_fp32_peak": gflops_cpu / peaks["fp32_cpu"], "cpu_of_bf16_peak": gflops_cpu / peaks["bf16_cpu"],
               "speedup_vs_eager": base / wall}
        out["variants"][name] = row
        print(f"  {name:<28} {wall:7.3f} {row['images_per_s']:7.2f} {gflops:8.1f} {row['of_fp32_peak']:8.1%} "
              f"{row['of_bf16_peak']:8.1%} {row['speedup_vs_eager']:7.2f}x | {row['cpu_of_fp32_peak']:12.1%} "
              f"{row['cpu_of_bf16_peak']:8.1%}")
    return out


def compiled(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile with inductor's freezing (weights become constants that oneDNN can prepack)."""
    return torch.compile(model, options={"freezing": True})


def _autocast(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return model(x)


def inference_section(name: str, config: str, size: int, rounds: int, use_compile: bool,
                      all_variants: bool = True) -> dict:
    cfg = load_config(ROOT / config).model
    torch.manual_seed(0)
    eager = build_model(cfg).eval().requires_grad_(False)
    flops = summarize(eager, size).flops
    x = torch.rand(1, 3, size, size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    models = {"eager": (eager, x)}
    if all_variants:
        models["channels_last"] = (copy.deepcopy(eager).to(memory_format=torch.channels_last), x_cl)
        models["bn_folded"] = (prepare_for_inference(eager, channels_last=False), x)
    models["prepared"] = (prepare_for_inference(eager), x_cl)  # folded + channels_last
    models["prepared_bf16"] = (prepare_for_inference(eager, dtype=torch.bfloat16), x_cl.bfloat16())
    prepared = models["prepared"][0]
    variants = {k: (lambda m=m, i=i: m(i)) for k, (m, i) in models.items()}
    if all_variants:
        variants["prepared_bf16_autocast"] = lambda: _autocast(prepared, x_cl)
    compile_seconds = None
    with torch.no_grad():
        if use_compile:
            start = time.perf_counter()
            fast = compiled(prepared)
            fast(x_cl)
            compile_seconds = time.perf_counter() - start
            variants["prepared_compiled"] = lambda: fast(x_cl)
        reference = eager(x)
        error = (prepared(x_cl) - reference).abs().max().item()
        error_bf16 = (models["prepared_bf16"][0](x_cl.bfloat16()).float() - reference).abs().max().item()
        variants.update(matmul_variants())
        seconds = round_robin(variants, rounds)
    out = report(f"{name} inference, {size}x{size}, batch 1", seconds, flops, 1)
    out.update({"size": size, "max_abs_diff_prepared_vs_eager": error, "max_abs_diff_bf16_vs_eager": error_bf16,
                "max_abs_eager_output": reference.abs().max().item(), "compile_seconds": compile_seconds})
    compile_note = f"; torch.compile took {compile_seconds:.0f} s" if compile_seconds else ""
    print(f"  max |diff| vs eager (|output| <= {out['max_abs_eager_output']:.2f}): prepared {error:.2e}, "
          f"prepared_bf16 {error_bf16:.2e}{compile_note}")
    del models, variants, eager, prepared
    gc.collect()
    return out


def cfg_section(rounds: int, size: int = 416) -> dict:
    """YOLOv2 from darknet's yolov2.cfg (DarknetNet) vs our YOLODetector, same weights: time ratios."""
    import tempfile

    torch.manual_seed(0)
    ours = build_model(load_config(ROOT / "yolo9000/configs/yolov2.yaml").model).eval().requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_darknet_weights(ours, Path(tmp) / "yolov2.weights")
        cfg_net = darknet_net_from_cfg(darknet_file("yolov2.cfg")).eval().requires_grad_(False)
        load_darknet_weights(cfg_net, path)
    x = torch.rand(1, 3, size, size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        error = (cfg_net(x) - ours(x)).abs().max().item()
        prepared = {"ours": prepare_for_inference(ours), "cfg": prepare_for_inference(cfg_net)}
        variants = {"ours_eager": lambda: ours(x), "cfg_eager": lambda: cfg_net(x),
                    "ours_prepared": lambda: prepared["ours"](x_cl), "cfg_prepared": lambda: prepared["cfg"](x_cl)}
        seconds = round_robin(variants, rounds)
    ratios = {mode: seconds[f"cfg_{mode}"][0] / seconds[f"ours_{mode}"][0] for mode in ("eager", "prepared")}
    cpu_ratios = {mode: seconds[f"cfg_{mode}"][1] / seconds[f"ours_{mode}"][1] for mode in ("eager", "prepared")}
    print(f"\nYOLOv2 {size}x{size} batch 1, float32: darknet cfg (DarknetNet) vs ours (YOLODetector), same weights, "
          f"max |diff| {error:.1e}")
    for mode in ("eager", "prepared"):
        print(f"  {mode:<9} ours {seconds[f'ours_{mode}'][0]:.3f} s, cfg {seconds[f'cfg_{mode}'][0]:.3f} s: "
              f"cfg/ours time ratio {ratios[mode]:.2f} wall, {cpu_ratios[mode]:.2f} CPU")
    return {"size": size, "max_abs_diff": error, "seconds": {k: v[0] for k, v in seconds.items()},
            "cfg_over_ours_time_ratio": ratios, "cfg_over_ours_cpu_time_ratio": cpu_ratios}


def train_section(rounds: int, batch: int = 4, size: int = 416) -> dict:
    cfg = load_config(ROOT / "yolo9000/configs/yolov2.yaml").model
    torch.manual_seed(0)
    model = build_model(cfg).train()
    summary = summarize(model, size)
    first_conv = next(r.flops for r in summary.rows if r.flops)
    flops = batch * (3 * summary.flops - first_conv)  # fwd + input grads (not the image's) + weight grads
    x = torch.rand(batch, 3, size, size)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def step(m: torch.nn.Module, inp: torch.Tensor, bf16: bool = False) -> None:
        m.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = m(inp)
        out.float().square().mean().backward()  # the loss's own cost is negligible next to the network's

    variants = {"eager": lambda: step(model, x), "channels_last": lambda: step(model_cl, x_cl),
                "channels_last_bf16_autocast": lambda: step(model_cl, x_cl, True)}
    variants.update(matmul_variants())
    out = report(f"YOLOv2 training step (forward + backward), batch {batch}, {size}x{size}",
                 round_robin(variants, rounds), flops, batch)
    out.update({"batch": batch, "size": size})
    return out


def lightnet_models() -> dict[str, torch.nn.Module]:
    """lightnet's YoloV2 (80 classes) and YOLO9000's shape in lightnet layers: its Darknet-19 backbone straight into
    the 1x1 prediction conv to 3 x (5 + 9418), as darknet's yolo9000.cfg (lightnet ships no YOLO9000 class)."""
    import functools

    import lightnet as ln
    import lightnet.network as lnn

    activation = functools.partial(torch.nn.LeakyReLU, 0.1, inplace=True)
    yolo9000 = torch.nn.Sequential(lnn.backbone.Darknet.DN_19(3, 1024, activation=activation, momentum=0.01),
                                   torch.nn.Conv2d(1024, 3 * (5 + 9418), 1))
    return {"yolov2": ln.models.YoloV2(80), "yolo9000": yolo9000}


def lightnet_section(rounds: int) -> dict:
    """Ours eager and prepared against lightnet, float32, batch 1, round-robin in one process."""
    torch.manual_seed(0)
    theirs = {k: m.eval().requires_grad_(False) for k, m in lightnet_models().items()}
    out = {}
    for name, size in (("yolov2", 416), ("yolo9000", 544)):
        cfg = load_config(name).model  # the shipped config of that name
        torch.manual_seed(0)
        eager = build_model(cfg).eval().requires_grad_(False)
        flops = summarize(eager, size).flops
        prepared = prepare_for_inference(eager)
        x = torch.rand(1, 3, size, size)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            ours_out, theirs_out = eager(x), theirs[name](x)
            assert ours_out.numel() == theirs_out.numel(), (ours_out.shape, theirs_out.shape)  # same network size
            variants = {"lightnet": lambda m=theirs[name]: m(x), "eager": lambda: eager(x),
                        "prepared": lambda: prepared(x_cl)}
            variants.update(matmul_variants())
            seconds = round_robin(variants, rounds)
        table = report(f"{name} {size}x{size} batch 1, float32, against lightnet {lightnet_version()}", seconds,
                       flops, 1)
        base = table["variants"]["lightnet"]["seconds"]
        for row in table["variants"].values():
            row["time_vs_lightnet"] = row["seconds"] / base
        print("  time as a multiple of lightnet's: " + ", ".join(
            f"{k} {v['time_vs_lightnet']:.3f}x" for k, v in table["variants"].items()))
        out[f"{name}_{size}"] = table
    return out


def lightnet_version() -> str:
    import lightnet
    return lightnet.__version__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (medians are reported)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile (slow start)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, no compile, no YOLO9000: a smoke run")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (the issue's figure uses 2)")
    parser.add_argument("--cfg-only", action="store_true", help="only the darknet-cfg vs our YOLOv2 comparison")
    parser.add_argument("--lightnet", action="store_true", help="only the side-by-side run against lightnet")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.lightnet:
        try:
            import lightnet  # noqa: F401
        except ImportError:
            sys.exit("bench/model_speed.py --lightnet: lightnet is not installed (pip install lightnet brambox)")
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds, float32")
        print(json.dumps({"threads": torch.get_num_threads(), "rounds": args.rounds,
                          "lightnet": lightnet_section(args.rounds)}))
        return
    rounds = 2 if args.quick else args.rounds
    use_compile = args.compile and not args.quick
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} rounds")
    if args.cfg_only:
        print(json.dumps({"cfg_vs_ours_yolov2_416": cfg_section(rounds)}))
        return
    results = {"threads": torch.get_num_threads(), "rounds": rounds,
               "yolov2_416": inference_section("YOLOv2", "yolov2", 416, rounds, use_compile)}
    if not args.quick:
        results["yolo9000_544"] = inference_section("YOLO9000", "yolo9000", 544, rounds, False,
                                                    all_variants=False)
    results["train_yolov2_b4_416"] = train_section(max(2, rounds - 2))
    results["cfg_vs_ours_yolov2_416"] = cfg_section(rounds)

    v2 = results["yolov2_416"]["variants"]
    fp32 = {k: v["of_fp32_peak"] for k, v in v2.items() if "bf16" not in k}
    best = max(fp32, key=fp32.get)
    summary = {
        "yolov2_416_images_per_s": {k: v2[k]["images_per_s"] for k in ("eager", "prepared", "prepared_bf16")},
        "yolov2_416_prepared_of_fp32_peak": v2["prepared"]["of_fp32_peak"],
        "yolov2_416_prepared_cpu_of_fp32_peak": v2["prepared"]["cpu_of_fp32_peak"],
        "yolov2_best_fp32_variant": best, "yolov2_best_fp32_of_peak": fp32[best],
        "target_yolov2_50pct_of_fp32_peak_met": fp32[best] >= 0.5,
        "train_yolov2_b4_416_seconds": {k: v["seconds"] for k, v in results["train_yolov2_b4_416"]["variants"].items()},
    }
    if "yolo9000_544" in results:
        summary["yolo9000_544_images_per_s"] = {k: v["images_per_s"]
                                                for k, v in results["yolo9000_544"]["variants"].items()}
    results["summary"] = summary
    print(f"\nYOLOv2 at 416: prepared {v2['prepared']['images_per_s']:.2f} img/s = "
          f"{v2['prepared']['of_fp32_peak']:.1%} of the fp32 matmul peak (CPU-time basis "
          f"{v2['prepared']['cpu_of_fp32_peak']:.1%}); best fp32 variant {best} {fp32[best]:.1%} "
          f"(target 50%: {'met' if fp32[best] >= 0.5 else 'not met'}); bf16 weights "
          f"{v2['prepared_bf16']['images_per_s']:.2f} img/s")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

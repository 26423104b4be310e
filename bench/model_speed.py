"""Model speed on this CPU (issue 3 section 6): inference images/s of YOLOv2 at 416 and YOLO9000 at 544 (batch 1),
one training step (forward + backward) of YOLOv2 at batch 4, 416, and the achieved GFLOP/s against a large
`torch.mm` measured in the same run (the machine's practical peak, fp32 and bf16).

Every variant runs once per round, round after round (round-robin), and the median over rounds is reported, so
a change in machine load hits all variants alike and the ratios stay meaningful on a shared machine.

    .venv/bin/python bench/model_speed.py [--rounds 5] [--no-compile] [--quick]

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
from yolo9000.model import build_model  # noqa: E402
from yolo9000.model.inference import prepare_for_inference  # noqa: E402
from yolo9000.model.summary import summarize  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MM_SIZE = 2048


def round_robin(variants: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each variant, measured interleaved: one call of each per round."""
    for fn in variants.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_variants() -> dict[str, Callable[[], object]]:
    g = torch.Generator().manual_seed(0)
    a32, b32 = torch.randn(MM_SIZE, MM_SIZE, generator=g), torch.randn(MM_SIZE, MM_SIZE, generator=g)
    a16, b16 = a32.bfloat16(), b32.bfloat16()
    return {"mm_fp32": lambda: torch.mm(a32, b32), "mm_bf16": lambda: torch.mm(a16, b16)}


def compiled(model: torch.nn.Module) -> torch.nn.Module:
    """torch.compile with inductor's freezing (weights become constants, oneDNN can prepack them)."""
    import torch._inductor.config as inductor_config
    inductor_config.freezing = True
    return torch.compile(model)


def inference_section(name: str, config: str, size: int, rounds: int, use_compile: bool) -> dict:
    cfg = load_config(ROOT / config).model
    torch.manual_seed(0)
    eager = build_model(cfg).eval().requires_grad_(False)
    flops = summarize(eager, size).flops
    x = torch.rand(1, 3, size, size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    models = {
        "eager": (eager, x),
        "channels_last": (copy.deepcopy(eager).to(memory_format=torch.channels_last), x_cl),
        "bn_folded": (prepare_for_inference(eager, channels_last=False), x),
        "prepared": (prepare_for_inference(eager), x_cl),  # folded + channels_last
    }
    prepared = models["prepared"][0]
    models["prepared_bf16_weights"] = (copy.deepcopy(prepared).to(torch.bfloat16), x_cl.bfloat16())
    variants = {k: (lambda m=m, i=i: m(i)) for k, (m, i) in models.items()}
    variants["prepared_bf16_autocast"] = lambda: _autocast(prepared, x_cl)
    compile_seconds = None
    if use_compile:
        start = time.perf_counter()
        fast = compiled(prepared)
        with torch.no_grad():
            fast(x_cl)
        compile_seconds = time.perf_counter() - start
        variants["prepared_compiled"] = lambda: fast(x_cl)
    with torch.no_grad():
        reference = eager(x)
        error = (models["prepared"][0](x_cl) - reference).abs().max().item()
        error_bf16 = (models["prepared_bf16_weights"][0](x_cl.bfloat16()).float() - reference).abs().max().item()
        variants.update(matmul_variants())
        seconds = round_robin(variants, rounds)
    peaks = {"fp32": 2 * MM_SIZE ** 3 / seconds.pop("mm_fp32") / 1e9,
             "bf16": 2 * MM_SIZE ** 3 / seconds.pop("mm_bf16") / 1e9}
    out = {"size": size, "gflop_per_image": flops / 1e9, "matmul_peak_gflops": peaks, "variants": {},
           "max_abs_diff_prepared_vs_eager": error, "max_abs_diff_bf16_vs_eager": error_bf16,
           "compile_seconds": compile_seconds}
    print(f"\n{name} inference, {size}x{size}, batch 1, {flops / 1e9:.2f} GFLOP per image "
          f"(matmul peak in this section: fp32 {peaks['fp32']:.1f}, bf16 {peaks['bf16']:.1f} GFLOP/s)")
    base = seconds["eager"]
    for variant, s in seconds.items():
        gflops = flops / s / 1e9
        out["variants"][variant] = {"seconds": s, "images_per_s": 1 / s, "gflops": gflops,
                                    "of_fp32_peak": gflops / peaks["fp32"], "of_bf16_peak": gflops / peaks["bf16"],
                                    "speedup_vs_eager": base / s}
        print(f"  {variant:<24} {1 / s:7.2f} img/s  {gflops:7.1f} GFLOP/s  {gflops / peaks['fp32']:6.1%} of fp32 "
              f"peak  {gflops / peaks['bf16']:6.1%} of bf16 peak  x{base / s:.2f} vs eager")
    print(f"  prepared vs eager max |diff| {error:.2e}; bf16 weights vs eager {error_bf16:.2e}"
          + (f"; torch.compile took {compile_seconds:.0f} s" if compile_seconds else ""))
    del models, variants, eager, prepared
    gc.collect()
    return out


def _autocast(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return model(x)


def train_section(rounds: int, batch: int = 4, size: int = 416) -> dict:
    cfg = load_config(ROOT / "configs/yolov2.yaml").model
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
    seconds = round_robin(variants, rounds)
    peaks = {"fp32": 2 * MM_SIZE ** 3 / seconds.pop("mm_fp32") / 1e9,
             "bf16": 2 * MM_SIZE ** 3 / seconds.pop("mm_bf16") / 1e9}
    print(f"\nYOLOv2 training step (forward + backward), batch {batch}, {size}x{size}, {flops / 1e9:.1f} GFLOP "
          f"(matmul peak in this section: fp32 {peaks['fp32']:.1f}, bf16 {peaks['bf16']:.1f} GFLOP/s)")
    out = {"batch": batch, "size": size, "gflop_per_step": flops / 1e9, "matmul_peak_gflops": peaks, "variants": {}}
    base = seconds["eager"]
    for variant, s in seconds.items():
        gflops = flops / s / 1e9
        out["variants"][variant] = {"seconds": s, "images_per_s": batch / s, "gflops": gflops,
                                    "of_fp32_peak": gflops / peaks["fp32"], "speedup_vs_eager": base / s}
        print(f"  {variant:<28} {s:6.2f} s/step  {batch / s:6.2f} img/s  {gflops:7.1f} GFLOP/s  "
              f"{gflops / peaks['fp32']:6.1%} of fp32 peak  x{base / s:.2f} vs eager")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (medians are reported)")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile (slow start)")
    parser.add_argument("--quick", action="store_true", help="2 rounds, no compile, no YOLO9000: a smoke run")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rounds = 2 if args.quick else args.rounds
    use_compile = args.compile and not args.quick
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {rounds} rounds")
    results = {"threads": torch.get_num_threads(), "rounds": rounds,
               "yolov2_416": inference_section("YOLOv2", "configs/yolov2.yaml", 416, rounds, use_compile)}
    if not args.quick:
        results["yolo9000_544"] = inference_section("YOLO9000", "configs/yolo9000.yaml", 544, rounds, use_compile)
    results["train_yolov2_b4_416"] = train_section(max(2, rounds - 2))
    fp32 = {k: v["of_fp32_peak"] for k, v in results["yolov2_416"]["variants"].items() if "bf16" not in k}
    best = max(fp32, key=fp32.get)
    results["yolov2_best_fp32_variant"] = best
    results["yolov2_best_fp32_of_peak"] = fp32[best]
    results["target_yolov2_50pct_of_fp32_peak_met"] = fp32[best] >= 0.5
    print(f"\nYOLOv2 best fp32 variant: {best}, {fp32[best]:.1%} of the fp32 matmul peak (target 50%: "
          f"{'met' if fp32[best] >= 0.5 else 'not met'})")
    print(json.dumps(results))


if __name__ == "__main__":
    main()

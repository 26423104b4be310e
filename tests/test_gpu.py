"""The CUDA paths, each against the CPU result its CPU test checks: loss (against the loop reference), tree ops
forward and backward (float32 and bf16), decode and postprocess, training steps, a checkpoint moved CUDA -> CPU,
the device data path and a short training run with `data.decode=device`.

Marked `gpu` (deselected by default; `pytest -m gpu`) and skipped where CUDA is absent. The device they run on is
YOLO9000_TEST_DEVICE (default "cuda"); `YOLO9000_TEST_DEVICE=cpu pytest -m gpu tests/test_gpu.py` runs the same
tests on the CPU, which is how they are kept working on machines without a GPU.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import torch
from test_data_device import add_odd_images
from test_data_loader import SMALL, world  # noqa: F401  (fixture)
from test_loss import ANCHORS, STRIDE, TERMS, make_batch, random_raw, reference_loss

from wordtree.ops import absolute_probs, grouped_log_softmax, tree_nll
from yolo9000.checkpoint import load_checkpoint, model_state, save_checkpoint
from yolo9000.builder import build_criterion, build_model
from yolo9000.config import DataConfig, LossConfig, TrainConfig, load_config
from yolo9000.data.collate import Batch
from yolo9000.data.descriptor import load_descriptor
from yolo9000.data.device import DeviceFeeder
from yolo9000.data.loader import build_train_loader
from yolo9000.decode import decode
from yolo9000.loss import RegionLoss
from yolo9000.optim import build_optimizer
from yolo9000.postprocess import PostProcess

REPO = Path(__file__).resolve().parents[1]
DEVICE = torch.device(os.environ.get("YOLO9000_TEST_DEVICE", "cuda"))
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.fixture(autouse=True)
def exact_float32():
    """TF32 rounds CUDA convolutions and matmuls to 10 bits; the comparisons want float32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("model", ["flat", "tree"])
def test_loss_matches_the_loop_reference(model, tiny_tree):
    tree = tiny_tree if model == "tree" else None
    num = tiny_tree.num_nodes if tree else 20
    cfg = LossConfig()
    raw = random_raw(num, 3, 3, seed=zlib.crc32(model.encode()))
    batch = make_batch(raw, num, list(range(num)), torch.Generator().manual_seed(1))
    loss = RegionLoss(ANCHORS, cfg, tree=tree, num_classes=None if tree else num, stride=STRIDE).to(DEVICE)
    raw_dev, raw64 = raw.to(DEVICE).requires_grad_(), raw.double().requires_grad_()
    ours, ref = loss(raw_dev, batch.to(DEVICE)), reference_loss(raw64, batch, cfg, tree, 0)
    for name in TERMS:
        assert ours[name].device.type == DEVICE.type
        torch.testing.assert_close(ours[name].double().cpu(), ref[name], rtol=1e-5, atol=1e-5, msg=name)
    grad, = torch.autograd.grad(loss.total(ours), raw_dev)
    from yolo9000.loss import weighted_total
    ref_grad, = torch.autograd.grad(weighted_total(ref, cfg), raw64)
    torch.testing.assert_close(grad.double().cpu(), ref_grad, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("op", ["grouped_log_softmax", "absolute_probs", "tree_nll"])
def test_tree_ops_forward_and_backward_match_the_cpu(op, dtype, tiny_tree):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(16, tiny_tree.num_nodes, generator=g) * 3).to(dtype)
    labels = torch.randint(tiny_tree.num_nodes, (16,), generator=g)
    labels[::5] = -1
    weights = torch.randn(16, tiny_tree.num_nodes, generator=g)

    def run(x: torch.Tensor) -> torch.Tensor:
        if op == "tree_nll":
            return tree_nll(x, labels.to(x.device), tiny_tree)
        out = grouped_log_softmax(x, tiny_tree)
        return (absolute_probs(out, tiny_tree) if op == "absolute_probs" else out) * weights.to(x.device)

    x_dev, x_cpu = logits.to(DEVICE).requires_grad_(), logits.clone().requires_grad_()
    out_dev, out_cpu = run(x_dev), run(x_cpu)
    torch.testing.assert_close(out_dev.cpu(), out_cpu, rtol=1e-5, atol=1e-5)
    grad_dev, = torch.autograd.grad(out_dev.sum(), x_dev)
    grad_cpu, = torch.autograd.grad(out_cpu.sum(), x_cpu)
    assert grad_dev.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(grad_dev.cpu().float(), grad_cpu.float(), rtol=tol, atol=tol)


def test_decode_and_postprocess_match_the_cpu(tiny_tree):
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, len(ANCHORS), 5 + tiny_tree.num_nodes, 4, 5, generator=g)
    raw[:, :, 4] += 2
    cpu, dev = decode(raw, ANCHORS, STRIDE), decode(raw.to(DEVICE), ANCHORS.to(DEVICE), STRIDE)
    for field in ("xy", "twh", "boxes", "objectness", "class_logits"):
        torch.testing.assert_close(getattr(dev, field).cpu(), getattr(cpu, field), msg=field)
    post, post_dev = PostProcess(ANCHORS, STRIDE, tiny_tree), PostProcess(ANCHORS, STRIDE, tiny_tree).to(DEVICE)
    kept_cpu = post(raw, post.decision(), conf_threshold=0.05)
    kept_dev = post_dev(raw.to(DEVICE), post_dev.decision(), conf_threshold=0.05)
    assert len(kept_cpu.scores) > 0 and kept_dev.scores.device.type == DEVICE.type
    for field in ("image", "labels"):
        assert torch.equal(getattr(kept_dev, field).cpu(), getattr(kept_cpu, field)), field
    for field in ("boxes", "scores", "objectness"):
        torch.testing.assert_close(getattr(kept_dev, field).cpu(), getattr(kept_cpu, field), msg=field)
    for name, value in kept_cpu.extra.items():  # the decision path and probabilities
        torch.testing.assert_close(kept_dev.extra[name].cpu(), value, msg=name)


def tiny_model(tree, tree_file: Path, seed: int = 0):
    from wordtree.io import write_json

    if not tree_file.exists():
        write_json(tree, tree_file)
    torch.manual_seed(seed)
    cfg = load_config(REPO / "yolo9000" / "configs" / "tiny.yaml", [f"model.tree={tree_file}"]).model
    return build_model(cfg), build_criterion(cfg, LossConfig())


def train(model, criterion, batch: Batch, device: torch.device, steps: int = 3) -> list[float]:
    model.to(device).train()
    criterion.to(device)
    optimizer = build_optimizer(model, TrainConfig(lr=1e-3), fused=True)
    batch = batch.to(device)
    losses = []
    for _ in range(steps):
        total = criterion.total(criterion(model(batch.images), batch))
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        losses.append(float(total.detach()))
    return losses


def mixed_batch(num_labels: int) -> Batch:
    raw = random_raw(num_labels, 2, 2, seed=3)
    batch = make_batch(raw, num_labels, list(range(num_labels)), torch.Generator().manual_seed(4))
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    return Batch(**{**batch.__dict__, "images": images})


def test_three_training_steps_match_the_cpu(tiny_tree, tmp_path):
    model, criterion = tiny_model(tiny_tree, tmp_path / "tree.json")
    twin, twin_criterion = tiny_model(tiny_tree, tmp_path / "tree.json")
    batch = mixed_batch(tiny_tree.num_nodes)
    device_losses, cpu_losses = train(model, criterion, batch, DEVICE), train(twin, twin_criterion, batch,
                                                                            torch.device("cpu"))
    assert device_losses == pytest.approx(cpu_losses, rel=1e-3)
    assert device_losses[-1] < device_losses[0]


def test_checkpoint_written_on_the_device_loads_on_the_cpu(tiny_tree, tmp_path):
    model, _ = tiny_model(tiny_tree, tmp_path / "tree.json")
    model.to(DEVICE).eval()
    path = save_checkpoint({"model": model.state_dict()}, tmp_path / "last.pt")
    state = load_checkpoint(path, map_location="cpu")
    assert all(t.device.type == "cpu" for t in state["model"].values())
    cpu_model, _ = tiny_model(tiny_tree, tmp_path / "tree.json", seed=1)
    cpu_model.load_state_dict(model_state(state, path))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(cpu_model.eval()(x), model(x.to(DEVICE)).cpu(), rtol=1e-4, atol=1e-4)


def test_render_on_the_device_matches_the_cpu():
    """The shared augmentation on the device: the same draws give the CPU's pixels to a level or two (the GPU
    resizes uint8 through float, the CPU with its own uint8 kernel)."""
    from yolo9000.data.transforms import TrainTransform, render

    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for h, w in ((120, 160), (90, 70))]
    params = [TrainTransform().sample(*image.shape[-2:], 96, g) for image in images]
    on_device = render([image.to(DEVICE) for image in images], params)
    assert on_device.device.type == DEVICE.type
    torch.testing.assert_close(on_device.cpu(), render(images, params), atol=2 / 255, rtol=0)


def test_device_jpeg_decode_is_close_to_the_host_decoder(tmp_path):
    """nvjpeg and libjpeg-turbo may round the IDCT and chroma upsampling differently: close on average."""
    from test_data_sources import write_image

    from yolo9000.data.device import EncodedBatch, decode_images
    from yolo9000.data.images import decode_image

    data = [write_image(tmp_path / f"{i}.jpg", height=40 + i, width=60, seed=i).read_bytes() for i in range(3)]
    payloads = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
    encoded = EncodedBatch(payloads, [1, 1, 1], [None] * 3, [f"{i}.jpg" for i in range(3)], {})
    for image, d in zip(decode_images(encoded, DEVICE), data):
        host = decode_image(d)
        assert image.device.type == DEVICE.type and image.shape == host.shape and image.dtype == torch.uint8
        assert (image.cpu().float() - host.float()).abs().mean() < 2.0


def test_device_data_path_gives_the_cpu_loader_batches(world):  # noqa: F811
    """End to end: the targets come from the workers, so they are identical; the pixels differ by the decoder's
    and the resize's rounding only."""
    add_odd_images(world)
    data_cfg = DataConfig(**{**SMALL, "multiscale": (64, 96), "multiscale_period": 2})
    cpu = build_train_loader(load_descriptor(world), None, data_cfg, seed=5, num_batches=6)
    device = build_train_loader(load_descriptor(world), None, data_cfg, seed=5, num_batches=6, encoded=True)
    for loader in (cpu, device):
        loader.batch_sampler.set_epoch(1)
    pairs = list(zip(cpu, DeviceFeeder(device, DEVICE)))
    assert len(pairs) == 6
    for a, b in pairs:
        assert b.images.device.type == DEVICE.type and b.images.shape == a.images.shape
        assert float((b.images.cpu() - a.images).abs().mean()) < 3 / 255
        for name in ("is_detection", "labels", "image_ids", "boxes"):
            assert torch.equal(getattr(b, name).cpu(), getattr(a, name)), name
    assert device.skipped == cpu.skipped


@pytest.mark.usefixtures("one_thread")
def test_training_with_device_decode_and_bf16(tmp_path):
    from engine_data import tiny_config, write_dataset

    from yolo9000 import engine

    (tmp_path / "data").mkdir()
    write_dataset(tmp_path / "data")
    cfg = tiny_config(tmp_path / "data", ["train.max_steps=3", "data.decode=device", f"train.device={DEVICE}",
                                          "train.amp=bf16"])
    result = engine.train(cfg, tmp_path / "run", log=lambda message: None)
    assert result.steps == 3 and result.stop_reason == "max_steps"
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())

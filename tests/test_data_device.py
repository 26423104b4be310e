"""The device data path (`data.decode: device`): the same batches as the CPU loader, decoded and augmented by the
shared tensor code on the training device (here the CPU; tests/test_gpu.py runs it on CUDA)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from test_data_loader import SMALL, world  # noqa: F401  (fixture)
from test_data_sources import write_image

from yolo9000.config import DataConfig
from yolo9000.data.descriptor import load_descriptor
from yolo9000.data.device import DeviceFeeder, EncodedBatch
from yolo9000.data.images import apply_orientation, decode_image, jpeg_header
from yolo9000.data.loader import build_train_loader


def add_odd_images(world_yaml: Path) -> None:
    """An EXIF-rotated JPEG and a PNG among the classification images: the worker decodes the PNG itself."""
    folder = world_yaml.parent / "cls" / "n1"
    write_image(folder / "png.png", height=30, width=44, seed=21)
    rotated = Image.open(write_image(folder / "turned.jpg", height=28, width=50, seed=22))
    exif = rotated.getexif()
    exif[0x0112] = 6
    rotated.save(folder / "turned.jpg", exif=exif.tobytes(), quality=95)


def batches(world_yaml: Path, decode: str, device: str = "cpu", stop: int | None = None):
    data_cfg = DataConfig(**{**SMALL, "multiscale": (64, 96), "multiscale_period": 2, "decode": decode})
    loader = build_train_loader(load_descriptor(world_yaml), None, data_cfg, seed=5, num_batches=8)
    loader.batch_sampler.set_epoch(1)
    stream = DeviceFeeder(loader, device) if decode == "device" else loader
    out = []
    for n, batch in enumerate(stream, 1):
        out.append(batch)
        if n == stop:
            return out, loader, loader.state_dict()
    return out, loader, loader.state_dict()


def test_device_path_gives_the_cpu_path_images_to_one_level(world):  # noqa: F811
    add_odd_images(world)
    cpu, cpu_loader, _ = batches(world, "cpu")
    device, device_loader, _ = batches(world, "device")
    assert len(cpu) == len(device) == 8
    sizes = set()
    for a, b in zip(cpu, device):
        sizes.add(a.size)
        torch.testing.assert_close(b.images, a.images, atol=1 / 255, rtol=0)
        for name in ("is_detection", "labels", "image_ids", "orig_sizes", "letterbox"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
        torch.testing.assert_close(b.boxes, a.boxes)
    assert sizes == {64, 96}  # multi-scale reaches the device path too
    # A truncated and a missing image are skipped and counted alike (the device retries on the host, then drops).
    assert device_loader.skipped == cpu_loader.skipped and cpu_loader.skipped["truncated image"] >= 1


def test_worker_hands_over_bytes_not_pixels_for_jpegs(world):  # noqa: F811
    add_odd_images(world)
    loader = build_train_loader(load_descriptor(world), None, DataConfig(**{**SMALL, "decode": "device"}), seed=0,
                                num_batches=4)
    kinds = set()
    for encoded in loader:
        assert isinstance(encoded, EncodedBatch)
        kinds |= {p.dim() for p in encoded.payloads}
        assert encoded.meta["labels"].shape[0] == len(encoded)
    assert 1 in kinds  # JPEG bytes; a PNG (3-D pixels) only when the sampler drew it


def test_feeder_resume_position_counts_batches_handed_out_not_prefetched(world):  # noqa: F811
    full, _, _ = batches(world, "device")
    first, loader, state = batches(world, "device", stop=3)
    assert state["position"] == 3 and state["epoch"] == 1
    data_cfg = DataConfig(**{**SMALL, "multiscale": (64, 96), "multiscale_period": 2, "decode": "device"})
    resumed = build_train_loader(load_descriptor(world), None, data_cfg, seed=5, num_batches=8)
    resumed.load_state_dict(state)
    rest = list(DeviceFeeder(resumed, "cpu"))
    assert len(first) + len(rest) == len(full)
    for a, b in zip(first + rest, full):
        assert torch.equal(a.image_ids, b.image_ids) and torch.equal(a.images, b.images)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_applied_by_tensor_ops_matches_the_decoder(tmp_path, orientation):
    from torchvision.io import decode_jpeg

    image = Image.open(write_image(tmp_path / "a.jpg", height=12, width=20, seed=orientation))
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(tmp_path / "b.jpg", exif=exif.tobytes(), quality=95)
    data = (tmp_path / "b.jpg").read_bytes()
    upright = decode_image(data)
    stored = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), apply_exif_orientation=False)
    assert torch.equal(apply_orientation(stored, orientation), upright)
    assert jpeg_header(data) == (*upright.shape[-2:], orientation)


def test_header_declines_what_the_device_cannot_decode(tmp_path):
    assert jpeg_header(write_image(tmp_path / "a.png", fmt="PNG").read_bytes()) is None
    assert jpeg_header(write_image(tmp_path / "c.jpg", mode="CMYK").read_bytes()) is None
    assert jpeg_header(b"\xff\xd8\xff\xe0 not really") is None


@pytest.mark.usefixtures("one_thread")
def test_training_on_the_device_path_gives_the_cpu_path_losses(tmp_path):
    from engine_data import tiny_config, write_dataset

    from yolo9000 import engine
    from yolo9000.logging import read_scalars

    (tmp_path / "data").mkdir()
    write_dataset(tmp_path / "data")
    losses = {}
    for decode in ("cpu", "device"):
        cfg = tiny_config(tmp_path / "data", ["train.max_steps=3", f"data.decode={decode}"])
        result = engine.train(cfg, tmp_path / decode, log=lambda message: None)
        assert result.steps == 3
        losses[decode] = [v for _, v in read_scalars(tmp_path / decode / "scalars.csv")["loss"]]
    assert losses["device"] == pytest.approx(losses["cpu"], rel=1e-4)

"""The device-fed data path (`data.decode: device`): JPEG decode and augmentation batched on the training device.

On a GPU the CPU loader cannot keep up: JPEG decoding plus augmentation costs a CPU core ~10 ms per image
(bench/data_speed.py), while one H100 trains YOLO9000 at thousands of images/s. So with `data.decode: device`:

* loader workers only read each image's encoded bytes and its JPEG header (size and EXIF orientation), draw the
  sample's augmentation (`TrainTransform.sample`, the same draw and RNG stream as the CPU path) and move its boxes
  (`TrainTransform.target`, pure box math): an `EncodedSample`. Images a device decoder cannot take (PNG, CMYK,
  an unparsable header) are decoded in the worker as before and travel as pixels;
* `encoded_collate` stacks the targets exactly as `collate` does and keeps the payloads as a list;
* `decode_batch` decodes the batch in one `torchvision.io.decode_jpeg(list, device=...)` call (nvjpeg on CUDA),
  applies the EXIF orientation with tensor ops and runs `transforms.render`, the augmentation code the CPU path
  runs too, over the whole batch on the device;
* `DeviceFeeder` does that in a background thread, on its own CUDA stream, a batch or two ahead, so decoding
  overlaps the training step; the step's stream waits on an event, never the host.

A JPEG that fails on the device (truncated, a variant nvjpeg refuses) is retried alone, then on the host
(`decode_image`, PIL's fallback), and dropped from its batch and counted as the CPU path counts it if that fails.
"""
from __future__ import annotations

import contextlib
import queue
import threading
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import torch
from torch import Tensor

from yolo9000.data.collate import Batch, collate_targets
from yolo9000.data.images import ImageLoadError, apply_orientation, check_pixels, decode_image, jpeg_header
from yolo9000.data.source import Source
from yolo9000.data.transforms import AugmentParams, TrainTransform, render

try:
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # torchvision without its decoders: every image is decoded on the host
    decode_jpeg = None


@dataclass(frozen=True)
class EncodedSample:
    """What a worker hands over for one image on the device path.

    Attributes:
        payload: UInt8[n] the JPEG's bytes, or UInt8[3, H, W] pixels the worker decoded (non-JPEG images).
        orientation: EXIF orientation to apply after decoding `payload` bytes (1 for pixels: already upright).
        params: the drawn augmentation.
        target: the augmented target (boxes in input pixels), as `TrainTransform` returns it.
        file: the image's file, for failure messages.
    """

    payload: Tensor
    orientation: int
    params: AugmentParams
    target: dict
    file: str


@dataclass(frozen=True)
class EncodedBatch:
    """A batch before decoding: per-image payloads and draws, and every `Batch` field but `images`."""

    payloads: list[Tensor]
    orientations: list[int]
    params: list[AugmentParams]
    files: list[str]
    meta: dict[str, Tensor]

    def __len__(self) -> int:
        return len(self.payloads)


def encode_sample(source: Source, index: int, transform: TrainTransform, size: int,
                  generator: torch.Generator | None) -> EncodedSample:
    """Read one image's bytes, draw its augmentation and move its boxes, without decoding it (if it is a JPEG).

    Raises:
        ImageLoadError: the file is missing, or (non-JPEG) cannot be decoded; as the CPU path raises it.
    """
    record = source.records[index]
    data = source.read_bytes(index)
    check_pixels(data, record.file)   # the one decoded-pixel limit, before the device decodes anything
    header = jpeg_header(data) if decode_jpeg is not None else None
    if header is None:
        pixels = decode_image(data, record.file)
        payload, orientation, (height, width) = pixels, 1, tuple(pixels.shape[-2:])
    else:
        height, width, orientation = header
        payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    params = transform.sample(height, width, size, generator)
    target = transform.target(source.target(index, (height, width)), params)
    return EncodedSample(payload, orientation, params, target, record.file)


def encoded_collate(samples: Sequence[EncodedSample]) -> EncodedBatch:
    """Targets stacked as `collate` stacks them; payloads kept as a list (every image has its own size)."""
    sizes = [s.target["orig_size"] for s in samples]
    return EncodedBatch(payloads=[s.payload for s in samples], orientations=[s.orientation for s in samples],
                        params=[s.params for s in samples], files=[s.file for s in samples],
                        meta=collate_targets([s.target for s in samples], sizes))


def _decode_one(payload: Tensor, orientation: int, device: torch.device, file: str) -> Tensor | ImageLoadError:
    """One JPEG on the device, else on the host (PIL reads some variants nvjpeg refuses), else the host's error."""
    try:
        return apply_orientation(decode_jpeg(payload, mode=ImageReadMode.RGB, device=device), orientation)
    except RuntimeError:
        pass
    try:
        return decode_image(payload.numpy().tobytes(), file).to(device, non_blocking=True)
    except ImageLoadError as err:
        return err


def decode_images(encoded: EncodedBatch, device: torch.device | str) -> list[Tensor | ImageLoadError]:
    """Every image of the batch as UInt8[3, H, W] upright RGB on `device`, or the error naming why it failed."""
    device = torch.device(device)
    out: list = [None] * len(encoded)
    jpegs = []
    for i, payload in enumerate(encoded.payloads):
        if payload.dim() == 1:
            jpegs.append(i)
        else:
            out[i] = payload.to(device, non_blocking=True)
    if not jpegs:
        return out
    with warnings.catch_warnings():
        # torchvision 0.29 warns on every call that its decoders move to torchcodec.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            decoded = decode_jpeg([encoded.payloads[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
            decoded = [apply_orientation(image, encoded.orientations[i]) for i, image in zip(jpegs, decoded)]
        except RuntimeError:  # the batched call returns nothing when one image fails: find it one by one
            decoded = [_decode_one(encoded.payloads[i], encoded.orientations[i], device, encoded.files[i])
                       for i in jpegs]
    for i, image in zip(jpegs, decoded):
        out[i] = image
    return out


def decode_batch(encoded: EncodedBatch, device: torch.device | str
                 ) -> tuple[Batch | None, list[tuple[str, str]]]:
    """Decode and augment a batch on `device` (module docstring).

    Returns:
        The `Batch` on `device` (None if no image decoded), and (reason, file) of each image that failed (dropped
        from the batch; reason as `ImageLoadError.reason`).
    """
    device = torch.device(device)
    images = decode_images(encoded, device)
    keep = [i for i, image in enumerate(images) if isinstance(image, Tensor)]
    failed = [(image.reason, encoded.files[i]) for i, image in enumerate(images) if not isinstance(image, Tensor)]
    if not keep:
        return None, failed
    meta = encoded.meta
    if failed:
        index = torch.tensor(keep)
        meta = {name: value[index] for name, value in meta.items()}
    pixels = render([images[i] for i in keep], [encoded.params[i] for i in keep])
    return Batch(images=pixels, **{name: value.to(device, non_blocking=True) for name, value in meta.items()}), failed


_END = object()


class DeviceFeeder:
    """Iterate a loader of `EncodedBatch`es as `Batch`es on `device`, decoded and augmented there ahead of use.

    A background thread pulls from the loader and runs `decode_batch` (on CUDA on a side stream, recording an
    event the consuming stream waits on), at most `prefetch` batches ahead, so decoding overlaps the training step.
    The loader's resume position (`loader.state_dict()`) counts the batches handed out, not those prefetched.

    Args:
        loader: a `SkippingLoader` built with `encoded=True`.
        device: the training device.
        prefetch: batches decoded ahead.
    """

    def __init__(self, loader, device: torch.device | str, prefetch: int = 2) -> None:
        self.loader, self.device, self.prefetch = loader, torch.device(device), prefetch

    def __len__(self) -> int:
        return len(self.loader)

    def _work(self, out: queue.Queue, stop: threading.Event) -> None:
        cuda = self.device.type == "cuda"
        stream = torch.cuda.Stream(self.device) if cuda else None
        try:
            with torch.cuda.stream(stream) if cuda else contextlib.nullcontext():
                for encoded in self.loader:
                    batch, failed = decode_batch(encoded, self.device)
                    event = torch.cuda.Event() if cuda else None
                    if event is not None:
                        event.record(stream)
                    position = self.loader.consumed
                    while not stop.is_set():
                        try:
                            out.put((batch, failed, event, position), timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            out.put(_END)
        except BaseException as err:  # handed to the consumer, which raises it with its traceback
            out.put(err)

    def __iter__(self) -> Iterator[Batch]:
        out: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()
        worker = threading.Thread(target=self._work, args=(out, stop), daemon=True, name="device-feeder")
        worker.start()
        try:
            while True:
                item = out.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                batch, failed, event, position = item
                self.loader.handed_out = position
                self._count_failures(failed)
                if batch is None:
                    continue
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    for f in fields(batch):  # made on the side stream, used on this one: keep them alive
                        getattr(batch, f.name).record_stream(current)
                yield batch
        finally:
            stop.set()
            while worker.is_alive():  # unblock a worker waiting to put, then let it see `stop`
                with contextlib.suppress(queue.Empty):
                    out.get(timeout=0.1)
            worker.join()
            self.loader.handed_out = None

    def _count_failures(self, failed: list[tuple[str, str]]) -> None:
        from yolo9000.data.loader import FAILURE_KINDS  # the loader imports this module

        for reason, file in failed:  # counted as the CPU path counts a sample its worker could not load
            kind = FAILURE_KINDS[reason]
            self.loader.skipped[kind] += 1
            if len(self.loader.first_failures) < 5:
                self.loader.first_failures.append((kind, file))


def feed(loader, device: torch.device | str) -> Iterator[Batch]:
    """The loader's batches as `Batch`es on `device`: through `DeviceFeeder` for an encoded loader, else as is."""
    return iter(DeviceFeeder(loader, device)) if getattr(loader, "encoded", False) else iter(loader)


"""Image decoding shared by every source: encoded bytes -> uint8 RGB tensor [3, H, W].

Sources hand out **uint8** images (cheap to pass between loader workers); `transforms.py` converts to float 0..1
at the end. Every odd format a real dataset holds must load as RGB: grayscale, CMYK, palette, alpha (composited
over mid-gray, the letterbox fill), 16-bit (scaled to 8 bits), and EXIF-rotated photos (turned upright).

JPEGs (nearly every training image) take torchvision's libjpeg-turbo decoder, which is strict about truncation,
converts grayscale/CMYK and applies EXIF orientation itself; anything it refuses goes through PIL, which either
copes or produces the error message naming the file.
"""
from __future__ import annotations

import io
import os
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from yolo9000.errors import ImageLoadError  # noqa: F401  (re-exported)

try:
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # torchvision announces moving its decoders to torchcodec; PIL then does all the work
    decode_jpeg = None

GRAY_FILL = 127  # darknet letterboxes and pads with .5 gray
EXIF_ORIENTATION = 0x0112
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

Reason = Literal["missing", "unreadable", "truncated", "too_large"]
# How `data check` and the training loader name each reason when they count skipped images.
REASON_KINDS = {"missing": "missing file", "truncated": "truncated image", "unreadable": "unreadable image",
                "too_large": "image too large"}
# The one decoded-pixel limit (detect, training, data check): a header declaring more is refused before any pixel
# is decoded, since a 20000 x 20000 JPEG of a few kilobytes would otherwise take 1.2 GB and half a minute.
# 8192 x 8192 covers every image of COCO and ImageNet-22k; YOLO9000_MAX_PIXELS raises or lowers it.
DEFAULT_MAX_PIXELS = 8192 * 8192
MAX_PIXELS_ENV = "YOLO9000_MAX_PIXELS"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic ...): they carry the size.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _pil_to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (16-bit scaled, alpha composited over gray)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        # 16-bit PNGs span 0..65535; PIL's own convert('L') would clip them to 0..255.
        scale = 257.0 if array.max(initial=0) > 255 else 1.0
        image = Image.fromarray(np.clip(array / scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (GRAY_FILL, GRAY_FILL, GRAY_FILL, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def _load_error(err: Exception, name: str) -> ImageLoadError:
    text = str(err)
    # PIL says "image file is truncated" (JPEG, PNG) or "Truncated File Read"; libjpeg "incomplete or truncated".
    reason: Reason = "truncated" if "truncat" in text.lower() or isinstance(err, EOFError) else "unreadable"
    return ImageLoadError(f"{name}: cannot decode image ({text or type(err).__name__})", reason=reason)


def _decode_pil(data: bytes, name: str) -> Tensor:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # strict: a truncated file raises here instead of yielding a half-gray picture
            image = ImageOps.exif_transpose(image)
            rgb = _pil_to_rgb(image)
    except (OSError, ValueError, EOFError, Image.DecompressionBombError, SyntaxError) as err:
        raise _load_error(err, name) from None
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()


def max_pixels() -> int:
    """The decoded-pixel limit: `YOLO9000_MAX_PIXELS` when set (a positive integer), else DEFAULT_MAX_PIXELS."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if value is None:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ImageLoadError(f"{MAX_PIXELS_ENV}={value!r} is not a positive integer", reason="unreadable")
    return limit


def _jpeg_header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first JPEG start-of-frame segment, or None when none is found."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:          # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:   # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _JPEG_SOF and pos + 9 <= len(data):
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return width, height
        if marker == 0xDA:          # start of scan without a frame header: not a valid JPEG
            return None
        pos += 2 + length
    return None


def header_size(data: bytes, name: str = "<bytes>") -> tuple[int, int] | None:
    """(width, height) the image's header declares, without decoding pixels; None when the header says nothing
    readable (decoding then produces the error).

    Raises:
        ImageLoadError: reason "too_large" when even the header parser refuses the size (PIL's own bomb limit).
    """
    if data[:3] == JPEG_MAGIC:
        size = _jpeg_header_size(data)
        if size is not None:
            return size
    if data[:8] == PNG_MAGIC and len(data) >= 24:
        return struct.unpack_from(">II", data, 16)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"{name}: image too large ({err})", reason="too_large") from None
    except (OSError, ValueError, EOFError, SyntaxError, struct.error):
        return None


def check_pixels(data: bytes, name: str = "<bytes>") -> None:
    """ImageLoadError (reason "too_large") when the header declares more pixels than `max_pixels()`."""
    size = header_size(data, name)
    limit = max_pixels()
    if size is not None and size[0] * size[1] > limit:
        raise ImageLoadError(f"{name}: image too large ({size[0]}x{size[1]} = {size[0] * size[1]:,} pixels; the "
                             f"limit is {limit:,}, set {MAX_PIXELS_ENV} to change it)", reason="too_large")


def decode_image(data: bytes, name: str = "<bytes>") -> Tensor:
    """Decode encoded image bytes to RGB.

    Args:
        data: the file's bytes (JPEG, PNG, BMP, ... anything PIL reads).
        name: used in error messages.
    Returns:
        UInt8[3, H, W] RGB, upright (EXIF orientation applied).
    Raises:
        ImageLoadError: naming `name` when the bytes are not a complete image (reason "truncated" or "unreadable"),
            or declare more pixels than `max_pixels()` (reason "too_large", checked before decoding).
    """
    if not data:
        raise ImageLoadError(f"{name}: empty file", reason="truncated")
    check_pixels(data, name)
    if decode_jpeg is not None and data[:3] == JPEG_MAGIC:
        try:
            with warnings.catch_warnings():
                # torchvision 0.29 warns on every call that its decoders move to torchcodec; PIL is our fallback.
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB,
                                   apply_exif_orientation=True)
        except RuntimeError:
            pass  # PIL decides: it reads a few JPEG variants libjpeg-turbo refuses, and words the error
    return _decode_pil(data, name)


def jpeg_header(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, EXIF orientation) of a JPEG a device decoder can take, from its header only; None otherwise.

    The size is upright (after the orientation), as `decode_image` would return it. None for anything that is not
    an 8-bit RGB or grayscale JPEG (CMYK, other formats) or whose header does not parse: those are decoded on the
    host (`decode_image`), which also words the error.
    """
    if data[:3] != JPEG_MAGIC:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode not in ("RGB", "L"):
                return None
            width, height = image.size
            orientation = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except (OSError, ValueError, EOFError, Image.DecompressionBombError, SyntaxError):
        return None
    if orientation not in range(1, 9):
        orientation = 1
    return (width, height, orientation) if orientation in (5, 6, 7, 8) else (height, width, orientation)


def apply_orientation(image: Tensor, orientation: int) -> Tensor:
    """Turn decoded pixels upright by their EXIF orientation (1-8), with tensor ops on any device.

    Args:
        image: [C, H, W] as stored in the file.
        orientation: the EXIF tag value; 1 (or anything outside 2-8) leaves the image as it is.
    Returns:
        [C, H', W'] upright (H' = W and W' = H for the turned orientations 5-8).
    """
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-1, -2)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-1, -2)
    if orientation == 6:
        return image.transpose(-1, -2).flip(-1)
    if orientation == 7:
        return image.transpose(-1, -2).flip(-1, -2)
    if orientation == 8:
        return image.transpose(-1, -2).flip(-2)
    return image


def read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ImageLoadError(f"{path}: cannot read ({err.strerror or err})", reason="missing") from None


def load_image(path: str | Path) -> Tensor:
    """UInt8[3, H, W] RGB from a file; ImageLoadError naming the file on any failure."""
    return decode_image(read_bytes(path), str(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) after EXIF orientation, read from the header only.

    Raises:
        ImageLoadError: naming the file when it is missing ("missing"), not an image ("unreadable"), or declares
            more pixels than `max_pixels()` ("too_large").
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    except FileNotFoundError:
        raise ImageLoadError(f"{path}: cannot read (No such file or directory)", reason="missing") from None
    except Image.DecompressionBombError as err:
        raise ImageLoadError(f"{path}: image too large ({err})", reason="too_large") from None
    except (OSError, ValueError, EOFError, SyntaxError) as err:
        raise _load_error(err, str(path)) from None
    if width * height > max_pixels():
        raise ImageLoadError(f"{path}: image too large ({width}x{height} = {width * height:,} pixels; the limit is "
                             f"{max_pixels():,}, set {MAX_PIXELS_ENV} to change it)", reason="too_large")
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


@dataclass(frozen=True)
class ImageInfo:
    """What `inspect_image` found: the upright size and the conversions loading applies.

    Attributes:
        size: (height, width) after EXIF orientation.
        conversions: kinds converted on load, from "grayscale", "CMYK", "alpha", "16-bit", "palette".
        exif_rotated: the EXIF orientation tag turns or mirrors the stored pixels.
    """

    size: tuple[int, int]
    conversions: tuple[str, ...]
    exif_rotated: bool


def _conversions(image: Image.Image, data: bytes) -> tuple[str, ...]:
    mode = image.mode
    out = []
    if mode in ("L", "1", "LA", "I;16", "I;16B", "I;16L", "I", "F"):
        out.append("grayscale")
    if mode == "CMYK":
        out.append("CMYK")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        out.append("alpha")
    if mode.startswith("I;16") or mode == "I" or (data[:8] == PNG_MAGIC and len(data) > 24 and data[24] == 16):
        out.append("16-bit")  # PIL opens 16-bit RGB PNGs as 8-bit RGB, so the PNG header (IHDR bit depth) tells
    if mode == "P":
        out.append("palette")
    return tuple(out)


def inspect_image(data: bytes, name: str = "<bytes>") -> ImageInfo:
    """Fully decode `data` the way loading does and say what was converted (for `yolo9000 data check`).

    Raises:
        ImageLoadError: as `decode_image` would, so a check fails exactly where training would skip.
    """
    check_pixels(data, name)
    try:
        with Image.open(io.BytesIO(data)) as image:
            conversions = _conversions(image, data)
            exif_rotated = image.getexif().get(EXIF_ORIENTATION, 1) not in (1, None)
    except (OSError, ValueError, EOFError, Image.DecompressionBombError, SyntaxError) as err:
        raise _load_error(err, name) from None
    pixels = decode_image(data, name)
    return ImageInfo(tuple(pixels.shape[-2:]), conversions, exif_rotated)

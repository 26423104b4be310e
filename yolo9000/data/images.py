"""Image decoding shared by every source: encoded bytes -> uint8 RGB tensor [3, H, W].

Sources hand out **uint8** images (cheap to pass between loader workers); `transforms.py` converts to float 0..1
at the end. Every odd format a real dataset holds must load as RGB: grayscale, CMYK, palette, alpha (composited
over mid-gray, the letterbox fill), 16-bit (scaled to 8 bits), and EXIF-rotated photos (turned upright).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

GRAY_FILL = 127  # darknet letterboxes and pads with .5 gray


class ImageLoadError(RuntimeError):
    """An image is missing, unreadable or truncated; the message names the file."""


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


def decode_image(data: bytes, name: str = "<bytes>") -> Tensor:
    """Decode encoded image bytes to RGB.

    Args:
        data: the file's bytes (JPEG, PNG, BMP, ... anything PIL reads).
        name: used in error messages.
    Returns:
        UInt8[3, H, W] RGB, upright (EXIF orientation applied).
    Raises:
        ImageLoadError: naming `name` when the bytes are not a complete image.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # strict: a truncated file raises here instead of yielding a half-gray picture
            image = ImageOps.exif_transpose(image)
            rgb = _pil_to_rgb(image)
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
        raise ImageLoadError(f"{name}: cannot decode image ({err})") from None
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()


def read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise ImageLoadError(f"{path}: cannot read ({err.strerror or err})") from None


def load_image(path: str | Path) -> Tensor:
    """UInt8[3, H, W] RGB from a file; ImageLoadError naming the file on any failure."""
    return decode_image(read_bytes(path), str(path))


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) after EXIF orientation, read from the header only."""
    with Image.open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)

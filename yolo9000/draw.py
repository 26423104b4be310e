"""Annotated pictures of detections: boxes, the decided class and its parent chain with conditional probabilities.

Each box gets a two-line label: the decided node and the score, then the chain up the tree with P(node | parent) at
each step ("dalmatian .82 < dog .91 < canine .95 < …"), truncated to fit the box (or a share of the picture).
Colours follow the detection's *top-level* node, so all animals share a colour, people another and artifacts a
third: the first node on the root path holding at most `dominant_share` (30 %) of the tree's leaves, which skips
WordNet's broad chains ("object < whole < living thing < organism") that would otherwise colour everything alike. Small images are
scaled up by an integer factor first (nearest neighbour, so pixels stay honest) so labels stay readable.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from wordtree.tree import WordTree
from yolo9000.postprocess import Detection

# Distinct, print-friendly colours (Tableau 10 and a few from Kelly's list), as RGB.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 83, 138), (246, 118, 142),
    (255, 179, 0), (128, 62, 117), (193, 0, 32), (0, 125, 52),
)
FONT_FILES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")


@lru_cache(maxsize=32)
def _font(size: int, bold: bool) -> ImageFont.ImageFont:
    try:
        return ImageFont.truetype(FONT_FILES[bold], size)
    except OSError:
        return ImageFont.load_default(size)  # Pillow's bundled font: works without system fonts


@lru_cache(maxsize=8)
def top_level_nodes(tree: WordTree, dominant_share: float = 0.3) -> tuple[int, ...]:
    """For every node, the node its colour comes from: its first root-path node holding <= dominant_share of leaves.

    Returns:
        N colour-node indices (a node whose whole path is dominant maps to itself).
    """
    leaves = tree.is_leaf.nonzero().squeeze(1)
    on_path = tree.paths[leaves]
    valid = on_path >= 0
    counts = torch.zeros(tree.num_nodes).index_add_(0, on_path[valid], torch.ones(int(valid.sum())))
    share = counts / max(1, leaves.numel())
    small = torch.where(tree.paths >= 0, share[tree.paths.clamp(min=0)] <= dominant_share, False)  # [N, D+1]
    first = torch.where(small.any(dim=1), small.float().argmax(dim=1), tree.depth)
    return tuple(tree.paths.gather(1, first[:, None]).squeeze(1).tolist())


@lru_cache(maxsize=8)
def _colour_slots(tree: WordTree) -> dict[int, int]:
    """Palette slot of each colour node, numbered in tree order so sibling top-level nodes get different colours."""
    return {node: i for i, node in enumerate(sorted(set(top_level_nodes(tree))))}


def colour_of(detection: Detection, tree: WordTree | None) -> tuple[int, int, int]:
    """The detection's colour: by top-level node for a tree model, by class for a flat one."""
    if tree is None:
        return PALETTE[detection.label % len(PALETTE)]
    return PALETTE[_colour_slots(tree)[top_level_nodes(tree)[detection.label]] % len(PALETTE)]


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def _prob(p: float) -> str:
    """Compact probability: '.82', '1.0', '<.01'."""
    if p >= 0.995:
        return "1.0"
    if p < 0.005:
        return "<.01"
    return f"{p:.2f}".lstrip("0")


def chain_text(detection: Detection, font: ImageFont.ImageFont, max_width: float, max_steps: int = 4) -> str:
    """'name p < parent p < grandparent p < …' from the decided node upwards, at most `max_steps` nodes and
    `max_width` pixels; '…' marks a cut. Empty for a flat model or a root (line one says it all)."""
    steps = list(reversed(detection.path))
    if detection.wnid is None or len(steps) <= 1:
        return ""
    parts: list[str] = []
    for i, step in enumerate(steps):
        candidate = " < ".join(parts + [f"{step.name} {_prob(step.prob)}"])
        more = i + 1 < len(steps)
        if len(parts) >= max_steps or (parts and font.getlength(candidate + (" < …" if more else "")) > max_width):
            return " < ".join(parts) + " < …"
        parts.append(f"{step.name} {_prob(step.prob)}")
    return " < ".join(parts)


def _as_pil(image: Image.Image | torch.Tensor) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if image.dtype != torch.uint8:
        image = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(image.permute(1, 2, 0).cpu().numpy())


def draw_detections(image: Image.Image | torch.Tensor, detections: Sequence[Detection], tree: WordTree | None = None,
                    max_steps: int = 4, min_side: int = 384) -> Image.Image:
    """Draw detections on a copy of `image`.

    Args:
        image: PIL image or UInt8/float [3, H, W] RGB tensor (the original image the boxes refer to).
        detections: boxes in that image's pixels.
        tree: the WordTree (colours by top-level node); None for a flat model (colours by class).
        max_steps: at most this many nodes in the chain line.
        min_side: images whose shorter side is smaller are scaled up by an integer factor first.
    Returns:
        A new RGB PIL image.
    """
    canvas = _as_pil(image)
    scale = max(1, math.ceil(min_side / max(1, min(canvas.size))))
    if scale > 1:
        canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    width, height = canvas.size
    short = min(width, height)
    big, small = _font(max(11, min(22, round(short / 30))), True), _font(max(10, min(18, round(short / 38))), False)
    line = max(2, round(short / 220))
    draw = ImageDraw.Draw(canvas)
    # Best detections last, so their labels are on top.
    for det in sorted(detections, key=lambda d: d.score):
        x1, y1, x2, y2 = (v * scale for v in det.box)
        colour = colour_of(det, tree)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=line)
        title = f"{det.name} {det.score:.2f}"
        chain = chain_text(det, small, max(x2 - x1, 0.45 * width), max_steps)
        lines = [(title, big)] + ([(chain, small)] if chain else [])
        pad = max(2, line)
        sizes = [draw.textbbox((0, 0), text, font=font) for text, font in lines]
        label_w = max(b[2] - b[0] for b in sizes) + 2 * pad
        label_h = sum(b[3] for b in sizes) + pad * (len(lines) + 1)
        # Above the box when it fits, else inside its top edge; never past the picture's right edge.
        top = y1 - label_h if y1 - label_h >= 0 else y1
        left = min(max(0.0, x1), max(0.0, width - label_w))
        draw.rectangle((left, top, left + label_w, top + label_h), fill=colour)
        ink = _text_colour(colour)
        y = top + pad
        for (text, font), box in zip(lines, sizes):
            draw.text((left + pad, y), text, font=font, fill=ink)
            y += box[3] + pad
    return canvas


def save_annotated(image: Image.Image | torch.Tensor, detections: Sequence[Detection], path: str | Path,
                   tree: WordTree | None = None, **options) -> Path:
    """draw_detections and write the PNG (parent folders created). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draw_detections(image, detections, tree, **options).save(path, format="PNG")
    return path

"""Cross-domain renderings of a real photo, standing in for synthetic images.

No image generator runs here, so each query type is a cheap, deterministic transform of a
non-exemplar photo that moves it away from the photo domain the way a generated image would:
a change of medium (sketch, painterly), of palette (posterise), of context (composite), or of
viewpoint (perspective). Every renderer is `render(img, rng, background) -> RGB image` with
`img` an RGB PIL image, `rng` a seeded `random.Random`, `background` an RGB image or None.
"""

from __future__ import annotations

import random
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

Renderer = Callable[[Image.Image, random.Random, "Image.Image | None"], Image.Image]


def render_photo(img: Image.Image, rng: random.Random, background: Image.Image | None) -> Image.Image:
    """The other real photo itself: attribution across settings, not across media."""
    return img.copy()


def _sketch_dodge(gray: Image.Image, rng: random.Random) -> Image.Image:
    # Classic pencil sketch: colour-dodge the grey image with its blurred negative.
    blurred_negative = ImageOps.invert(gray).filter(ImageFilter.GaussianBlur(rng.uniform(6, 14)))
    g = np.asarray(gray, dtype=np.float32)
    b = np.asarray(blurred_negative, dtype=np.float32)
    dodge = np.clip(g * 255.0 / np.maximum(255.0 - b, 1.0), 0, 255).astype(np.uint8)
    return ImageOps.autocontrast(Image.fromarray(dodge), cutoff=1)


def _sketch_edges(gray: Image.Image, rng: random.Random) -> Image.Image:
    # Ink drawing: inverted edge magnitude of a smoothed image, gamma-darkened strokes.
    edges = gray.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 2.0))).filter(ImageFilter.FIND_EDGES)
    e = np.asarray(ImageOps.autocontrast(edges, cutoff=1), dtype=np.float32) / 255.0
    ink = 255.0 * (1.0 - np.clip(e * rng.uniform(1.5, 2.5), 0, 1) ** 0.8)
    return Image.fromarray(ink.astype(np.uint8))


def render_sketch(img: Image.Image, rng: random.Random, background: Image.Image | None) -> Image.Image:
    """Pencil (dodge) or ink (edge) sketch, grey."""
    gray = ImageOps.grayscale(img)
    sketch = _sketch_dodge(gray, rng) if rng.random() < 0.5 else _sketch_edges(gray, rng)
    return sketch.convert("RGB")


def render_painterly(img: Image.Image, rng: random.Random, background: Image.Image | None) -> Image.Image:
    """Oil-paint look: median + mode filters flatten texture into strokes, then a small palette."""
    out = img.filter(ImageFilter.MedianFilter(5))
    out = out.filter(ImageFilter.ModeFilter(rng.choice([5, 7])))
    out = out.quantize(colors=rng.choice([12, 16]), method=Image.Quantize.MEDIANCUT).convert("RGB")
    out = out.filter(ImageFilter.SMOOTH_MORE)
    return ImageEnhance.Color(out).enhance(rng.uniform(1.2, 1.6))


def render_posterise(img: Image.Image, rng: random.Random, background: Image.Image | None) -> Image.Image:
    """Colour remap: hue rotation (60-300 degrees) and 2-3 bit posterisation."""
    h, s, v = img.convert("HSV").split()
    shift = int(rng.uniform(60, 300) / 360 * 256)
    h = h.point(lambda x: (x + shift) % 256)
    out = Image.merge("HSV", (h, s, v)).convert("RGB")
    out = ImageEnhance.Color(out).enhance(rng.uniform(1.2, 1.8))
    return ImageOps.posterize(out, rng.choice([2, 3]))


def _ellipse_mask(size: tuple[int, int], feather: float) -> Image.Image:
    # The DreamBooth subjects sit near the frame centre, so a feathered centre ellipse
    # is a segmentation-free cut-out that keeps most of the subject and little of its setting.
    w, h = size
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((0.12 * w, 0.08 * h, 0.88 * w, 0.92 * h), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(feather))


def render_composite(img: Image.Image, rng: random.Random, background: Image.Image | None) -> Image.Image:
    """The subject cut out with a centre ellipse and pasted onto another background."""
    if background is None:
        raise ValueError("composite needs a background image")
    canvas = ImageOps.fit(background.convert("RGB"), img.size, Image.Resampling.BICUBIC)
    scale = rng.uniform(0.45, 0.75)
    w, h = max(1, int(img.width * scale)), max(1, int(img.height * scale))
    cut = img.resize((w, h), Image.Resampling.BICUBIC)
    mask = _ellipse_mask((w, h), feather=0.04 * min(w, h))
    x = rng.randint(0, canvas.width - w)
    y = rng.randint(0, canvas.height - h)
    canvas.paste(cut, (x, y), mask)
    return canvas


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    # Solve the 8 homography coefficients PIL expects: they map output (dst) points to input (src) points.
    rows = []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(rows, dtype=np.float64)
    b = np.array([c for point in src for c in point], dtype=np.float64)
    return np.linalg.solve(a, b).tolist()


def render_perspective(img: Image.Image, rng: random.Random, background: Image.Image | None) -> Image.Image:
    """Strong perspective warp (one side recedes), cropped to the filled part and resized back."""
    w, h = img.size
    k = rng.uniform(0.15, 0.3)  # the receding side shows 1 + 2k times its length of the photo
    side = rng.choice(["left", "right", "top", "bottom"])
    corners = [(0, 0), (w, 0), (w, h), (0, h)]  # tl, tr, br, bl in the output
    dx, dy = k * w, k * h
    src = {
        "left": [(0, -dy), (w, 0), (w, h), (0, h + dy)],
        "right": [(0, 0), (w, -dy), (w, h + dy), (0, h)],
        "top": [(-dx, 0), (w + dx, 0), (w, h), (0, h)],
        "bottom": [(0, 0), (w, 0), (w + dx, h), (-dx, h)],
    }[side]
    coeffs = _perspective_coeffs(corners, src)
    warped = img.transform(img.size, Image.Transform.PERSPECTIVE, coeffs, Image.Resampling.BICUBIC)
    # The far side leaves empty corners; keep the largest same-aspect window that has none of them.
    mask = Image.new("L", img.size, 255).transform(img.size, Image.Transform.PERSPECTIVE, coeffs)
    full = np.asarray(mask) == 255
    rows, cols = np.flatnonzero(full.all(axis=1)), np.flatnonzero(full.all(axis=0))
    if side in ("left", "right"):
        y0, y1 = int(rows[0]), int(rows[-1]) + 1
        cw = int(w * (y1 - y0) / h)
        x0 = rng.randint(0, w - cw)
        box = (x0, y0, x0 + cw, y1)
    else:
        x0, x1 = int(cols[0]), int(cols[-1]) + 1
        ch = int(h * (x1 - x0) / w)
        y0 = rng.randint(0, h - ch)
        box = (x0, y0, x1, y0 + ch)
    return warped.crop(box).resize(img.size, Image.Resampling.BICUBIC)


RENDERERS: dict[str, Renderer] = {
    "photo": render_photo,
    "sketch": render_sketch,
    "painterly": render_painterly,
    "posterise": render_posterise,
    "composite": render_composite,
    "perspective": render_perspective,
}
QUERY_TYPES = tuple(RENDERERS)

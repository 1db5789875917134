"""Distinct JPEG variants of a photo (random crop, flip, colour, width, quality), for the ingest and GPU
embedding benches: copies that are neither identical files nor identical pixels. Pillow only, so that
bench.gpu_embed runs on a bare GPU host."""
import random

from PIL import Image, ImageEnhance


def photo_variant(image: Image.Image, rng: random.Random, widths: tuple[int, int]) -> Image.Image:
    """A random crop (70-100 % a side), maybe mirrored, colour 0.7-1.3, resized to a width in `widths`."""
    w, h = image.size
    keep = rng.uniform(0.7, 1.0)
    x, y = rng.randint(0, int(w * (1 - keep))), rng.randint(0, int(h * (1 - keep)))
    image = image.crop((x, y, x + int(w * keep), y + int(h * keep)))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))
    side = rng.randint(*widths)
    return image.resize((side, max(1, int(side * image.height / image.width))), Image.BICUBIC)


def jpeg_quality(rng: random.Random) -> int:
    return rng.randint(80, 95)

"""Image bytes for tests: real photos from the repository's DreamBooth sample, and broken files."""
import io

from PIL import Image

from tests.conftest import DREAMBOOTH


def photo_path(subject: str, index: int):
    return DREAMBOOTH / subject / f"{index:02d}.jpg"


def photo_bytes(subject: str, index: int) -> bytes:
    return photo_path(subject, index).read_bytes()


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def cropped_reencoded(subject: str, index: int, keep: float = 0.8) -> bytes:
    """A centre crop, resized and re-encoded at low quality: a near copy with no shared bytes."""
    image = Image.open(photo_path(subject, index)).convert("RGB")
    w, h = image.size
    dx, dy = int(w * (1 - keep) / 2), int(h * (1 - keep) / 2)
    crop = image.crop((dx, dy, w - dx, h - dy)).resize((200, 200), Image.BICUBIC)
    return encode(crop, "JPEG", quality=60)


def truncated_jpeg() -> bytes:
    data = photo_bytes("dog", 0)
    return data[: len(data) // 2]


def tiny_png(size=(1, 1)) -> bytes:
    return encode(Image.new("RGB", size, (200, 10, 10)), "PNG")


def huge_png(side: int = 20000) -> bytes:
    """Few bytes on disk, `side`² pixels once decoded: a decompression bomb."""
    return encode(Image.new("1", (side, side)), "PNG", optimize=True)

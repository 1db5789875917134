"""Checks every uploaded image passes before anything is stored: format decided by content,
limits on bytes and pixels (checked from the header, before decoding, so decompression bombs never
expand), a full decode to catch truncation. Pure Pillow: the API uses it without torch."""
import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps

# Formats decided by the bytes, never by the file name. Animated images use their first frame.
MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif",
               "BMP": "image/bmp", "TIFF": "image/tiff"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff"}


class ImageRejected(ValueError):
    """An upload that is not an acceptable image; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str, status: int = 422):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    sha256: str
    format: str
    media_type: str
    extension: str
    width: int
    height: int


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    min_side: int


def check_image(data: bytes, limits: ImageLimits) -> CheckedImage:
    """Validate uploaded bytes; raise ImageRejected with a clear reason otherwise."""
    if not data:
        raise ImageRejected("empty", "the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise ImageRejected("too_large", f"the file has {len(data)} bytes; the limit is {limits.max_bytes}", 413)
    image = _open_header(data)
    _check_dimensions(image.size, limits)
    _decode_fully(image)
    return CheckedImage(data, hashlib.sha256(data).hexdigest(), image.format, MEDIA_TYPES[image.format],
                        EXTENSIONS[image.format], *image.size)


def _open_header(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", str(exc), 413) from exc
    except Exception as exc:  # Pillow raises several types for unrecognisable data
        raise ImageRejected("not_an_image", "the file is not an image in a supported format") from exc
    if image.format not in MEDIA_TYPES:
        raise ImageRejected("unsupported_format",
                            f"{image.format} images are not supported; use one of {', '.join(MEDIA_TYPES)}", 415)
    return image


def _check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width * height > limits.max_pixels:
        raise ImageRejected("too_many_pixels",
                            f"the image is {width}×{height} pixels; the limit is {limits.max_pixels} pixels", 413)
    if min(width, height) < limits.min_side:
        raise ImageRejected("too_small",
                            f"the image is {width}×{height}; each side must be at least {limits.min_side} pixels")


def _decode_fully(image: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too_many_pixels", str(exc), 413) from exc
    except Exception as exc:
        raise ImageRejected("corrupt", f"the image could not be decoded: {exc}") from exc


def decode_rgb(data: bytes) -> Image.Image:
    """Bytes that passed `check_image` -> upright RGB image (EXIF orientation applied, alpha on white)."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "I;16" or image.mode == "I":
        # 16-bit grayscale: scale to 8 bits rather than clipping at 255.
        return image.point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")

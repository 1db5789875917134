"""Checks every uploaded image passes before anything is stored: format decided by content,
limits on bytes and pixels (checked from the header, before decoding, so decompression bombs never
expand), a full decode to catch truncation. Pure Pillow: the API uses it without torch."""
import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image

# Formats decided by the bytes, never by the file name. Animated images use their first frame.
# MPO is a JPEG with extra frames (stereo and many phone cameras write it): it is taken as a JPEG.
MEDIA_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
               "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff"}
EXTENSIONS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp",
              "TIFF": "tiff"}
# Leading bytes of the formats we take: a file that starts like one but will not open is corrupt,
# not "some other format".
_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\0", b"MM\0*")
# Pillow's EXIF orientation values -> the transposition that makes the pixels upright.
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


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
        _reject_metadata_bomb(exc)
        if _looks_supported(data):
            raise ImageRejected("corrupt", "the file starts like a supported image but its header is broken") from exc
        raise ImageRejected("not_an_image", "the file is not an image in a supported format") from exc
    if image.format not in MEDIA_TYPES:
        raise ImageRejected("unsupported_format",
                            f"{image.format} images are not supported; use one of {', '.join(MEDIA_TYPES)}", 415)
    return image


def _looks_supported(data: bytes) -> bool:
    return data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _reject_metadata_bomb(exc: Exception) -> None:
    # PNG zTXt/iTXt chunks inflating past PngImagePlugin.MAX_TEXT_CHUNK (or all text past MAX_TEXT_MEMORY)
    # raise a bare ValueError naming the limit: a zip bomb in the metadata, refused like a pixel bomb.
    if isinstance(exc, ValueError) and "MAX_TEXT" in str(exc):
        raise ImageRejected("metadata_too_large", f"the image's text metadata is too large: {exc}", 413) from exc


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
        _reject_metadata_bomb(exc)  # text chunks after the image data are read here
        raise ImageRejected("corrupt", f"the image could not be decoded: {exc}") from exc


def decode_rgb(data: bytes, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Bytes that passed `check_image` -> upright RGB image (EXIF orientation applied, alpha on white).
    Never raises on such bytes: the worker calls it long after the upload was accepted. `draft_size` lets
    a JPEG decode at a reduced scale (no smaller than that size): thumbnails need not decode every pixel."""
    image = Image.open(io.BytesIO(data))
    if draft_size is not None:
        image.draft("RGB", draft_size)
    return _to_rgb(_upright(image))


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation to the pixels only. ImageOps.exif_transpose also rewrites the EXIF
    block, which raises (struct.error, TypeError) on broken tags; the pixels are all we need."""
    try:
        orientation = image.getexif().get(0x0112)  # also reads XMP's tiff:Orientation
    except Exception:  # unreadable EXIF: keep the stored orientation
        orientation = None
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return image.transpose(method) if method is not None else image


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.has_transparency_data:  # RGBA, LA, PA, P or RGB with tRNS: composite on white
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode.startswith("I"):
        # 16-bit grayscale (I;16, I;16B, or I as some TIFFs give it): scale to 8 bits rather than clip at 255.
        return image.convert("I").point(lambda v: v / 256).convert("L").convert("RGB")
    return image.convert("RGB")

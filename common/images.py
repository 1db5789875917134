"""Checks every uploaded image passes before anything is stored: format decided by content,
limits on what decoding will cost decided from the header before any pixel is decoded (bytes, pixels,
aspect ratio, JPEG scans, frames), then a full decode to catch truncation, run in a child process
with CPU-time and memory limits (common.sandbox), so no file can cost more than that budget.
Pure Pillow: the API uses it without torch."""
import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image

from common.sandbox import LimitedChild, LimitExceeded, run_limited

# Load every format plugin now: the sandbox's forkserver imports this module once, so each child
# it forks starts with them (lazily, each child would import them again: ~70 ms per image).
Image.init()

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
    """What an image may cost. Defaults equal the settings' defaults (common.settings)."""
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 16
    # Long side / short side. The encoder resizes the short side to ~256 px, so this also bounds the
    # resized image to 256 x 256*ratio pixels (a 2,490,000 x 16 strip would become 256 x 40 M).
    max_aspect_ratio: float = 20.0
    max_frames: int = 1000        # animated GIF/PNG/WebP, multi-page TIFF, MPO (only the first is used)
    max_jpeg_scans: int = 100     # progressive JPEGs: each scan is another pass over every coefficient
    decode_cpu_s: int = 10        # CPU seconds for the full check of one image (child process)
    decode_memory_bytes: int = 1024 * 1024 * 1024  # address space of that child process
    decode_concurrency: int = 4   # checks running at once per process (memory: this x the above)
    decode_child_max_checks: int = 200  # checks one reused child answers before it is replaced


def limits_from(settings) -> ImageLimits:
    """The limits configured in common.settings.Settings."""
    return ImageLimits(settings.max_upload_bytes, settings.max_image_pixels, settings.min_image_side,
                       settings.max_image_aspect_ratio, settings.max_image_frames, settings.max_jpeg_scans,
                       settings.image_decode_cpu_s, settings.image_decode_memory_bytes,
                       settings.image_decode_concurrency, settings.image_decode_child_max_checks)


def check_image(data: bytes, limits: ImageLimits) -> CheckedImage:
    """Validate uploaded bytes; raise ImageRejected with a clear reason otherwise. The decoding
    happens in a child process with CPU and memory limits: over them the image is `too_costly`."""
    _admit_size(data, limits)
    try:
        outcome = run_limited(inspect_image, data, limits, cpu_s=limits.decode_cpu_s,
                              memory_bytes=limits.decode_memory_bytes, wall_s=_wall_s(limits),
                              concurrency=limits.decode_concurrency)
    except LimitExceeded as exc:
        raise _too_costly(limits) from exc
    return _checked(data, outcome)


class ImageChecker:
    """`check_image` for many images in a row (a bulk request): one sandboxed child decodes them one
    after another (common.sandbox.LimitedChild), instead of one child per image, which costs ~11 ms of
    CPU against <1 ms for decoding a typical photo. Each image keeps its own CPU and memory budget, and an
    image the shared child cannot check within them is checked again alone, exactly as `check_image`
    would: every answer is `check_image`'s. Use from one thread, with `with` (it ends the child).

    A child answers at most `limits.decode_child_max_checks` images, then a new one starts, and it is never
    kept after a limit stopped it: a decoder bug that one upload exploits cannot live on for long across
    other uploads (other tenants' in the API's pool, common.image_pool). What such a child could do to
    those is bounded anyway: it only answers (format, width, height) or a rejection, the stored bytes are
    the parent's, and workers apply the header limits again when they decode (decode_rgb)."""

    def __init__(self, limits: ImageLimits):
        self.limits = limits
        self._child = LimitedChild(inspect_image, cpu_s=limits.decode_cpu_s, memory_bytes=limits.decode_memory_bytes,
                                   wall_s=_wall_s(limits), concurrency=limits.decode_concurrency,
                                   max_calls=limits.decode_child_max_checks)

    def check(self, data: bytes) -> CheckedImage:
        _admit_size(data, self.limits)
        try:
            outcome = self._child(data, self.limits)
        except LimitExceeded as exc:
            raise _too_costly(self.limits) from exc
        return _checked(data, outcome)

    @property
    def pid(self) -> int | None:
        """The child's process id, None when none runs (tests: which child checked)."""
        return self._child.pid

    def close(self) -> None:
        self._child.close()

    def __enter__(self) -> "ImageChecker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _admit_size(data: bytes, limits: ImageLimits) -> None:
    if not data:
        raise ImageRejected("empty", "the uploaded file is empty")
    if len(data) > limits.max_bytes:
        raise ImageRejected("too_large", f"the file has {len(data)} bytes; the limit is {limits.max_bytes}", 413)


def _wall_s(limits: ImageLimits) -> float:
    return limits.decode_cpu_s * 3 + 5


def _too_costly(limits: ImageLimits) -> ImageRejected:
    return ImageRejected("too_costly", "decoding this image needs more CPU time or memory than allowed "
                         f"({limits.decode_cpu_s} s, {limits.decode_memory_bytes // 2**20} MiB)", 413)


def _checked(data: bytes, outcome: tuple) -> CheckedImage:
    if outcome[0] == "rejected":
        raise ImageRejected(*outcome[1:])
    fmt, width, height = outcome[1:]
    return CheckedImage(data, hashlib.sha256(data).hexdigest(), fmt, MEDIA_TYPES[fmt], EXTENSIONS[fmt],
                        width, height)


def inspect_image(data: bytes, limits: ImageLimits) -> tuple:
    """Runs in the child process: ("ok", format, width, height) or ("rejected", reason, detail, status)."""
    try:
        _admit_webp_canvas(data, limits)
        image = _open_header(data)
        admit_header(image, data, limits)
        _check_frames(image, limits)
        _decode_fully(image)
    except ImageRejected as exc:
        return ("rejected", exc.reason, exc.detail, exc.status)
    except MemoryError:
        raise  # the sandbox answers "too costly"
    except Exception:  # e.g. counting the frames of a damaged animation
        return ("rejected", "corrupt", "the image could not be decoded (truncated or damaged data)", 422)
    return ("ok", image.format, *image.size)


def admit_header(image: Image.Image, data: bytes, limits: ImageLimits) -> None:
    """Refuse, from the header alone, what would be too costly to decode or to resize."""
    _check_dimensions(image.size, limits)
    if image.format in ("JPEG", "MPO"):
        # 0xFFDA (start of scan) cannot occur inside entropy-coded data (0xFF is stuffed there), so
        # this counts the scans; an embedded thumbnail adds its own, hence the generous limit.
        scans = data.count(b"\xff\xda")
        if scans > limits.max_jpeg_scans:
            raise ImageRejected("too_many_scans", f"the JPEG has {scans} scans; the limit is "
                                f"{limits.max_jpeg_scans}", 413)


# Peak memory per canvas pixel when Pillow opens and decodes a WebP (measured with Pillow 13: a
# lossless 16383 x 2440 WebP of 1.6 KB peaks at ~630 MB). Pillow allocates the canvas while *opening*
# a WebP, so its size is read from the RIFF header here, before Pillow sees the file.
_WEBP_BYTES_PER_PIXEL = 16


def _admit_webp_canvas(data: bytes, limits: ImageLimits) -> None:
    size = webp_canvas_size(data)
    if size is None:
        return
    width, height = size
    if width * height > limits.max_pixels:
        raise ImageRejected("too_many_pixels",
                            f"the image is {width}×{height} pixels; the limit is {limits.max_pixels} pixels", 413)
    if width * height * _WEBP_BYTES_PER_PIXEL > limits.decode_memory_bytes:
        raise ImageRejected("too_costly", f"decoding this {width}×{height} WebP needs more memory than allowed "
                            f"({limits.decode_memory_bytes // 2**20} MiB)", 413)


def webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a WebP's first chunk (VP8X, VP8L or VP8), or None if not a WebP."""
    if len(data) < 30 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    chunk = data[12:16]
    if chunk == b"VP8X":
        return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 ":
        return (int.from_bytes(data[26:28], "little") & 0x3FFF), (int.from_bytes(data[28:30], "little") & 0x3FFF)
    return None


def _check_frames(image: Image.Image, limits: ImageLimits) -> None:
    frames = getattr(image, "n_frames", 1)
    if frames > limits.max_frames:
        raise ImageRejected("too_many_frames", f"the image has {frames} frames; the limit is {limits.max_frames}",
                            413)


def _open_header(data: bytes) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageRejected("too_many_pixels", "the image declares more pixels than the limit allows", 413) from exc
    except MemoryError:
        raise
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
        raise ImageRejected("metadata_too_large", "the image's text metadata inflates past the limit", 413) from exc


def _check_dimensions(size: tuple[int, int], limits: ImageLimits) -> None:
    width, height = size
    if width * height > limits.max_pixels:
        raise ImageRejected("too_many_pixels",
                            f"the image is {width}×{height} pixels; the limit is {limits.max_pixels} pixels", 413)
    if min(width, height) < limits.min_side:
        raise ImageRejected("too_small",
                            f"the image is {width}×{height}; each side must be at least {limits.min_side} pixels")
    if max(width, height) > limits.max_aspect_ratio * min(width, height):
        raise ImageRejected("too_elongated", f"the image is {width}×{height}; the long side may be at most "
                            f"{limits.max_aspect_ratio:g} times the short side")


def _decode_fully(image: Image.Image) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too_many_pixels", "the image has more pixels than the limit allows", 413) from exc
    except MemoryError:
        raise  # the sandbox reports it as too costly, never as corrupt
    except Exception as exc:
        _reject_metadata_bomb(exc)  # text chunks after the image data are read here
        # Pillow's own wording stays in the logs, not in answers: the reason says what happened.
        raise ImageRejected("corrupt", "the image could not be decoded (truncated or damaged data)") from exc


def decode_rgb(data: bytes, limits: ImageLimits | None = None,
               draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Bytes that passed `check_image` -> upright RGB image (EXIF orientation applied, alpha on white).
    The worker calls it long after the upload was accepted, on rows that may predate today's checks:
    the header limits are applied again first (ImageRejected), so a stored strip of 2,490,000 x 16 px
    fails that image instead of making the encoder's resize allocate tens of gigabytes. `draft_size` lets
    a JPEG decode at a reduced scale (no smaller than that size): thumbnails need not decode every pixel."""
    if limits is None:
        from common.settings import get_settings
        limits = limits_from(get_settings())
    image = Image.open(io.BytesIO(data))
    admit_header(image, data, limits)
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

"""Generate the hostile-image corpus: malformed and awkward files every upload path must answer
with a clear 4xx (never a 500) or accept and decode to upright RGB.

    .venv/bin/python -m tests.corpus.make_corpus

Everything is built here (no downloads) from a seeded generator, so a rerun rewrites the same bytes;
`expected.json` names each file's outcome under the default limits (16 px minimum side,
40 M pixels). The tests check the files and this script agree."""
import io
import json
import random
import struct
import zlib
from pathlib import Path

from PIL import Image, TiffImagePlugin

HERE = Path(__file__).resolve().parent
FILES = HERE / "files"
SEED = 20240611


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def noise(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Seeded smooth-ish noise: real content for the codecs, identical on every run."""
    rng = random.Random(SEED + seed)
    bands = len(mode)
    small = Image.frombytes(mode, (8, 8), bytes(rng.randrange(256) for _ in range(64 * bands)))
    return small.resize(size, Image.BILINEAR)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_chunk(base: bytes, chunk: bytes) -> bytes:
    """Insert a chunk right after IHDR (8-byte signature + 25-byte IHDR chunk)."""
    return base[:33] + chunk + base[33:]


def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking 1-bit PNG header declaring width×height, with a few bytes of IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + png_chunk(b"IEND", b""))


def gif_declaring(width: int, height: int) -> bytes:
    """A GIF whose logical screen is width×height around a single 16×16 frame."""
    small = encode(Image.new("P", (16, 16)), "GIF")
    return small[:6] + struct.pack("<HH", width, height) + small[10:]


def tiff_declaring(width: int, height: int) -> bytes:
    info = TiffImagePlugin.ImageFileDirectory_v2()
    data = bytearray(encode(Image.new("L", (16, 16)), "TIFF", tiffinfo=info))
    # Patch ImageWidth (256) and ImageLength (257) entries in the first IFD to the huge values.
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        tag, kind = struct.unpack("<HH", data[entry:entry + 4])
        value = {256: width, 257: height}.get(tag)
        if value is not None:
            data[entry + 2:entry + 12] = struct.pack("<HII", 4, 1, value)  # LONG, count 1
    return bytes(data)


def jpeg_with_exif(orientation: int, size=(48, 32)) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(noise(size), "JPEG", quality=80, exif=exif.tobytes())


def broken_exif(patches: dict[int, int]) -> bytes:
    """Orientation 6 plus tags whose bytes are patched (offsets into the TIFF block) into types that
    make ImageOps.exif_transpose raise when it writes the EXIF back (found by mutating this block)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "cam"
    exif[0x8769] = {0x9003: "2020:01:01 00:00:00", 0x9286: b"x" * 40}
    block = bytearray(exif.tobytes()[6:])
    for offset, value in patches.items():
        block[offset] = value
    return encode(noise((48, 32)), "JPEG", quality=80, exif=b"Exif\0\0" + bytes(block))


def gray16(mode: str) -> Image.Image:
    """A full-range 16-bit grey ramp: a decoder that clips at 255 turns it white."""
    ramp = Image.linear_gradient("L").resize((40, 30)).convert("I").point(lambda v: v * 257)
    return ramp.convert(mode) if mode == "I;16" else Image.frombytes(mode, ramp.size, ramp.convert("I;16").tobytes("raw", "I;16B"))


def jpeg_with_segment(marker: bytes, payload: bytes, size=(32, 32)) -> bytes:
    """Insert one APPn/COM segment after SOI; payload at most 65533 bytes (the segment limit)."""
    base = encode(noise(size), "JPEG", quality=80)
    return base[:2] + marker + struct.pack(">H", len(payload) + 2) + payload + base[2:]


def corrupt_jpeg_header() -> bytes:
    data = bytearray(encode(noise((32, 32)), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    data[sof + 4:sof + 9] = b"\xff" * 5  # precision and dimensions of the frame header
    return bytes(data)


def png_bad_crc(chunk: bytes) -> bytes:
    data = bytearray(encode(noise((32, 32)), "PNG"))
    start = data.index(chunk)
    length = struct.unpack(">I", data[start - 4:start])[0]
    data[start + 4 + length] ^= 0xFF  # first byte of the CRC
    return bytes(data)


def multipage_tiff() -> bytes:
    pages = [noise((40, 30), seed=i) for i in range(3)]
    return encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])


def animated(fmt: str, **options) -> bytes:
    frames = [noise((40, 24), seed=i) for i in range(3)]
    if fmt == "GIF":
        frames = [f.convert("P") for f in frames]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **options)


def mpo() -> bytes:
    """A two-frame Multi-Picture JPEG, as stereo and many phone cameras write them."""
    return encode(noise((40, 24)), "MPO", save_all=True, append_images=[noise((40, 24), seed=1)])


def palette_with_transparency() -> bytes:
    image = noise((24, 24)).convert("P", palette=Image.ADAPTIVE, colors=16)
    return encode(image, "PNG", transparency=0)


def psd_header() -> bytes:
    """A minimal 3-channel 8-bit RGB PSD (raw image data), which Pillow reads."""
    w, h = 20, 20
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3)
    sections = struct.pack(">III", 0, 0, 0)  # colour mode data, resources, layers: all empty
    return header + sections + struct.pack(">H", 0) + bytes(range(256)) * (3 * w * h // 256) + b"\0" * (3 * w * h % 256)


def jpeg_segments(data: bytes) -> list[bytes]:
    """Split a JPEG into its marker segments; a start-of-scan segment keeps its entropy-coded data."""
    segments, pos = [data[:2]], 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI
            segments.append(data[pos:pos + 2])
            break
        end = pos + 2 + struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if marker == 0xDA:  # scan data runs to the next marker that is neither stuffing nor RSTn
            while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        segments.append(data[pos:end])
        pos = end
    return segments


def progressive_jpeg_with_scans(repeats: int, size=(16, 16), flat: bool = False) -> bytes:
    """A progressive JPEG whose last refinement scan is repeated: libjpeg warns and decodes every
    repeat again, so the cost grows with scans x blocks, not with the file size (issue 7, #4). On a
    flat 4096 x 4096 image each repeat is 33 bytes and ~15 ms of CPU."""
    image = Image.new("L", size, 128) if flat else noise(size, "L")
    segments = jpeg_segments(encode(image, "JPEG", quality=80, progressive=True))
    last_scan = max(i for i, s in enumerate(segments) if s[1] == 0xDA)
    return b"".join(segments[:last_scan + 1] + [segments[last_scan]] * repeats + segments[last_scan + 1:])


def truncated(data: bytes, keep: float = 0.6) -> bytes:
    return data[:int(len(data) * keep)]


def accepted(fmt: str, size: tuple[int, int], why: str) -> dict:
    return {"outcome": "accepted", "format": fmt, "size": list(size), "mode": "RGB", "why": why}


def rejected(status: int, reason: str, why: str) -> dict:
    return {"outcome": "rejected", "status": status, "reason": reason, "why": why}


def cases() -> dict[str, tuple[bytes, dict]]:
    jpeg = encode(noise((64, 48)), "JPEG", quality=85)
    png = encode(noise((64, 48)), "PNG")
    gif = encode(noise((64, 48)).convert("P"), "GIF")
    webp = encode(noise((64, 48)), "WEBP", quality=80)
    return {
        # Not images at all.
        "empty.jpg": (b"", rejected(422, "empty", "zero bytes")),
        "text.jpg": (b"just some text, renamed .jpg\n" * 4, rejected(422, "not_an_image", "text")),
        "page.html": (b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>\n",
                      rejected(422, "not_an_image", "HTML")),
        "drawing.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                        b'<rect width="64" height="64" fill="red"/></svg>\n',
                        rejected(422, "not_an_image", "SVG is XML, not a raster format we take")),
        "doc.pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", rejected(422, "not_an_image", "PDF")),
        "html_then_png.png": (b"<html>" + png, rejected(422, "not_an_image", "a PNG after other bytes")),
        # Broken images.
        "truncated.jpg": (truncated(jpeg), rejected(422, "corrupt", "JPEG cut in the scan data")),
        "truncated.png": (truncated(png), rejected(422, "corrupt", "PNG cut in IDAT")),
        "truncated.gif": (truncated(gif), rejected(422, "corrupt", "GIF cut in the LZW data")),
        "truncated.webp": (truncated(webp), rejected(422, "corrupt", "WebP cut in VP8 data")),
        "header_only.png": (png[:40], rejected(422, "corrupt", "PNG signature and IHDR only")),
        "corrupt_header.jpg": (corrupt_jpeg_header(), rejected(422, "corrupt", "SOF0 fields overwritten")),
        "bad_crc_ihdr.png": (png_bad_crc(b"IHDR"), rejected(422, "corrupt", "IHDR CRC mismatch")),
        "bad_crc_idat.png": (png_bad_crc(b"IDAT"),
                             accepted("PNG", (32, 32), "IDAT CRC mismatch: like browsers, Pillow trusts zlib's Adler-32")),
        "garbage_vp8.webp": (webp[:40] + bytes(random.Random(SEED).randrange(256) for _ in range(len(webp) - 40)),
                             rejected(422, "corrupt", "WebP container around random VP8 bytes")),
        # Sizes.
        "one_pixel.png": (encode(Image.new("RGB", (1, 1)), "PNG"), rejected(422, "too_small", "1×1")),
        "eight_pixels.png": (encode(noise((8, 8)), "PNG"), rejected(422, "too_small", "8×8 < 16 px")),
        "thin.png": (encode(noise((400, 4)), "PNG"), rejected(422, "too_small", "400×4: one side too short")),
        "zero_width.png": (png_declaring(0, 64), rejected(422, "corrupt", "IHDR width 0")),
        "bomb.png": (png_declaring(100_000, 100_000), rejected(413, "too_many_pixels", "1e10 px declared")),
        "bomb_under_pillow_limit.png": (png_declaring(8_000, 8_000),
                                        rejected(413, "too_many_pixels", "64 M px: over ours, under Pillow's")),
        "bomb.gif": (gif_declaring(65_535, 65_535), rejected(413, "too_many_pixels", "GIF screen 65535²")),
        "bomb.tiff": (tiff_declaring(200_000, 200_000), rejected(413, "too_many_pixels", "TIFF 200000²")),
        # Cheap to store, costly to decode or to resize (issue 7).
        "strip.png": (png_declaring(2_490_000, 16), rejected(422, "too_elongated", "2,490,000×16: 40 M px "
                      "under the pixel limit, but resizing its short side to 256 px makes 40 G px")),
        "long_strip.png": (encode(Image.new("1", (4000, 16)), "PNG"),
                           rejected(422, "too_elongated", "a valid 4000×16 PNG, aspect ratio 250")),
        "many_scans.jpg": (progressive_jpeg_with_scans(150),
                           rejected(413, "too_many_scans", "progressive JPEG with its last scan repeated 150×")),
        "some_scans.jpg": (progressive_jpeg_with_scans(20), accepted("JPEG", (16, 16), "30 scans: under the limit")),
        # Metadata.
        "ztxt_bomb.png": (png_with_chunk(png, png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"A" * 4_000_000, 9))),
                          rejected(413, "metadata_too_large", "zTXt inflating past MAX_TEXT_CHUNK")),
        "ztxt_bomb_after_idat.png": (png[:-12] + png_chunk(b"zTXt", b"c\0\0" + zlib.compress(b"A" * 4_000_000, 9))
                                     + png[-12:], rejected(413, "metadata_too_large", "the same, read at decode")),
        "big_text.png": (png_with_chunk(png, png_chunk(b"tEXt", b"Comment\0" + b"x" * 100_000)),
                         accepted("PNG", (64, 48), "100 kB tEXt, under Pillow's limits")),
        "big_comment.jpg": (jpeg_with_segment(b"\xff\xfe", b"c" * 65_000),
                            accepted("JPEG", (32, 32), "65 kB COM segment")),
        "big_exif.jpg": (jpeg_with_segment(b"\xff\xe1", b"Exif\0\0" + b"II*\0\x08\0\0\0" + b"\xff" * 60_000),
                         accepted("JPEG", (32, 32), "60 kB APP1 of broken EXIF: ignored")),
        "garbage_exif.jpg": (jpeg_with_segment(b"\xff\xe1", b"Exif\0\0" + b"MM\0*\xff\xff\xff\xff"),
                             accepted("JPEG", (32, 32), "EXIF IFD offset past the end: ignored")),
        "broken_exif_short.jpg": (broken_exif({11: 33, 136: 153}), accepted("JPEG", (32, 48), "EXIF tag types "
                                  "that Pillow cannot write back: orientation still applied")),
        "broken_exif_rational.jpg": (broken_exif({11: 26, 37: 12, 40: 147, 79: 150, 80: 12, 115: 78}),
                                     accepted("JPEG", (32, 48), "a string where a rational belongs")),
        "exif_orientation_6.jpg": (jpeg_with_exif(6), accepted("JPEG", (32, 48), "rotated 90° by EXIF")),
        "exif_orientation_8.jpg": (jpeg_with_exif(8), accepted("JPEG", (32, 48), "rotated 270° by EXIF")),
        "exif_orientation_3.jpg": (jpeg_with_exif(3), accepted("JPEG", (48, 32), "rotated 180° by EXIF")),
        "exif_orientation_99.jpg": (jpeg_with_exif(99), accepted("JPEG", (48, 32), "invalid orientation: ignored")),
        # Modes that need converting.
        "cmyk.jpg": (encode(noise((40, 30), "CMYK"), "JPEG", quality=85), accepted("JPEG", (40, 30), "CMYK")),
        "gray16.png": (encode(gray16("I;16"), "PNG"), accepted("PNG", (40, 30), "16-bit grey, scaled not clipped")),
        "gray16_big_endian.tiff": (encode(gray16("I;16B"), "TIFF"), accepted("TIFF", (40, 30), "I;16B")),
        "rgb_trns.png": (encode(noise((30, 20)), "PNG", transparency=(0, 0, 0)), accepted("PNG", (30, 20), "RGB+tRNS")),
        "gray.jpg": (encode(noise((40, 30), "L"), "JPEG"), accepted("JPEG", (40, 30), "L")),
        "bilevel.png": (encode(noise((40, 30), "L").convert("1"), "PNG"), accepted("PNG", (40, 30), "mode 1")),
        "palette_transparent.png": (palette_with_transparency(), accepted("PNG", (24, 24), "P + tRNS")),
        "rgba.png": (encode(noise((30, 20), "RGBA"), "PNG"), accepted("PNG", (30, 20), "alpha on white")),
        "la.png": (encode(noise((30, 20), "LA"), "PNG"), accepted("PNG", (30, 20), "grey + alpha")),
        "rgba.webp": (encode(noise((30, 20), "RGBA"), "WEBP", lossless=True), accepted("WEBP", (30, 20), "alpha")),
        "float.tiff": (encode(noise((30, 20), "L").convert("F"), "TIFF"), accepted("TIFF", (30, 20), "mode F")),
        "int32.tiff": (encode(noise((30, 20), "L").convert("I"), "TIFF"), accepted("TIFF", (30, 20), "mode I")),
        "cmyk.tiff": (encode(noise((30, 20), "CMYK"), "TIFF"), accepted("TIFF", (30, 20), "CMYK TIFF")),
        "lab.tiff": (encode(noise((30, 20), "LAB"), "TIFF"), accepted("TIFF", (30, 20), "CIELab TIFF")),
        "bmp.bmp": (encode(noise((30, 20)), "BMP"), accepted("BMP", (30, 20), "plain BMP")),
        # Several frames: the first is used.
        "animated.gif": (animated("GIF"), accepted("GIF", (40, 24), "3 frames")),
        "animated.webp": (animated("WEBP", lossless=True), accepted("WEBP", (40, 24), "3 frames")),
        "animated.png": (animated("PNG"), accepted("PNG", (40, 24), "APNG, 3 frames")),
        "multipage.tiff": (multipage_tiff(), accepted("TIFF", (40, 30), "3 pages")),
        "mpo.jpg": (mpo(), accepted("MPO", (40, 24), "MPO is JPEG with extra frames: stored as image/jpeg")),
        # Real formats we do not take.
        "icon.ico": (encode(noise((32, 32)), "ICO", sizes=[(32, 32)]), rejected(415, "unsupported_format", "ICO")),
        "layers.psd": (psd_header(), rejected(415, "unsupported_format", "PSD")),
        "pixmap.ppm": (encode(noise((20, 20)), "PPM"), rejected(415, "unsupported_format", "PPM")),
        "targa.tga": (encode(noise((20, 20)), "TGA"), rejected(415, "unsupported_format", "TGA")),
        # Polyglots.
        "png_then_zip.png": (png + b"PK\x03\x04" + bytes(26) + b"<script>alert(1)</script>",
                             accepted("PNG", (64, 48), "bytes after IEND are never read")),
    }


def main() -> None:
    FILES.mkdir(parents=True, exist_ok=True)
    for old in FILES.iterdir():
        old.unlink()
    expected = {}
    for name, (data, outcome) in cases().items():
        (FILES / name).write_bytes(data)
        expected[name] = outcome
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()

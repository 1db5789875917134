"""Distractor images from offline sources: find, load, filter, downscale.

The sources are Debian packages and a PyPI wheel installed by scripts/install-bench-data.sh; the
paths are where Debian installs them (`dpkg -L PACKAGE`). None of them shows a DreamBooth subject.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
MIN_SIDE = 48  # smaller originals are icons, not images
MIN_STD = 12.0  # grey-level spread under this is a blank or near-blank canvas
BACKGROUND_SIDE = 512  # photo distractors are also kept at this size as composite backgrounds


@dataclass(frozen=True)
class Source:
    name: str
    root: Path
    licence: str
    photo: bool  # photos (not clip art) can serve as composite backgrounds
    always_keep: bool  # small sources are kept whole; big ones are sampled to the cap


def _skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        return Path("/nonexistent/skimage/data")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def default_sources() -> list[Source]:
    """The offline sources listed in /work/shared/offline-assets.md, at their installed paths."""
    return [
        Source("skimage", _skimage_data_dir(), "mostly public domain (scikit-image data README)", True, True),
        Source("plasma-wallpapers", Path("/usr/share/wallpapers"), "GPL-2+ / LGPL (Debian copyright)", True, True),
        Source("mate-backgrounds", Path("/usr/share/backgrounds/mate"), "GPL-2+ / CC-BY-SA (Debian copyright)",
               True, True),
        Source("tuxpaint-stamps", Path("/usr/share/tuxpaint/stamps"), "GPL-2+", False, False),
        Source("openclipart", Path("/usr/share/openclipart/png"), "public domain (CC0)", False, False),
    ]


def custom_sources(dirs: list[Path]) -> list[Source]:
    """User-given folders (tests, other corpora): every image kept, every one a possible background."""
    return [Source(Path(d).name, Path(d), "unknown (user-supplied)", True, True) for d in dirs]


def _variant_key(path: Path) -> tuple[str, str]:
    # Wallpapers ship one picture at many resolutions (plasma: contents/images/WxH.png; mate:
    # Name_WxH.jpg); keep one file per picture so near-duplicates don't pad the distractor set.
    return str(path.parent), re.sub(r"_?\d+x\d+$", "", path.stem)


def _pixel_count(path: Path) -> int:
    match = re.search(r"(\d+)x(\d+)$", path.stem)
    return int(match.group(1)) * int(match.group(2)) if match else path.stat().st_size


def list_source_files(source: Source) -> list[Path]:
    """Image files of one source, sorted, one per resolution family, without wallpaper previews."""
    if not source.root.is_dir():
        return []
    files = [p for p in sorted(source.root.rglob("*"))
             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and p.name != "screenshot.png"
             and p.stem != "screenshot"]
    smallest: dict[tuple[str, str], Path] = {}
    for path in files:
        key = _variant_key(path)
        if key not in smallest or _pixel_count(path) < _pixel_count(smallest[key]):
            smallest[key] = path
    return sorted(smallest.values())


def plan_candidates(sources: list[Source], seed: int) -> list[tuple[Source, Path]]:
    """Candidates in processing order: small sources whole, then the big ones shuffled together."""
    kept, sampled = [], []
    for source in sources:
        bucket = kept if source.always_keep else sampled
        bucket.extend((source, path) for path in list_source_files(source))
    random.Random(f"{seed}:distractors").shuffle(sampled)
    return kept + sampled


def load_rgb(path: Path) -> Image.Image:
    """Open any image as RGB, compositing transparency onto white (clip art, stamps)."""
    img = Image.open(path)
    img.draft("RGB", (BACKGROUND_SIDE, BACKGROUND_SIDE))  # JPEG only: decode at reduced scale
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def encode_jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True)
class Processed:
    status: str  # ok | unreadable | tiny | blank
    jpeg: bytes | None = None  # the distractor, <= max_side
    background: bytes | None = None  # <= BACKGROUND_SIDE, photo sources only
    fingerprint: str = ""  # 16x16 grey thumbnail digest: equal for duplicates across folders


def process_distractor(path: Path, max_side: int, want_background: bool) -> Processed:
    """Load, filter and downscale one file."""
    try:
        img = load_rgb(path)
    except Exception:  # a corrupt or unsupported file is skipped, not fatal
        return Processed("unreadable")
    if min(img.size) < MIN_SIDE:
        return Processed("tiny")
    thumb = img.convert("L").resize((64, 64), Image.Resampling.BILINEAR)
    if float(np.asarray(thumb, dtype=np.float32).std()) < MIN_STD:
        return Processed("blank")
    fingerprint = hashlib.md5(thumb.resize((16, 16), Image.Resampling.BILINEAR).tobytes()).hexdigest()
    background = None
    if want_background:
        big = img.copy()
        big.thumbnail((BACKGROUND_SIDE, BACKGROUND_SIDE), Image.Resampling.BICUBIC)
        background = encode_jpeg(big)
    img.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    return Processed("ok", encode_jpeg(img), background, fingerprint)


def output_name(source: Source, path: Path) -> str:
    """distractors/<source>/<path below the root, '/' -> '__'>.jpg"""
    rel = path.relative_to(source.root).with_suffix("")
    flat = "__".join(rel.parts)
    return f"{source.name}/{re.sub(r'[^A-Za-z0-9._-]+', '_', flat)}.jpg"

"""Plan the queries of the cross-context benchmark: exemplars, query specs, traffic/evaluation split."""

from __future__ import annotations

import hashlib
import io
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from bench.distractors import encode_jpeg
from bench.renderings import RENDERERS

PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class Subject:
    name: str
    exemplars: tuple[Path, ...]
    sources: tuple[Path, ...]  # the non-exemplar photos every query is derived from


@dataclass(frozen=True)
class QuerySpec:
    subject: str
    source: Path
    query_type: str
    split: str  # "evaluation" | "traffic"
    out_rel: str  # path below OUT
    rng_key: str  # seeds the rendering's randomness
    background: bytes | None = None  # composite only


def find_subjects(root: Path, n_exemplars: int) -> list[Subject]:
    """Subjects = sub-folders with photos; the first `n_exemplars` by name are the registered work."""
    subjects = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES)
        if len(photos) <= n_exemplars:
            continue  # nothing left to query with
        subjects.append(Subject(folder.name, tuple(photos[:n_exemplars]), tuple(photos[n_exemplars:])))
    return subjects


def _pick_evaluation(items: list, key: str) -> set:
    # Half of the items (seeded shuffle); an odd item goes to either half by a seeded coin,
    # so over many subjects the halves come out the same size.
    rng = random.Random(key)
    order = list(items)
    rng.shuffle(order)
    n_eval = len(order) // 2 + (1 if len(order) % 2 and rng.random() < 0.5 else 0)
    return set(order[:n_eval])


def traffic_name(seed: int, subject: str, query_type: str, source: Path) -> str:
    """A name that says nothing about the subject or type (the label file maps it back)."""
    return hashlib.sha256(f"{seed}/{subject}/{query_type}/{source.name}".encode()).hexdigest()[:20] + ".jpg"


def plan_queries(subjects: list[Subject], query_types: list[str], seed: int, split_by: str) -> list[QuerySpec]:
    """One query per (non-exemplar photo, type), split in halves per subject (and per type).

    split_by="photo": all renderings of one source photo fall in the same half, so nothing seen in
    traffic is a rendering of a photo behind an evaluation query (the stricter rule; every type is
    still equally present in both halves). split_by="query": each (subject, type) is halved alone.
    """
    specs = []
    for subject in subjects:
        for query_type in query_types:
            key = f"{seed}:split:{subject.name}" + ("" if split_by == "photo" else f":{query_type}")
            evaluation = _pick_evaluation(list(subject.sources), key)
            for source in subject.sources:
                split = "evaluation" if source in evaluation else "traffic"
                if split == "evaluation":
                    out_rel = f"{subject.name}/queries/{query_type}/{source.stem}.jpg"
                else:
                    out_rel = f"traffic/{traffic_name(seed, subject.name, query_type, source)}"
                rng_key = f"{seed}:{subject.name}:{source.name}:{query_type}"
                specs.append(QuerySpec(subject.name, source, query_type, split, out_rel, rng_key))
    return specs


def attach_backgrounds(specs: list[QuerySpec], backgrounds: dict[str, bytes]) -> list[QuerySpec]:
    """Give every composite query a seeded choice among the photo distractors."""
    names = sorted(backgrounds)
    if not names and any(s.query_type == "composite" for s in specs):
        raise ValueError("composite queries need photo distractors as backgrounds; none were found")
    out = []
    for spec in specs:
        if spec.query_type == "composite":
            name = random.Random(spec.rng_key + ":background").choice(names)
            spec = QuerySpec(**{**spec.__dict__, "background": backgrounds[name]})
        out.append(spec)
    return out


def render_query(spec: QuerySpec, query_side: int) -> bytes:
    """Render one query -> JPEG bytes (deterministic in spec.rng_key)."""
    img = ImageOps.exif_transpose(Image.open(spec.source)).convert("RGB")
    img.thumbnail((query_side, query_side), Image.Resampling.BICUBIC)
    background = Image.open(io.BytesIO(spec.background)).convert("RGB") if spec.background else None
    rendered = RENDERERS[spec.query_type](img, random.Random(spec.rng_key), background)
    return encode_jpeg(rendered)

"""Unlabeled training images: folders, registered source images (DB + storage), opted-in queries.

Source and synthetic images are mixed in one pool with no pairing: the method is unsupervised."""
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def list_images(root: str | Path) -> list[Path]:
    """Every image file under `root`, recursively, in a stable order."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def registered_source_paths() -> list[Path]:
    """Files of every source image of a live (not deleted) work, as stored by the service."""
    from sqlalchemy import select

    from common.db.models import SourceImage, Work
    from common.db.session import new_session
    from common.settings import get_settings
    from common.storage import LocalStorage
    storage = LocalStorage(get_settings().storage_dir)
    query = select(SourceImage.storage_key).join(Work).where(Work.deleted_at.is_(None))
    with new_session() as session:
        keys = session.scalars(query).all()
    return [p for p in (storage.path(k) for k in keys) if p.is_file()]


def registered_works() -> dict[str, list[Path]]:
    """work id -> its source image files (live works only); used for calibration pseudo-pairs."""
    from sqlalchemy import select

    from common.db.models import SourceImage, Work
    from common.db.session import new_session
    from common.settings import get_settings
    from common.storage import LocalStorage
    storage = LocalStorage(get_settings().storage_dir)
    query = select(SourceImage.work_id, SourceImage.storage_key).join(Work).where(Work.deleted_at.is_(None))
    works: dict[str, list[Path]] = {}
    with new_session() as session:
        for work_id, key in session.execute(query):
            if storage.path(key).is_file():
                works.setdefault(str(work_id), []).append(storage.path(key))
    return works


def collected_query_paths() -> list[Path]:
    """Query images whose submitters opted in to training use (AttributionJob.training_use)."""
    from sqlalchemy import select

    from common.db.models import AttributionJob
    from common.db.session import new_session
    from common.settings import get_settings
    from common.storage import LocalStorage
    storage = LocalStorage(get_settings().storage_dir)
    query = select(AttributionJob.storage_key).where(AttributionJob.training_use.is_(True)).distinct()
    with new_session() as session:
        keys = session.scalars(query).all()
    return [p for p in (storage.path(k) for k in keys) if p.is_file()]


def gather_training_paths(config) -> list[Path]:
    """All configured sources, deduplicated by path."""
    paths = [p for d in [*config.source_dirs, *config.synthetic_dirs] for p in list_images(d)]
    if config.use_registered_sources:
        paths += registered_source_paths()
    if config.use_collected_queries:
        paths += collected_query_paths()
    return sorted(set(paths))


class UnlabeledImages(Dataset):
    """path list -> transform(RGB image); the transform returns two views when training."""

    def __init__(self, paths: list[Path], transform):
        if not paths:
            raise ValueError("no training images found: set source_dirs/synthetic_dirs or DB sources")
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB"))

"""Unlabeled training images: folders, registered source images (DB + storage), opted-in queries.

Source and synthetic images are mixed in one pool with no pairing: the method is unsupervised."""
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}


def list_images(root: str | Path) -> list[Path]:
    """Every image file under `root`, recursively, in a stable order."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _stored_rows(query) -> list[tuple]:
    """Run a select whose last column is a storage key; keep rows whose object exists, key -> local Path
    (the stored file itself, or a cached download when storage is remote: the trainer may run elsewhere)."""
    from common.db.session import new_session
    from common.settings import get_settings
    from common.storage import get_storage, local_copy
    settings = get_settings()
    storage, cache = get_storage(settings), settings.data_dir / "cache" / "storage"
    with new_session() as session:
        rows = session.execute(query).all()
    found = []
    for row in rows:
        try:
            found.append((*row[:-1], local_copy(storage, row[-1], cache)))
        except FileNotFoundError:
            continue  # deleted since the row was read, or never stored: not a training image
    return found


def registered_source_paths() -> list[Path]:
    """Files of every source image of a live (not deleted) work, as stored by the service."""
    return [path for _, path in registered_rows()]


def registered_works() -> dict[str, list[Path]]:
    """work id -> its source image files (live works only); used for calibration pseudo-pairs."""
    works: dict[str, list[Path]] = {}
    for work_id, path in registered_rows():
        works.setdefault(str(work_id), []).append(path)
    return works


def registered_rows() -> list[tuple]:
    from sqlalchemy import select

    from common.db.models import SourceImage, Work
    return _stored_rows(select(SourceImage.work_id, SourceImage.storage_key).join(Work)
                        .where(Work.deleted_at.is_(None)).order_by(SourceImage.id))


def collected_query_paths() -> list[Path]:
    """Query images whose submitters opted in to training use (AttributionJob.training_use)."""
    from sqlalchemy import select

    from common.db.models import AttributionJob
    query = select(AttributionJob.storage_key).where(AttributionJob.training_use.is_(True)).distinct()
    return [path for (path,) in _stored_rows(query)]


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

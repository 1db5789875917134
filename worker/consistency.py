"""`python -m worker.consistency`: compare the database (the source of truth) with the index saved on disk
for the active encoder, and with the images' embedding states; exit 1 on any inconsistency.
`--repair` rebuilds the saved index from the database and drops vectors left behind by deleted works."""
import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from common.db import crud
from common.db.models import Embedding, ImageState, SourceImage, Work
from common.db.session import new_session
from common.settings import Settings, get_settings
from core.encoder import load_encoder
from core.index import IndexCorrupt, IndexEncoderMismatch, VectorIndex, load_index
from indexing.artifacts import resolve
from indexing.store import build_from_database, index_dirs, live_index_dir, live_vector_ids


@dataclass
class Report:
    encoder_id: str
    index_dir: Path | None
    index_problem: str | None = None
    index_size: int = 0
    missing_from_index: list[int] = field(default_factory=list)
    stale_in_index: list[int] = field(default_factory=list)
    deleted_works_in_index: list[int] = field(default_factory=list)
    vectors_of_deleted_works: int = 0
    images_pending: int = 0
    images_failed: int = 0

    @property
    def consistent(self) -> bool:
        # Pending and failed images are states the service reports itself, not damage.
        return not (self.index_problem or self.missing_from_index or self.stale_in_index
                    or self.vectors_of_deleted_works)

    def lines(self) -> list[str]:
        return [f"encoder: {self.encoder_id}",
                f"index: {self.index_dir or 'none on disk'} ({self.index_size} vectors)"
                + (f" - {self.index_problem}" if self.index_problem else ""),
                f"missing from index: {len(self.missing_from_index)} {_sample(self.missing_from_index)}",
                f"stale in index: {len(self.stale_in_index)} {_sample(self.stale_in_index)}",
                f"  of deleted works: {len(self.deleted_works_in_index)}",
                f"vectors of deleted works in database: {self.vectors_of_deleted_works}",
                f"images pending: {self.images_pending}", f"images failed: {self.images_failed}",
                "consistent" if self.consistent else "INCONSISTENT"]


def _sample(ids: list[int], n: int = 10) -> str:
    return f"{ids[:n]}{'...' if len(ids) > n else ''}" if ids else ""


def active_encoder_id_and_dim(session: Session, settings: Settings) -> tuple[str, int]:
    pair = crud.get_active_pair(session)
    encoder = load_encoder(resolve(pair.encoder_uri, settings) if pair else settings.encoder, "cpu")
    return encoder.encoder_id, encoder.dim


def saved_index_dir(session: Session, settings: Settings, encoder_id: str) -> Path | None:
    """The directory a starting worker would load: its live index, else the published pair's."""
    pair = crud.get_active_pair(session)
    directories = index_dirs(settings.artifacts_dir, encoder_id, resolve(pair.index_path, settings) if pair else None)
    return next((d for d in directories if (d / "index.json").exists()), None)


def check(session: Session, settings: Settings, encoder_id: str) -> Report:
    report = Report(encoder_id, saved_index_dir(session, settings, encoder_id))
    indexed: set[int] = set()
    if report.index_dir is not None:
        try:
            index = load_index(report.index_dir, encoder_id)
            indexed, report.index_size = set(index.ids().tolist()), len(index)
        except (IndexCorrupt, IndexEncoderMismatch) as exc:
            report.index_problem = str(exc)
    wanted = live_vector_ids(session, encoder_id)
    report.missing_from_index = sorted(wanted - indexed)
    report.stale_in_index = sorted(indexed - wanted)
    report.deleted_works_in_index = sorted(_of_deleted_works(session, report.stale_in_index))
    report.vectors_of_deleted_works = session.scalar(
        select(func.count()).select_from(Embedding).where(Embedding.image_id.in_(_deleted_images())))
    report.images_pending, report.images_failed = (_count_live_images(session, state)
                                                   for state in (ImageState.pending, ImageState.failed))
    return report


def _deleted_images():
    return select(SourceImage.id).join(Work).where(Work.deleted_at.is_not(None))


def _of_deleted_works(session: Session, image_ids: list[int]) -> set[int]:
    return set(session.scalars(_deleted_images().where(SourceImage.id.in_(image_ids)))) if image_ids else set()


def _count_live_images(session: Session, state: ImageState) -> int:
    return session.scalar(select(func.count()).select_from(SourceImage).join(Work).where(
        Work.deleted_at.is_(None), SourceImage.state == state))


def repair(session: Session, settings: Settings, encoder_id: str, dim: int) -> VectorIndex:
    """Drop vectors of deleted works, then save an index rebuilt from the database as the live one."""
    session.execute(delete(Embedding).where(Embedding.image_id.in_(_deleted_images())))
    session.commit()
    index = build_from_database(session, encoder_id, dim)
    index.save(live_index_dir(settings.artifacts_dir, encoder_id))
    return index


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.consistency", description=__doc__)
    parser.add_argument("--repair", action="store_true", help="rebuild the saved index from the database")
    args = parser.parse_args(argv)
    settings = get_settings()
    with new_session() as session:
        encoder_id, dim = active_encoder_id_and_dim(session, settings)
        if args.repair:
            index = repair(session, settings, encoder_id, dim)
            print(f"repaired: saved {len(index)} vectors to {live_index_dir(settings.artifacts_dir, encoder_id)}")
        report = check(session, settings, encoder_id)
    print("\n".join(report.lines()))
    return 0 if report.consistent else 1


if __name__ == "__main__":
    sys.exit(main())

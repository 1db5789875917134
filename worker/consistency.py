"""`python -m worker.consistency`: compare the database (the source of truth) with the index a starting
worker would load for the active encoder (its newest snapshot, else the published index, with the change
log replayed on top), and with the images' embedding states; exit 1 on any inconsistency.
`--repair` drops vectors left behind by deleted works and writes a snapshot rebuilt from the database."""
import argparse
import sys
from dataclasses import dataclass, field

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from common.db import crud
from common.db.models import Embedding, ImageState, SourceImage, Work
from common.db.session import new_session
from common.settings import Settings, get_settings
from core.encoder import encoder_identity
from common.storage import get_storage
from indexing import live
from indexing.artifacts import resolve
from indexing.backends.faiss import FaissStore
from indexing.follower import sync_store
from indexing.snapshots import write_snapshot
from indexing.store import build_from_database, index_params, live_vector_ids
from indexing.vectorstore import IndexCorrupt, IndexEncoderMismatch


@dataclass
class Report:
    encoder_id: str
    index_dir: str | None
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
    """Read from the artefact's self-description: checking an index needs the encoder's name, not its weights."""
    pair = crud.get_active_pair(session)
    return encoder_identity(resolve(pair.encoder_uri, settings) if pair else settings.encoder)


def saved_store(session: Session, settings: Settings, encoder_id: str) -> tuple[FaissStore | None, str | None]:
    """What a starting worker would load, in the worker's own order (indexing.live.saved_store), except
    that a published index that cannot be served raises IndexCorrupt/IndexEncoderMismatch to be reported."""
    pair = crud.get_active_pair(session)
    index_path = resolve(pair.index_path, settings) if pair is not None else None
    return live.saved_store(settings, encoder_id, index_path, strict=True) or (None, None)


def check(session: Session, settings: Settings, encoder_id: str) -> Report:
    report = Report(encoder_id, None)
    indexed: set[int] = set()
    try:
        store, report.index_dir = saved_store(session, settings, encoder_id)
        if store is not None:
            sync_store(session, store)  # a snapshot lags by design: replay the log as a worker would
            indexed, report.index_size = set(store.ids().tolist()), store.count()
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


def repair(session: Session, settings: Settings, encoder_id: str, dim: int) -> tuple[FaissStore, str]:
    """Drop vectors of deleted works (logging the deletes), then write a snapshot rebuilt from the
    database; returns it and its key."""
    orphans = list(session.scalars(select(Embedding.image_id).where(Embedding.image_id.in_(_deleted_images()))))
    session.execute(delete(Embedding).where(Embedding.image_id.in_(orphans)))
    crud.record_vector_changes(session, op="delete", image_ids=sorted(set(orphans)), encoder_id=None)
    session.commit()
    store = build_from_database(session, encoder_id, dim, index_params(settings), scratch=settings.cache_dir)
    return store, write_snapshot(get_storage(settings), store, scratch=settings.cache_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.consistency", description=__doc__)
    parser.add_argument("--repair", action="store_true", help="rebuild the saved index from the database")
    args = parser.parse_args(argv)
    settings = get_settings()
    with new_session() as session:
        encoder_id, dim = active_encoder_id_and_dim(session, settings)
        if args.repair:
            store, key = repair(session, settings, encoder_id, dim)
            print(f"repaired: saved {store.count()} vectors as snapshot {key}")
        report = check(session, settings, encoder_id)
    print("\n".join(report.lines()))
    return 0 if report.consistent else 1


if __name__ == "__main__":
    sys.exit(main())

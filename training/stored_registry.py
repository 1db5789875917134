"""The registered works as calibration sees them: (image, work) ids listed from the database, the stored
vectors of a bounded sample read from the `embeddings` table, and the sampled query images from storage."""
import numpy as np
from PIL import Image
from sqlalchemy import select

from common.db.models import AttributionJob, Embedding, JobStatus, Match, SourceImage, Work
from common.db.session import new_session
from common.images import decode_rgb
from common.settings import get_settings
from common.storage import get_storage
from indexing.changelog import fetch_vectors
from training.pseudo_pairs import Registry, sample_rows


def stored_registry_sample(encoder_id: str, dim: int, queries: int, pool: int,
                           seed: int = 0) -> tuple[Registry, list[int], list[Image.Image]]:
    """(registry of the sampled pool, query rows in it, the query rows' decoded source images)."""
    with new_session() as session:
        listed = session.execute(
            select(Embedding.image_id, SourceImage.work_id, SourceImage.storage_key)
            .join(SourceImage, SourceImage.id == Embedding.image_id).join(Work)
            .where(Embedding.encoder_id == encoder_id, Work.deleted_at.is_(None))
            .order_by(Embedding.image_id)).all()
        if not listed:
            raise SystemExit(f"no stored vectors for encoder {encoder_id}: register works first")
        query_rows, pool_rows = sample_rows([str(w) for _, w, _ in listed], queries, pool, seed)
        ids, vectors = fetch_vectors(session, encoder_id=encoder_id, dim=dim,
                                     ids=np.asarray([listed[r][0] for r in pool_rows], np.int64))
    position = {int(image_id): i for i, image_id in enumerate(ids.tolist())}
    work_of = {image_id: str(work_id) for image_id, work_id, _ in listed}
    registry = Registry(vectors, np.array([work_of[int(i)] for i in ids], dtype=object))
    storage = get_storage(get_settings())
    images = [decode_rgb(storage.get(listed[r][2])) for r in query_rows]
    return registry, [position[listed[r][0]] for r in query_rows], images


def recent_top_scores(encoder_id: str, limit: int = 2000) -> np.ndarray:
    """Rank-1 scores of the latest finished queries answered by this encoder: unlabelled traffic."""
    with new_session() as session:
        scores = session.scalars(
            select(Match.score).join(AttributionJob, AttributionJob.id == Match.job_id)
            .where(Match.rank == 1, AttributionJob.encoder_id == encoder_id, AttributionJob.status == JobStatus.done)
            .order_by(AttributionJob.finished_at.desc()).limit(limit)).all()
    return np.asarray(scores, np.float64)

"""Helpers for evidence and verdict tests: register works and submit queries through the API, then
finish a job in the database the way the worker does (matches, the query's embedding and thumbnail), so contract
tests need no model. The real worker path is covered in test_verdicts.py and the console tests."""
import uuid
from datetime import datetime, timezone

import numpy as np

from common.db.models import AttributionJob, JobStatus, Match
from common.db.session import new_session
from common.images import decode_rgb
from common.settings import get_settings
from common.storage import get_storage
from common.thumbnails import store_query_thumbnail
from tests.factories import photo_bytes

ENCODER = "test-encoder@1"


def register(client, headers, subject="dog", rights_holder=None, **fields) -> dict:
    data = {"title": subject, **fields} | ({"rights_holder": rights_holder} if rights_holder else {})
    response = client.post("/sources", headers=headers, data=data,
                           files=[("images", ("a.jpg", photo_bytes(subject, 0), "image/jpeg"))])
    assert response.status_code == 201, response.text
    return response.json()


def submit(client, headers, subject="dog", **params) -> dict:
    response = client.post("/attribute", headers=headers, params=params,
                           files={"image": ("q.jpg", photo_bytes(subject, 1), "image/jpeg")})
    assert response.status_code == 202, response.text
    return response.json()


def finish_job(job_id: str, works: list[dict], dim: int = 8) -> np.ndarray:
    """Mark the job done with `works` ranked in order, as the worker would; returns the query vector."""
    vector = np.random.default_rng(0).standard_normal(dim).astype(np.float32)
    vector /= np.linalg.norm(vector)
    with new_session() as session:
        job = session.get(AttributionJob, uuid.UUID(job_id))
        job.status, job.encoder_id, job.query_vector = JobStatus.done, ENCODER, vector.tobytes()
        job.finished_at, job.unattributed = datetime.now(timezone.utc), 0.1
        storage = get_storage(get_settings())
        store_query_thumbnail(storage, job.id, decode_rgb(storage.get(job.storage_key)))
        session.add_all(Match(job_id=job.id, rank=r, work_id=uuid.UUID(w["id"]), score=0.9 - 0.1 * r,
                              share=0.9 / len(works), best_image_id=w["images"][0]["id"])
                        for r, w in enumerate(works, start=1))
        session.commit()
    return vector

"""Retention: finished jobs older than the setting go with their matches, deliveries and query files;
younger and unfinished jobs stay; 0 days keeps everything."""
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select, update

from common.db.models import AttributionJob, AuditEntry, JobStatus, WebhookDelivery
from common.db.session import new_session
from common.retention import sweep_expired_jobs
from common.settings import get_settings
from common.storage import LocalStorage
from tests.factories import photo_bytes


def submit(client) -> str:
    return client.post("/attribute", files={"image": ("q.jpg", photo_bytes("dog", 1), "image/jpeg")}).json()["id"]


def finish(job_id: str, days_ago: float, status=JobStatus.done) -> None:
    with new_session() as session:
        job = session.get(AttributionJob, uuid.UUID(job_id))
        job.status, job.finished_at = status, datetime.now(timezone.utc) - timedelta(days=days_ago)
        session.add(WebhookDelivery(job_id=job.id, event="attribution.finished", url="http://x/", payload={}))
        session.commit()


def count(model) -> int:
    with new_session() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_expired_jobs_go_with_their_files(client, service_env):
    storage = LocalStorage(get_settings().storage_dir)
    old, young, running = submit(client), submit(client), submit(client)
    finish(old, days_ago=10)
    finish(young, days_ago=1)
    with new_session() as session:
        session.execute(update(AttributionJob).where(AttributionJob.id == uuid.UUID(running))
                        .values(status=JobStatus.running, created_at=datetime.now(timezone.utc) - timedelta(days=30)))
        old_key = session.get(AttributionJob, uuid.UUID(old)).storage_key
        session.commit()
    assert storage.exists(old_key)

    with new_session() as session:
        assert sweep_expired_jobs(session, storage, retention_days=0) == 0  # keep forever
        assert sweep_expired_jobs(session, storage, retention_days=7) == 1
        assert sweep_expired_jobs(session, storage, retention_days=7) == 0
    assert client.get(f"/attribute/{old}").status_code == 404
    assert client.get(f"/attribute/{young}").status_code == 200
    assert client.get(f"/attribute/{running}").json()["status"] == "running"
    assert not storage.exists(old_key)
    assert count(WebhookDelivery) == 1 and count(AttributionJob) == 2
    with new_session() as session:
        entry = session.scalars(select(AuditEntry)).one()
    assert entry.action == "retention.sweep" and entry.detail["jobs_deleted"] == 1

"""The webhook outbox (table `webhook_deliveries`): rows are added in the transaction that finishes a job,
claimed by compare-and-set, and their outcome recorded with exponential back-off (docs/design.md §6).
No HTTP here: worker/deliveries.py sends."""
import random
import uuid
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from common.db.models import (
    AttributionJob, DeliveryStatus, Match, WebhookDelivery, WebhookSecret, Work,
)
from common.webhooks import decrypt_secret, encrypt_secret, new_secret

JOB_FINISHED = "attribution.finished"
REGISTRATION_FINISHED = "registration.finished"


def _now() -> datetime:
    return datetime.now(timezone.utc)


def add_job_finished(session: Session, *, job: AttributionJob) -> WebhookDelivery | None:
    """Queue the job's callback, if it asked for one. Call before the commit that finishes the job."""
    if not job.callback_url:
        return None
    session.flush()  # the matches added in this transaction must be readable for the payload
    return add_event(session, key_id=job.client_key_id, url=job.callback_url, event=JOB_FINISHED,
                     payload=job_payload(session, job=job), job_id=job.id)


def add_event(session: Session, *, key_id: uuid.UUID | None, url: str, event: str, payload: dict,
              job_id: uuid.UUID | None = None, import_id: uuid.UUID | None = None) -> WebhookDelivery:
    """One outbox row, signed with `key_id`'s secret when sent. Call inside the transaction that
    produced the event: the row commits with it or not at all. `payload` is sent as is, every retry."""
    delivery = WebhookDelivery(id=uuid.uuid4(), job_id=job_id, import_id=import_id, key_id=key_id, event=event,
                               url=url, payload=payload)
    session.add(delivery)
    return delivery


def job_payload(session: Session, *, job: AttributionJob) -> dict:
    rows = session.execute(select(Match, Work).join(Work, Match.work_id == Work.id)
                           .where(Match.job_id == job.id).order_by(Match.rank)).all()
    live = [(m, w) for m, w in rows if w.deleted_at is None]
    matches = [{"rank": rank, "work_id": str(m.work_id), "title": w.title, "rights_holder": w.rights_holder,
                "external_ref": w.external_ref, "score": m.score, "share": m.share}
               for rank, (m, w) in enumerate(live, start=1)]
    status = job.status.value if hasattr(job.status, "value") else str(job.status)
    return {"event": JOB_FINISHED, "data": {
        "id": str(job.id), "status": status, "error": job.error, "top_k": job.top_k,
        "encoder_id": job.encoder_id, "index_id": job.index_id, "unattributed": job.unattributed,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "matches": matches if status == "done" else None}}


def due_ids(session: Session, *, limit: int = 20) -> list[tuple[uuid.UUID, int]]:
    return list(session.execute(
        select(WebhookDelivery.id, WebhookDelivery.attempts)
        .where(WebhookDelivery.status == DeliveryStatus.pending, WebhookDelivery.next_attempt_at <= _now())
        .order_by(WebhookDelivery.next_attempt_at).limit(limit)).all())


def claim(session: Session, *, delivery_id: uuid.UUID, seen_attempts: int, claimer: str,
          lease_s: float) -> WebhookDelivery | None:
    """Compare-and-set: take a due row only if nobody took it since we looked. The claim pushes
    `next_attempt_at` one lease ahead, so a claimer killed mid-send leaves the row due again."""
    result = session.execute(update(WebhookDelivery).where(
        WebhookDelivery.id == delivery_id, WebhookDelivery.status == DeliveryStatus.pending,
        WebhookDelivery.attempts == seen_attempts, WebhookDelivery.next_attempt_at <= _now())
        .values(attempts=seen_attempts + 1, claimed_by=claimer,
                next_attempt_at=_now() + timedelta(seconds=lease_s)))
    session.commit()
    return session.get(WebhookDelivery, delivery_id, populate_existing=True) if result.rowcount == 1 else None


def backoff_s(attempts: int, *, base_s: float, max_s: float) -> float:
    """Exponential back-off with jitter, so many failed receivers do not retry in lockstep."""
    return min(base_s * 2 ** max(0, attempts - 1), max_s) * random.uniform(0.5, 1.0)


def record_success(session: Session, *, delivery: WebhookDelivery, status_code: int) -> None:
    delivery.status, delivery.delivered_at = DeliveryStatus.delivered, _now()
    delivery.last_status_code, delivery.last_error = status_code, None
    session.commit()


def record_failure(session: Session, *, delivery: WebhookDelivery, error: str, status_code: int | None,
                   max_attempts: int, base_s: float, max_s: float) -> None:
    delivery.last_error, delivery.last_status_code = error[:2000], status_code
    if delivery.attempts >= max_attempts:
        delivery.status = DeliveryStatus.failed
    else:
        delivery.next_attempt_at = _now() + timedelta(seconds=backoff_s(delivery.attempts, base_s=base_s,
                                                                         max_s=max_s))
    session.commit()


# ---- per-key signing secrets (stored encrypted)

def get_secret(session: Session, *, key_id: uuid.UUID, secret_key: str | None) -> str | None:
    row = session.get(WebhookSecret, key_id)
    return decrypt_secret(row.secret_encrypted, secret_key=secret_key) if row else None


def ensure_secret(session: Session, *, key_id: uuid.UUID, secret_key: str | None) -> str:
    return get_secret(session, key_id=key_id, secret_key=secret_key) or rotate_secret(
        session, key_id=key_id, secret_key=secret_key)


def rotate_secret(session: Session, *, key_id: uuid.UUID, secret_key: str | None) -> str:
    secret = new_secret()
    token = encrypt_secret(secret, secret_key=secret_key)
    row = session.get(WebhookSecret, key_id)
    if row is None:
        session.add(WebhookSecret(key_id=key_id, secret_encrypted=token))
    else:
        row.secret_encrypted, row.rotated_at = token, _now()
    session.flush()
    return secret

"""A key's webhook signing secret (stored encrypted), and the callback-URL check used at submit time."""
import uuid

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.api.deps import SessionDep, SettingsDep
from app.problems import Problem
from app.security import CurrentKey
from common import outbox
from common.audit import record
from common.settings import Settings
from common.webhooks import SIGNATURE_HEADER, SecretKeyMissing, UnsafeCallback, check_callback_url

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
# A secret must never be cached, nor kept by the Idempotency-Key replay store (app/idempotency.py).
_NO_STORE = {"Cache-Control": "no-store"}


class WebhookSecretPublic(BaseModel):
    secret: str = Field(description=f"HMAC-SHA256 key of the `{SIGNATURE_HEADER}` header on your callbacks")
    signature_header: str = SIGNATURE_HEADER
    scheme: str = "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + '.' + body)>"


@router.get("/secret", response_model=WebhookSecretPublic)
def read_webhook_secret(key: CurrentKey, session: SessionDep, settings: SettingsDep,
                        response: Response) -> WebhookSecretPublic:
    """This key's webhook signing secret (created on first use)."""
    secret = _with_secret_key(lambda: ensure_key_secret(session, key.id, settings))
    response.headers.update(_NO_STORE)
    return WebhookSecretPublic(secret=secret)


@router.post("/secret/rotate", response_model=WebhookSecretPublic)
def rotate_webhook_secret(key: CurrentKey, session: SessionDep, settings: SettingsDep,
                          response: Response) -> WebhookSecretPublic:
    """Replace this key's signing secret; deliveries sent from now on use the new one."""
    secret = _with_secret_key(lambda: outbox.rotate_secret(session, key_id=key.id, secret_key=settings.secret_key))
    record(session, action="webhook_secret.rotate", key=key, target=key.id)
    session.commit()
    response.headers.update(_NO_STORE)
    return WebhookSecretPublic(secret=secret)


def ensure_key_secret(session: Session, key_id: uuid.UUID, settings: Settings) -> str:
    """The key's secret, created if missing (two first requests at once: the loser reads the winner's)."""
    try:
        secret = outbox.ensure_secret(session, key_id=key_id, secret_key=settings.secret_key)
        session.commit()
        return secret
    except IntegrityError:
        session.rollback()
        return outbox.get_secret(session, key_id=key_id, secret_key=settings.secret_key)


def checked_callback_url(session: Session, key_id: uuid.UUID, url: str | None, settings: Settings) -> str | None:
    """Refuse unsafe callback URLs (422) before anything is stored, and make sure a secret exists to sign."""
    if url is None:
        return None
    try:
        check_callback_url(url, allow_hosts=settings.webhook_allow_host_set)
    except UnsafeCallback as exc:
        raise Problem(422, str(exc), title="Unsafe callback URL", reason="unsafe_callback_url") from exc
    _with_secret_key(lambda: ensure_key_secret(session, key_id, settings), status=422)
    return url


def _with_secret_key(action, status: int = 404):
    """Without ATTRIB_SECRET_KEY this deployment has no webhooks: a 4xx the client can read, not a
    server error (the fuzz test holds every operation to "never 5xx")."""
    try:
        return action()
    except SecretKeyMissing as exc:
        raise Problem(status, "this server does not send webhooks (its operator has not set ATTRIB_SECRET_KEY)",
                      title="Webhooks not enabled", reason="webhooks_disabled") from exc

"""Tables: works and their source images, per-encoder embeddings, attribution jobs and their
matches, and the published (encoder, index) pairs. The database is the source of truth; every
FAISS index can be rebuilt from the `embeddings` table."""
import enum
import uuid
from datetime import datetime, timezone

from sqlalchemy import (
    JSON, BigInteger, DateTime, Enum, Float, ForeignKey, Index, Integer, LargeBinary, String, Text,
    UniqueConstraint, Uuid, text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# SQLite only autoincrements a column declared exactly INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every database (SQLite stores them naive)."""
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class ImageState(str, enum.Enum):
    pending = "pending"
    embedded = "embedded"
    failed = "failed"


class Scope(str, enum.Enum):
    admin = "admin"            # keys, retraining, everything
    registrar = "registrar"    # register, list and delete the works of its own rights holder
    attributor = "attributor"  # submit and read its own attribution jobs


class JobStatus(str, enum.Enum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class ApiKey(Base):
    """An API key; only a hash of the secret is stored, the secret is shown once at creation."""
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[Scope] = mapped_column(Enum(Scope, name="key_scope", native_enum=False, length=20))
    rights_holder: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


_LIVE_IMPORT_ITEM = text("import_item_id IS NOT NULL AND deleted_at IS NULL")


class Work(Base):
    __tablename__ = "works"
    # A bulk import item registers at most one live work per rights holder: re-sending it is a no-op.
    __table_args__ = (Index("uq_works_live_import_item", "rights_holder", "import_item_id", unique=True,
                            postgresql_where=_LIVE_IMPORT_ITEM, sqlite_where=_LIVE_IMPORT_ITEM),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(300))
    rights_holder: Mapped[str] = mapped_column(String(200), index=True)
    external_ref: Mapped[str | None] = mapped_column(String(500))
    licence: Mapped[str | None] = mapped_column(String(200))
    # The `item_id` of the bulk import (POST /sources/bulk) that created the work, if any.
    import_item_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(index=True)

    images: Mapped[list["SourceImage"]] = relationship(
        back_populates="work", order_by="SourceImage.id", cascade="all, delete-orphan")

    @property
    def searchable(self) -> bool:
        """True once every image is embedded (then the work can appear in results)."""
        return bool(self.images) and all(i.state == ImageState.embedded for i in self.images)


class SourceImage(Base):
    __tablename__ = "source_images"
    __table_args__ = (UniqueConstraint("work_id", "content_sha256"),)

    # An integer id, because FAISS ids are int64 and map straight back to this row.
    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    work_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("works.id", ondelete="CASCADE"), index=True)
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)
    storage_key: Mapped[str] = mapped_column(String(200))
    media_type: Mapped[str] = mapped_column(String(50))
    byte_size: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    state: Mapped[ImageState] = mapped_column(
        Enum(ImageState, name="image_state", native_enum=False, length=20), default=ImageState.pending,
        index=True)  # the recovery pass looks for pending images every few seconds
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    work: Mapped[Work] = relationship(back_populates="images")


class Embedding(Base):
    """One vector per (image, encoder): a new encoder fills its own rows while the old one serves."""
    __tablename__ = "embeddings"

    image_id: Mapped[int] = mapped_column(
        ForeignKey("source_images.id", ondelete="CASCADE"), primary_key=True)
    encoder_id: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, L2-normalised
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AttributionJob(Base):
    __tablename__ = "attribution_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, name="job_status", native_enum=False, length=20), default=JobStatus.queued,
        index=True)
    query_sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(200))
    top_k: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Name of the worker running the job, so a dead worker's jobs can be recovered.
    worker: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    encoder_id: Mapped[str | None] = mapped_column(String(200))
    index_id: Mapped[str | None] = mapped_column(String(200))
    index_size: Mapped[int | None] = mapped_column(BigInteger)
    unattributed: Mapped[float | None] = mapped_column(Float)
    client_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    # The client allowed this query image to be used as unlabeled training data.
    training_use: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None] = mapped_column(index=True)  # the retention sweep looks it up
    # Where the finished job is POSTed (docs/design.md §6); checked against SSRF at submit and send time.
    callback_url: Mapped[str | None] = mapped_column(String(2000))

    matches: Mapped[list["Match"]] = relationship(
        back_populates="job", order_by="Match.rank", cascade="all, delete-orphan")
    deliveries: Mapped[list["WebhookDelivery"]] = relationship(
        order_by="WebhookDelivery.created_at", cascade="all, delete-orphan", passive_deletes=True)


class Match(Base):
    __tablename__ = "matches"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("attribution_jobs.id", ondelete="CASCADE"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    work_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("works.id", ondelete="CASCADE"), index=True)
    score: Mapped[float] = mapped_column(Float)
    share: Mapped[float] = mapped_column(Float)
    best_image_id: Mapped[int | None] = mapped_column(BigInteger)

    job: Mapped[AttributionJob] = relationship(back_populates="matches")
    work: Mapped[Work] = relationship()


class ModelPair(Base):
    """A published (encoder, index) pair. At most one is active (a partial unique index enforces it,
    so two concurrent publishes cannot both win); workers follow it."""
    __tablename__ = "model_pairs"
    __table_args__ = (Index("uq_model_pairs_one_active", "active", unique=True,
                            postgresql_where=text("active"), sqlite_where=text("active")),)

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    encoder_id: Mapped[str] = mapped_column(String(200))
    encoder_uri: Mapped[str] = mapped_column(String(500))
    index_path: Mapped[str | None] = mapped_column(String(500))
    index_id: Mapped[str | None] = mapped_column(String(200))
    report: Mapped[dict | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]


class DeliveryStatus(str, enum.Enum):
    pending = "pending"      # due at next_attempt_at (also while being sent: the claim pushes it forward)
    delivered = "delivered"  # the receiver answered 2xx
    failed = "failed"        # every attempt used


class WebhookSecret(Base):
    """A key's webhook signing secret, encrypted with ATTRIB_SECRET_KEY (Fernet); never stored in clear."""
    __tablename__ = "webhook_secrets"

    key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True)
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rotated_at: Mapped[datetime | None]


class WebhookDelivery(Base):
    """The outbox: one row per event to POST, inserted in the transaction that produced the event, so a
    crash can neither lose it nor send it for an uncommitted result. Its id is the delivery id that
    receivers dedupe on; every retry of a row sends the same id and body."""
    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("attribution_jobs.id", ondelete="CASCADE"), index=True)
    key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(50))
    url: Mapped[str] = mapped_column(String(2000))
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, name="delivery_status", native_enum=False, length=20), default=DeliveryStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)


class AuditEntry(Base):
    """Who did what, when: registrations, deletions, key operations, publishes (GET /audit, admins)."""
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)  # no FK: the record outlives anything
    actor: Mapped[str] = mapped_column(String(200))                # "key <prefix> (name)", "cli", "system"
    action: Mapped[str] = mapped_column(String(50), index=True)   # e.g. work.register, key.revoke
    target: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[dict | None] = mapped_column(JSON)

"""Tables: works and their source images, per-encoder embeddings, attribution jobs and their
matches, and the published (encoder, index) pairs. The database is the source of truth; every
FAISS index can be rebuilt from the `embeddings` table."""
import enum
import uuid
from datetime import datetime, timezone

from sqlalchemy import (
    JSON, BigInteger, DateTime, Enum, Float, ForeignKey, Index, Integer, LargeBinary, String, Text,
    UniqueConstraint, Uuid, event, text, true,
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
    metrics = "metrics"        # read /metrics only (a Prometheus scraper needs no admin key)
    reviewer = "reviewer"      # read every attribution job and give verdicts on its matches, nothing else


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
    # Pages of live works by (created_at, id) keyset, all of them (admins) or one rights holder's
    # (partial: deleted works are never listed); imports look works up by their external reference.
    __table_args__ = (Index("ix_works_live_page", "created_at", "id",
                            postgresql_where=text("deleted_at IS NULL"), sqlite_where=text("deleted_at IS NULL")),
                      Index("ix_works_live_holder_page", "rights_holder", "created_at", "id",
                            postgresql_where=text("deleted_at IS NULL"), sqlite_where=text("deleted_at IS NULL")),
                      Index("ix_works_rights_holder_external_ref", "rights_holder", "external_ref"),
                      # Deleted works only: an index over every live row (all NULL) lured SQLite's planner
                      # away from the page indexes above into sorting the whole table.
                      Index("ix_works_deleted_at", "deleted_at", postgresql_where=text("deleted_at IS NOT NULL"),
                            sqlite_where=text("deleted_at IS NOT NULL")),
                      # A bulk import item registers at most one live work per rights holder: re-sending it is a no-op.
                      Index("uq_works_live_import_item", "rights_holder", "import_item_id", unique=True,
                            postgresql_where=_LIVE_IMPORT_ITEM, sqlite_where=_LIVE_IMPORT_ITEM))

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(300))
    rights_holder: Mapped[str] = mapped_column(String(200), index=True)
    external_ref: Mapped[str | None] = mapped_column(String(500))
    licence: Mapped[str | None] = mapped_column(String(200))
    # The `item_id` of the bulk import (POST /sources/bulk) that created the work, if any.
    import_item_id: Mapped[str | None] = mapped_column(String(200))
    # The bulk import that created it: the import is finished once all such works' images are done.
    # (Import rows are kept as long as the works: no ON DELETE, see migration 0013.)
    import_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bulk_imports.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]

    images: Mapped[list["SourceImage"]] = relationship(
        back_populates="work", order_by="SourceImage.id", cascade="all, delete-orphan")

    @property
    def searchable(self) -> bool:
        """True once every image is embedded (then the work can appear in results)."""
        return bool(self.images) and all(i.state == ImageState.embedded for i in self.images)


class SourceImage(Base):
    __tablename__ = "source_images"
    # The same bytes live at most once per rights holder among live works: a partial unique index over
    # (rights_holder, content_sha256) where `live`, so concurrent registrations of the same image
    # cannot both commit (the loser answers with the winner's work).
    __table_args__ = (UniqueConstraint("work_id", "content_sha256"),
                      Index("uq_source_images_live_hash", "rights_holder", "content_sha256", unique=True,
                            postgresql_where=text("live"), sqlite_where=text("live")))

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
    # Embedding attempts not yet known to have ended: raised (and committed) before the image is
    # decoded and embedded, reset on success. A worker killed by this image leaves it raised, so after
    # settings.max_image_attempts crashes the image is marked failed instead of crashing workers forever.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    # Denormalised from the work for the uniqueness index above; `live` is false once the work is
    # deleted (or, after migration 0004, for a duplicate that was stored before the index existed).
    rights_holder: Mapped[str | None] = mapped_column(String(200))
    live: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    work: Mapped[Work] = relationship(back_populates="images")


@event.listens_for(SourceImage, "before_insert")
def _copy_rights_holder(_mapper, _connection, image: SourceImage) -> None:
    """Every path that adds an image (API, bulk import, tests) gets the work's rights holder."""
    if image.rights_holder is None and image.work is not None:
        image.rights_holder = image.work.rights_holder


class Embedding(Base):
    """One vector per (image, encoder): a new encoder fills its own rows while the old one serves."""
    __tablename__ = "embeddings"

    image_id: Mapped[int] = mapped_column(
        ForeignKey("source_images.id", ondelete="CASCADE"), primary_key=True)
    encoder_id: Mapped[str] = mapped_column(String(200), primary_key=True, index=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, L2-normalised
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class VectorChange(Base):
    """The change log workers replay (docs/design.md §2): an upsert names its encoder, a delete (work
    deleted, image failed) has no encoder and applies to every index. `seq` is commit order, taken from
    the row-locked `changelog_head` counter in the transaction that changes the vectors."""
    __tablename__ = "vector_changes"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    op: Mapped[str] = mapped_column(String(10))  # "upsert" | "delete"
    image_id: Mapped[int] = mapped_column(BigInteger)
    encoder_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChangelogHead(Base):
    """One row: the last sequence number handed out. Its row lock orders writers by commit."""
    __tablename__ = "changelog_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)


class AttributionJob(Base):
    __tablename__ = "attribution_jobs"
    # A key's own jobs, newest first, a page at a time (GET /attribute).
    __table_args__ = (Index("ix_attribution_jobs_client_key_id_created_at", "client_key_id", "created_at", "id"),)

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
    # The pair that answered and the calibration its shares used ({inv_tau, bias, fitted_on, ece}): a
    # later calibration is a new pair, so this result never changes silently (design.md §7).
    pair_id: Mapped[int | None] = mapped_column(BigIntId, ForeignKey("model_pairs.id", ondelete="SET NULL"))
    calibration: Mapped[dict | None] = mapped_column(JSON)
    client_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"), index=True)
    # The client allowed this query image to be used as unlabeled training data.
    training_use: Mapped[bool] = mapped_column(default=False)
    # The query's embedding under `encoder_id`, kept because the query image is deleted after the job:
    # a reviewer's verdict copies it, so labels accumulate without keeping images (design §8).
    query_vector: Mapped[bytes | None] = mapped_column(LargeBinary)
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


class VerdictKind(str, enum.Enum):
    confirm = "confirm"                # this is the work: a (synthetic, source) pair
    reject = "reject"                  # not this work: a hard negative
    none_of_these = "none_of_these"    # no returned work is the source


class Verdict(Base):
    """A reviewer's judgement of a job's match, with a copy of what training needs (the query's
    embedding, and the query image only if its client allowed training use), so it outlives the job."""
    __tablename__ = "verdicts"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # SET NULL: a job removed by retention leaves its verdicts (labels) behind.
    job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("attribution_jobs.id", ondelete="SET NULL"), index=True)
    # The query's content hash: held-out splits group verdicts by query, never by job.
    query_sha256: Mapped[str] = mapped_column(String(64), index=True)
    work_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("works.id", ondelete="CASCADE"), index=True)
    verdict: Mapped[VerdictKind] = mapped_column(
        Enum(VerdictKind, name="verdict_kind", native_enum=False, length=20))
    reviewer_key_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    encoder_id: Mapped[str] = mapped_column(String(200))
    query_vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, L2-normalised
    query_storage_key: Mapped[str | None] = mapped_column(String(200))


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
    # The vector collection this pair serves on Milvus (indexing.pair_collections); NULL with FAISS, which
    # serves index_path, and for pairs published before 0012 (workers then use the encoder's default one).
    # Workers open what the active row names, so the row's switch is the collection switch on every backend.
    collection: Mapped[str | None] = mapped_column(String(200))
    report: Mapped[dict | None] = mapped_column(JSON)
    # Share calibration served with this pair (core.calibration.Calibration.to_dict()); NULL: the
    # encoder artefact's, else the packaged default. A new calibration is a new pair row.
    calibration: Mapped[dict | None] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(default=False, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]


class ImportStatus(str, enum.Enum):
    registering = "registering"  # the request is still registering items: never finished yet
    embedding = "embedding"      # every item answered; waiting for its created images to be embedded
    finished = "finished"        # every created image is embedded or failed (or its work was deleted)


class BulkImport(Base):
    """One `POST /sources/bulk` request, tracked until every image it created is searchable or failed;
    then, if it named a `callback_url`, one `registration.finished` webhook is queued (common.imports)."""
    __tablename__ = "bulk_imports"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    # The registrar key's rights holder (NULL for an admin's import, which only admins may read).
    rights_holder: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[ImportStatus] = mapped_column(
        Enum(ImportStatus, name="import_status", native_enum=False, length=20), default=ImportStatus.registering,
        index=True)  # the recovery pass looks for imports still embedding
    callback_url: Mapped[str | None] = mapped_column(String(2000))
    created_items: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_items: Mapped[int] = mapped_column(Integer, default=0)
    refused_items: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]

    deliveries: Mapped[list["WebhookDelivery"]] = relationship(
        order_by="WebhookDelivery.created_at", cascade="all, delete-orphan", passive_deletes=True)


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
    # Or the bulk import whose registration.finished event this is.
    import_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("bulk_imports.id", ondelete="CASCADE"), index=True)
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

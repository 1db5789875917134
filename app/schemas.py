"""Request and response shapes of the HTTP API."""
import re
import uuid
from datetime import datetime

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from common.db.models import DeliveryStatus, ImageState, JobStatus


# PostgreSQL's text types refuse NUL, and UTF-8 cannot encode an unpaired surrogate (JSON's "\ud800"
# escape makes one): such a value is refused as bad input (422) instead of failing the INSERT (500).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: str | None) -> str | None:
    if value is not None and _UNSTORABLE.search(value):
        raise ValueError("must not contain NUL or unpaired surrogate characters")
    return value


Storable = AfterValidator(_storable)  # use as Annotated[str, Form(...), Storable] or in a model field


class SourceImagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    content_sha256: str
    media_type: str
    byte_size: int
    width: int
    height: int
    state: ImageState
    error: str | None = None


class WorkPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    rights_holder: str
    external_ref: str | None
    licence: str | None
    created_at: datetime
    searchable: bool = Field(description="true once every image of the work is embedded")
    images: list[SourceImagePublic]


class WorksPublic(BaseModel):
    data: list[WorkPublic]
    count: int = Field(description="total number of live works matching the query")
    offset: int
    limit: int


class MatchPublic(BaseModel):
    rank: int
    work_id: uuid.UUID
    title: str
    rights_holder: str
    score: float = Field(description="cosine similarity of the work's closest image to the query")
    share: float = Field(description="calibrated attribution share in [0, 1]")


class DeliveryPublic(BaseModel):
    """One webhook delivery of a job (its id is the `X-Attrib-Delivery` header receivers dedupe on)."""
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    event: str
    url: str
    status: DeliveryStatus
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = Field(default=None, description="when the next try is due, if pending")
    delivered_at: datetime | None = None


class AttributionPublic(BaseModel):
    id: uuid.UUID
    status: JobStatus
    status_url: str
    created_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    top_k: int
    encoder_id: str | None = None
    index_id: str | None = None
    index_size: int | None = None
    matches: list[MatchPublic] | None = Field(default=None, description="ranked works, when done")
    unattributed: float | None = Field(default=None, description="share no returned work receives")
    deliveries: list[DeliveryPublic] | None = Field(default=None, description="webhook deliveries, with callback_url")

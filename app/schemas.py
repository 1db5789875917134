"""Request and response shapes of the HTTP API."""
import re
import uuid
from typing import Annotated
from datetime import datetime, timezone
from typing import Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from common.db.models import DeliveryStatus, ImageState, JobStatus

_WORK_EXAMPLE = {
    "id": "6f1c1b52-3c1e-4d8a-9a57-0f6c2b8f5e11", "title": "Blue teapot", "rights_holder": "ACME",
    "external_ref": "cat-00042", "licence": "CC-BY-4.0", "created_at": "2026-11-26T01:00:00Z", "searchable": True,
    "images": [{"id": 1, "content_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "media_type": "image/jpeg", "byte_size": 48213, "width": 512, "height": 512, "state": "embedded",
                "error": None}]}
_ATTRIBUTION_EXAMPLE = {
    "id": "0b7e4c1a-9d3f-4b52-8e61-2a4f9c3d7e80", "status": "done",
    "status_url": "http://localhost:8000/v1/attribute/0b7e4c1a-9d3f-4b52-8e61-2a4f9c3d7e80",
    "created_at": "2026-11-26T01:00:05Z", "finished_at": "2026-11-26T01:00:06Z", "error": None, "top_k": 10,
    "encoder_id": "efficientnet-lite0-imagenet@1a2b3c4d", "index_id": "idx-5e6f", "index_size": 60,
    "matches": [{"rank": 1, "work_id": "6f1c1b52-3c1e-4d8a-9a57-0f6c2b8f5e11", "title": "Blue teapot",
                 "rights_holder": "ACME", "score": 0.93, "share": 0.71}],
    "unattributed": 0.29}


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
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_WORK_EXAMPLE]})

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
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next page; null on the last")
    count: int | None = Field(default=None, description="number of live works matching the filters, only with "
                                                        "`with_count=true` or the deprecated `offset` (it costs "
                                                        "a full count)")
    offset: int | None = Field(default=None, description="the deprecated `offset` echoed back")
    limit: int


class PageParams(BaseModel):
    """Keyset pagination: pass a page's `next_cursor` back as `cursor`."""
    model_config = ConfigDict(extra="forbid")

    cursor: str | None = Field(default=None, max_length=200, description="`next_cursor` of the previous page")
    limit: int = Field(default=20, ge=1, le=100)
    created_after: datetime | None = Field(default=None, description="created at or after (ISO 8601)")
    created_before: datetime | None = Field(default=None, description="created before (ISO 8601)")

    @field_validator("created_after", "created_before")
    @classmethod
    def in_utc(cls, value: datetime | None) -> datetime | None:
        """Stored times are UTC (SQLite keeps them without an offset): compare in UTC; naive means UTC."""
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class WorkFilters(PageParams):
    offset: int | None = Field(default=None, ge=0, le=1_000_000_000,
                               json_schema_extra={"deprecated": True},
                               description="deprecated: use `cursor` (offset pages cost more the deeper they go)")
    with_count: bool = Field(default=False, description="also count every matching work (slower on large catalogues)")
    rights_holder: Annotated[str | None, Storable] = Field(default=None, max_length=200,
                                      description="admins: any rights holder; registrars: only their own")
    external_ref: Annotated[str | None, Storable] = Field(default=None, max_length=500, description="exact external reference")
    title: Annotated[str | None, Storable] = Field(default=None, max_length=300, description="case-insensitive substring of the title")
    q: Annotated[str | None, Storable] = Field(default=None, max_length=300,
                          description="case-insensitive substring of the title or the external reference")


class WorkUpdate(BaseModel):
    """Fields to change; a field left out is kept, `null` clears `external_ref` or `licence`."""
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"title": "Blue teapot (2nd edition)", "external_ref": "cat-00042"}]})

    title: Annotated[str | None, Storable] = Field(default=None, min_length=1, max_length=300)
    external_ref: Annotated[str | None, Storable] = Field(default=None, max_length=500)
    licence: Annotated[str | None, Storable] = Field(default=None, max_length=200)


class JobFilters(PageParams):
    status: JobStatus | None = None
    key_id: uuid.UUID | None = Field(default=None, description="admins only: the jobs of this API key")
    format: Literal["json", "csv"] = Field(
        default="json", description="`csv`: every matching job (one row per match), streamed, ignoring `limit`")


class MatchPublic(BaseModel):
    rank: int
    work_id: uuid.UUID
    title: str
    rights_holder: str
    score: float = Field(description="cosine similarity of the work's closest image to the query")
    share: float = Field(description="calibrated attribution share in [0, 1]")
    best_image_id: int | None = Field(default=None, description="the work's image closest to the query")
    external_ref: str | None = None
    licence: str | None = None
    thumbnail_url: str | None = Field(default=None, description="a small JPEG of the best image (evidence)")


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


class CalibrationPublic(BaseModel):
    """Whether the shares are calibrated, and on what (design.md §7); also shown per pair by GET /models."""
    fitted_on: str = Field(description="'uncalibrated', or the data the two share scalars were fitted on")
    ece: float | None = Field(default=None, description="held-out expected calibration error of the top "
                                                        "share when fitted, in [0, 1]")


class AttributionPublic(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [_ATTRIBUTION_EXAMPLE]})

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
    pair_id: int | None = Field(default=None, description="the published pair that answered (none: the default)")
    calibration: CalibrationPublic | None = Field(default=None, description="what the shares were calibrated on")
    matches: list[MatchPublic] | None = Field(default=None, description="ranked works, when done")
    unattributed: float | None = Field(default=None, description="share no returned work receives")
    deliveries: list[DeliveryPublic] | None = Field(default=None, description="webhook deliveries, with callback_url")
    query_thumbnail_url: str | None = Field(default=None, description="a small JPEG of the query image")


class AttributionsPublic(BaseModel):
    data: list[AttributionPublic]
    next_cursor: str | None = Field(default=None, description="pass as `cursor` for the next (older) page")

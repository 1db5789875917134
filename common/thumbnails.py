"""Small JPEG thumbnails for evidence: a match's source image and the query beside it, so a person
judging a result sees both without downloading originals. Pure Pillow (the API makes them).

Keys: `thumbs/sources/<work id>/<image id>.jpg` (made on first request, cached; removed with the work)
and `thumbs/queries/<2 hex>/<job id>.jpg` (made at submission, because the query image itself is deleted
once the job ends; whoever deletes a job deletes this key with it: `query_thumbnail_key`)."""
import io
import uuid

from PIL import Image

from common.images import decode_rgb

THUMBNAIL_SIDE = 256  # the longer side, in pixels
THUMBNAIL_QUALITY = 80


def make_thumbnail(data: bytes, side: int = THUMBNAIL_SIDE) -> bytes:
    """Image bytes that passed `check_image` -> an upright RGB JPEG whose longer side is at most `side`."""
    image = decode_rgb(data, draft_size=(side, side))
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()


def source_thumbnail_key(work_id: uuid.UUID, image_id: int) -> str:
    return f"{source_thumbnails_prefix(work_id)}/{int(image_id)}.jpg"


def source_thumbnails_prefix(work_id: uuid.UUID) -> str:
    return f"thumbs/sources/{uuid.UUID(str(work_id))}"


def query_thumbnail_key(job_id: uuid.UUID) -> str:
    hex_id = uuid.UUID(str(job_id)).hex
    return f"thumbs/queries/{hex_id[:2]}/{hex_id}.jpg"

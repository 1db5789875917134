"""Reading uploads with a byte limit enforced while reading, then checking them as images."""
from fastapi import UploadFile

from common.image_pool import CheckerPool
from common.images import CheckedImage, ImageRejected, limits_from
from common.settings import Settings

_CHUNK = 1 << 20
# This process's decoder children, reused from upload to upload (a fresh one per image cost more CPU
# than the decode): started on the first upload, ended at the app's shutdown (app.main's lifespan).
CHECKERS = CheckerPool()


def read_checked_image(upload: UploadFile, settings: Settings) -> CheckedImage:
    """Read at most max_upload_bytes + 1 into memory (Starlette has already spooled the part to a
    temporary file; the request-size middleware bounds that), then check. Blocking: call from a
    sync route, which FastAPI runs in its thread pool, never on the event loop."""
    limit = settings.max_upload_bytes
    chunks, size = [], 0
    while chunk := upload.file.read(_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ImageRejected("too_large", f"{upload.filename or 'the file'} exceeds {limit} bytes", 413)
    try:
        return CHECKERS.check(b"".join(chunks), limits_from(settings))
    except ImageRejected as exc:
        name = upload.filename or "upload"
        raise ImageRejected(exc.reason, f"{name}: {exc.detail}", exc.status) from exc

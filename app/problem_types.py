"""The catalogue of problem `type`s: every problem+json body names one as `/problems/<slug>`, and
`GET /problems/<slug>` explains it, so the URI in an error resolves to a page instead of nowhere."""
from dataclasses import dataclass


@dataclass(frozen=True)
class ProblemType:
    slug: str
    status: int
    title: str
    explanation: str

    @property
    def uri(self) -> str:
        return f"/problems/{self.slug}"


_TYPES = [
    ProblemType("bad-request", 400, "Bad request", "A header or the request line is malformed, for example an "
                "Idempotency-Key outside 1 to 200 characters."),
    ProblemType("unauthorized", 401, "API key required or invalid", "Send a valid, unrevoked API key as "
                "`Authorization: Bearer atk_…`."),
    ProblemType("forbidden", 403, "Forbidden", "The key is valid but its scope does not allow this, or it names "
                "another rights holder or key than its own."),
    ProblemType("not-found", 404, "Not found", "Nothing with this id exists for this key. Another tenant's works "
                "and jobs answer exactly like missing ones."),
    ProblemType("method-not-allowed", 405, "Method not allowed", "This path does not accept this HTTP method."),
    ProblemType("conflict", 409, "Conflict", "The request conflicts with what is stored, or a request with the same "
                "Idempotency-Key is still running (retry after `Retry-After` seconds)."),
    ProblemType("duplicate-images", 409, "Duplicate images", "Some images are already registered for this rights "
                "holder in other works; `duplicates` maps each image hash to its work."),
    ProblemType("duplicate-external-ref", 409, "Duplicate external_ref", "With ATTRIB_UNIQUE_EXTERNAL_REF on, a "
                "rights holder's external_ref names one live work; `work_id` is that work: PATCH it instead."),
    ProblemType("length-required", 411, "Length required", "Uploads need a Content-Length; chunked bodies are refused."),
    ProblemType("request-too-large", 413, "Request too large", "The whole request exceeds ATTRIB_MAX_REQUEST_BYTES."),
    ProblemType("invalid-request", 422, "Invalid request parameters", "A parameter or field is missing or invalid: "
                "`detail` says which in one line, `errors` lists each as {loc, msg}."),
    ProblemType("rate-limited", 429, "Too many requests", "This key used its requests for the current window; "
                "retry after `Retry-After` seconds."),
    ProblemType("internal-error", 500, "Internal error", "An unexpected error; nothing was half-stored."),
    ProblemType("unavailable", 503, "Service unavailable", "The database, Redis or the job queue cannot be reached, "
                "or the service is not ready; retry after `Retry-After` seconds."),
    # Image rejections (`reason` in the body, with underscores): bad input never changes what is stored.
    ProblemType("empty", 422, "Invalid image", "The uploaded file is empty."),
    ProblemType("not-an-image", 422, "Invalid image", "The file is not an image in a supported format."),
    ProblemType("unsupported-format", 415, "Unsupported image format", "Supported: JPEG, PNG, WebP, GIF, BMP, TIFF, MPO."),
    ProblemType("corrupt", 422, "Invalid image", "The file starts like a supported image but cannot be decoded."),
    ProblemType("too-small", 422, "Invalid image", "The image is smaller than ATTRIB_MIN_IMAGE_SIDE on a side."),
    ProblemType("too-large", 413, "Image too large", "The file exceeds ATTRIB_MAX_UPLOAD_BYTES."),
    ProblemType("too-many-pixels", 413, "Image too large", "The image has more than ATTRIB_MAX_IMAGE_PIXELS pixels "
                "(checked before decoding)."),
    ProblemType("metadata-too-large", 413, "Image too large", "The image's text metadata is too large."),
]
PROBLEM_TYPES: dict[str, ProblemType] = {t.slug: t for t in _TYPES}
_BY_STATUS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
              405: "method-not-allowed", 409: "conflict", 411: "length-required", 413: "request-too-large",
              422: "invalid-request", 429: "rate-limited", 500: "internal-error", 503: "unavailable"}


def type_for_status(status: int) -> str:
    """The generic type of a status; `about:blank` (RFC 9457's "no more than the status") otherwise."""
    slug = _BY_STATUS.get(status)
    return PROBLEM_TYPES[slug].uri if slug else "about:blank"

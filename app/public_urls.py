"""URLs the API hands out (`Location`, `status_url`) are never built from the request's Host header,
which any client sets (host-header injection: a poisoned link in a cache or a log). With
ATTRIB_PUBLIC_BASE_URL set they are absolute under it; otherwise they are paths relative to the API's
root (the server's configured root_path, never a header), which every HTTP client resolves against
the URL it called."""
from fastapi import Request

from common.settings import get_settings


def public_url(request: Request, path: str) -> str:
    base = get_settings().public_base_url
    if base:
        return f"{base.rstrip('/')}{path}"
    return f"{request.scope.get('root_path', '').rstrip('/')}{path}"

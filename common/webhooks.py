"""Webhook signing and verification, secret encryption, and callback-URL safety (docs/design.md §6).
Shared by the API (checks URLs, hands out secrets), the worker (signs and sends) and receivers (verify).

Signature header: `X-Attrib-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>`.
The timestamp is signed with the body, so a captured request cannot be replayed later than the
receiver's tolerance; within it, receivers dedupe on `X-Attrib-Delivery` (the same id on every retry)."""
import base64
import hashlib
import hmac
import ipaddress
import secrets
import socket
import time
from urllib.parse import urlsplit, urlunsplit

SIGNATURE_HEADER = "X-Attrib-Signature"
DELIVERY_HEADER = "X-Attrib-Delivery"
EVENT_HEADER = "X-Attrib-Event"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_S = 300


# ---- signing (sender) and verification (receiver)

def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature_header(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={_hmac_hex(secret, t, body)}"


def verify_signature(secret: str, body: bytes, header: str, *, tolerance_s: float = DEFAULT_TOLERANCE_S,
                     now: float | None = None) -> bool:
    """True if `header` signs exactly `body` with `secret` and its timestamp is within the tolerance.
    Several v1= values are accepted (a sender may sign with an old and a new secret while rotating)."""
    fields = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [v for k, v in fields if k == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = _hmac_hex(secret, t, body)
    return any(hmac.compare_digest(expected, v) for k, v in fields if k == "v1")


def _hmac_hex(secret: str, t: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


# ---- secrets at rest

class SecretKeyMissing(RuntimeError):
    """ATTRIB_SECRET_KEY is not set, so secrets cannot be stored (webhooks are off)."""


def _fernet(secret_key: str | None):
    from cryptography.fernet import Fernet, MultiFernet
    if not secret_key:
        raise SecretKeyMissing("webhooks need ATTRIB_SECRET_KEY (a long random string) to store secrets")
    # Any passphrase works: each comma-separated entry is stretched to a Fernet key by SHA-256.
    keys = [Fernet(base64.urlsafe_b64encode(hashlib.sha256(k.strip().encode()).digest()))
            for k in secret_key.split(",") if k.strip()]
    return MultiFernet(keys)


def encrypt_secret(secret: str, *, secret_key: str | None) -> str:
    return _fernet(secret_key).encrypt(secret.encode()).decode()


def decrypt_secret(token: str, *, secret_key: str | None) -> str:
    return _fernet(secret_key).decrypt(token.encode()).decode()


# ---- callback URLs (SSRF)

class UnsafeCallback(ValueError):
    """The callback URL is malformed or points where the service must not send requests."""


def check_callback_url(url: str, *, allow_hosts: frozenset[str] = frozenset()) -> str:
    """Return the URL if it is http(s) and every address its host resolves to is public (or the host is
    allow-listed); raise UnsafeCallback otherwise. Called at submit time."""
    host, port = _host_and_port(url)
    if host not in allow_hosts:
        _checked_addresses(host, port)
    return url


def pinned_targets(url: str, *, allow_hosts: frozenset[str] = frozenset()) -> list[tuple[str, dict, dict]]:
    """At send time: resolve and check once more (DNS may have changed since submit), then return, for
    each checked address, the URL to connect to that address itself, with the `Host` header and TLS
    server name of the original host. The HTTP client never resolves the name again, so a DNS answer
    that changes between check and connect (rebinding) cannot redirect the request."""
    host, port = _host_and_port(url)
    addresses = _resolve(host, port) if host in allow_hosts else _checked_addresses(host, port)
    parts = urlsplit(url)
    targets = []
    for address in addresses:
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{parts.port}" if parts.port else literal
        target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        targets.append((target, {"Host": parts.netloc}, extensions))
    return targets


def _host_and_port(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeCallback(f"callback_url is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeCallback("callback_url must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise UnsafeCallback("callback_url must not carry credentials")
    return parts.hostname.lower(), port


def _checked_addresses(host: str, port: int) -> list[str]:
    addresses = _resolve(host, port)
    for address in addresses:
        if not _is_public(address):
            raise UnsafeCallback(f"callback host {host} resolves to {address}, a non-public address "
                                 "(an operator may allow it with ATTRIB_WEBHOOK_ALLOW_HOSTS)")
    return addresses


def _resolve(host: str, port: int) -> list[str]:
    """Addresses in the resolver's order, without repeats."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeCallback(f"callback host {host} does not resolve") from exc
    return list(dict.fromkeys(info[4][0] for info in infos))


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # is_global excludes loopback, link-local, private, unspecified, reserved and shared (CGNAT) space.
    return ip.is_global and not ip.is_multicast

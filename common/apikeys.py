"""API keys: created and revoked here (CLI) or by admins over the API; only a SHA-256 of the secret
is stored (the secret is 256 random bits, so a slow password hash would add nothing).

    python -m common.apikeys create --name ci --scope admin
    python -m common.apikeys create --name acme-registrar --scope registrar --rights-holder "ACME"
    python -m common.apikeys list
    python -m common.apikeys revoke KEY_ID
"""
import argparse
import hashlib
import secrets
import sys
import uuid
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from common.db.models import ApiKey, Scope

KEY_PREFIX = "atk_"
# Incremented after every revocation; API processes drop their cached key lookups when it changes.
KEYS_VERSION = "attrib:keys:version"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, *, name: str, scope: Scope, rights_holder: str | None = None) -> tuple[ApiKey, str]:
    """Returns the stored row and the secret, which is never stored or shown again."""
    if scope == Scope.registrar and not rights_holder:
        raise ValueError("a registrar key needs the rights holder whose works it manages")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(name=name, scope=scope, rights_holder=rights_holder if scope == Scope.registrar else None,
                 prefix=secret[:12], secret_sha256=hash_secret(secret))
    session.add(key)
    session.flush()
    return key, secret


def authenticate(session: Session, *, secret: str) -> ApiKey | None:
    key = session.scalar(select(ApiKey).where(ApiKey.secret_sha256 == hash_secret(secret)))
    return key if key is not None and key.revoked_at is None else None


def revoke_key(session: Session, *, key_id: uuid.UUID) -> ApiKey | None:
    key = session.get(ApiKey, key_id)
    if key is not None and key.revoked_at is None:
        key.revoked_at = datetime.now(timezone.utc)
    return key


def announce_revocation(redis) -> None:
    """Call after the revocation commits: every API process stops accepting the key on its next request."""
    redis.incr(KEYS_VERSION)


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


def main(argv: list[str] | None = None) -> int:
    from common.audit import record
    from common.db.session import new_session
    parser = argparse.ArgumentParser(prog="python -m common.apikeys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print its secret once")
    create.add_argument("--name", required=True)
    create.add_argument("--scope", required=True, choices=[s.value for s in Scope])
    create.add_argument("--rights-holder", help="required for registrar keys")
    create.add_argument("--quiet", action="store_true", help="print only the secret")
    commands.add_parser("list", help="list keys (never their secrets)")
    revoke = commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", type=uuid.UUID)
    args = parser.parse_args(argv)
    with new_session() as session:
        if args.command == "create":
            try:
                key, secret = create_key(session, name=args.name, scope=Scope(args.scope),
                                         rights_holder=args.rights_holder)
            except ValueError as exc:
                parser.error(str(exc))
            record(session, action="key.create", actor="cli", target=key.id,
                   detail={"name": key.name, "scope": key.scope.value, "rights_holder": key.rights_holder})
            session.commit()
            print(secret if args.quiet else f"created {key.scope.value} key {key.id} ({key.name})\n"
                  f"secret (shown once, store it now): {secret}")
        elif args.command == "list":
            for key in list_keys(session):
                state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
                print(f"{key.id}  {key.prefix}…  {key.scope.value:<10} {key.rights_holder or '-':<20} {state}  {key.name}")
        else:
            key = revoke_key(session, key_id=args.key_id)
            if key is not None:
                record(session, action="key.revoke", actor="cli", target=key.id)
            session.commit()
            if key is None:
                print(f"no key {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked {key.id} ({key.name})")
            _announce_or_warn()
    return 0


def _announce_or_warn() -> None:
    from redis import Redis
    from redis.exceptions import RedisError

    from common.settings import get_settings
    try:
        announce_revocation(Redis.from_url(get_settings().redis_url, socket_connect_timeout=2))
    except RedisError as exc:
        print(f"warning: Redis unreachable ({exc}); API processes may accept the key for up to "
              f"{get_settings().key_cache_ttl_s:.0f} s more", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

"""API key lookups are cached per process (no database query on a hit) and a revocation, over the API
or the CLI's function, is honoured on the very next request of every process."""
from redis import Redis
from sqlalchemy import event

from common.apikeys import announce_revocation, authenticate, revoke_key
from common.db.session import get_engine, new_session
from tests.conftest import REDIS_URL, auth

JOB = "/attribute/00000000-0000-4000-8000-000000000000"


def count_queries():
    statements = []
    event.listen(get_engine(), "before_cursor_execute", lambda *args: statements.append(args[2]))
    return statements


def test_a_cached_key_costs_no_database_query(anonymous_client, make_key):
    headers = auth(make_key("attributor"))
    assert anonymous_client.get(JOB, headers=headers).status_code == 404
    statements = count_queries()
    assert anonymous_client.get(JOB, headers=headers).status_code == 404
    assert not [s for s in statements if "api_keys" in s], statements


def test_a_revoked_key_stops_at_once_despite_the_cache(anonymous_client, make_key):
    secret = make_key("attributor")
    assert anonymous_client.get(JOB, headers=auth(secret)).status_code == 404  # now cached
    with new_session() as session:
        revoke_key(session, key_id=authenticate(session, secret=secret).id)
        session.commit()
    announce_revocation(Redis.from_url(REDIS_URL))
    assert anonymous_client.get(JOB, headers=auth(secret)).status_code == 401


def test_other_keys_survive_a_revocation(client, anonymous_client, make_key):
    keep, drop = auth(make_key("attributor")), client.post("/keys", json={"name": "t", "scope": "attributor"}).json()
    assert anonymous_client.get(JOB, headers=keep).status_code == 404
    assert client.delete(f"/keys/{drop['id']}").status_code == 204
    assert anonymous_client.get(JOB, headers=auth(drop["secret"])).status_code == 401
    assert anonymous_client.get(JOB, headers=keep).status_code == 404

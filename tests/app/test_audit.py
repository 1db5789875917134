"""The audit log records registrations, deletions and key operations with who did them, and admins
page through it newest first with a cursor; other scopes cannot read it."""
import pytest

from common.db.models import AuditEntry
from common.db.session import new_session
from tests.conftest import auth
from tests.factories import photo_bytes


def register(client, headers=None) -> str:
    files = [("images", ("a.jpg", photo_bytes("dog", 0), "image/jpeg"))]
    response = client.post("/sources", files=files, data={"title": "dog", "rights_holder": "studio"},
                           headers=headers or {})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_actions_are_recorded_and_paged(client, make_key):
    work_id = register(client)
    assert client.post("/sources", files=[("images", ("a.jpg", photo_bytes("dog", 0), "image/jpeg"))],
                       data={"title": "dog", "rights_holder": "studio"}).status_code == 200  # duplicate: no entry
    key = client.post("/keys", json={"name": "acme", "scope": "attributor"}).json()
    assert client.delete(f"/keys/{key['id']}").status_code == 204
    assert client.delete(f"/sources/{work_id}").status_code == 204

    page = client.get("/audit", params={"limit": 3}).json()
    assert [e["action"] for e in page["data"]] == ["work.delete", "key.revoke", "key.create"]
    assert page["data"][0]["target"] == work_id and page["data"][0]["actor"].startswith("key atk_")
    assert page["data"][2]["detail"]["scope"] == "attributor" and "secret" not in str(page["data"][2])
    older = client.get("/audit", params={"limit": 3, "cursor": page["next_cursor"]}).json()
    assert [e["action"] for e in older["data"]] == ["work.register"] and older["next_cursor"] is None
    only = client.get("/audit", params={"action": "work.register"}).json()["data"]
    assert [e["target"] for e in only] == [work_id]
    assert client.get("/audit", params={"cursor": "x1"}).status_code == 422


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_cursor_beyond_bigint_is_a_client_error(client):
    assert client.get("/audit", params={"cursor": str(2**63)}).status_code == 422
    assert client.get("/audit", params={"cursor": str(2**63 - 1)}).json()["data"] == []


def test_only_admins_read_the_audit_log(client, make_key):
    registrar = make_key("registrar", rights_holder="studio")
    assert client.get("/audit", headers=auth(registrar)).status_code == 403


def test_cli_key_operations_are_recorded(service_env):
    from common.apikeys import main
    assert main(["create", "--name", "ci", "--scope", "admin", "--quiet"]) == 0
    with new_session() as session:
        entry = session.query(AuditEntry).one()
    assert (entry.action, entry.actor, entry.detail["name"]) == ("key.create", "cli", "ci")

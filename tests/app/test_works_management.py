"""GET /sources filters and cursor pages, PATCH of a work's metadata, and external_ref uniqueness:
each checked across tenants (a registrar never reaches another rights holder's works)."""
from datetime import datetime, timedelta, timezone

import pytest

from tests.conftest import auth
from tests.factories import photo_bytes

SUBJECTS = ["dog", "cat", "backpack", "teapot", "vase"]


def register(client, headers, subject, title=None, external_ref=None, index=0):
    data = {"title": title or subject} | ({"external_ref": external_ref} if external_ref else {})
    response = client.post("/v1/sources", headers=headers, data=data,
                           files=[("images", (f"{subject}.jpg", photo_bytes(subject, index), "image/jpeg"))])
    return response


@pytest.fixture
def tenants(anonymous_client, make_key):
    """Two registrars with works, an admin and an attributor."""
    acme, other = auth(make_key("registrar", "ACME")), auth(make_key("registrar", "Other"))
    works = {}
    for i, subject in enumerate(SUBJECTS):
        works[subject] = register(anonymous_client, acme, subject, f"{subject.title()} study",
                                  f"ACME-{i:03d}").json()
    works["other-dog"] = register(anonymous_client, other, "dog", "Dog study", "ACME-000", index=1).json()
    return {"acme": acme, "other": other, "admin": auth(make_key("admin")),
            "attributor": auth(make_key("attributor")), "works": works}


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [w["id"] for w in response.json()["data"]]


def test_filters_stay_within_the_registrars_rights_holder(anonymous_client, tenants):
    get, acme, other, works = anonymous_client.get, tenants["acme"], tenants["other"], tenants["works"]
    assert ids(get("/v1/sources", headers=acme, params={"external_ref": "ACME-000"})) == [works["dog"]["id"]]
    # The same external_ref and title exist at the other rights holder: never listed for this key.
    assert ids(get("/v1/sources", headers=other, params={"external_ref": "ACME-000"})) == [works["other-dog"]["id"]]
    assert ids(get("/v1/sources", headers=other, params={"title": "cat"})) == []
    assert ids(get("/v1/sources", headers=other, params={"q": "ACME-001"})) == []
    assert get("/v1/sources", headers=other, params={"rights_holder": "ACME"}).status_code == 403
    assert get("/v1/sources", headers=tenants["attributor"]).status_code == 403
    # Admins see both holders and may filter by either.
    assert len(ids(get("/v1/sources", headers=tenants["admin"], params={"external_ref": "ACME-000"}))) == 2
    assert ids(get("/v1/sources", headers=tenants["admin"],
                   params={"external_ref": "ACME-000", "rights_holder": "Other"})) == [works["other-dog"]["id"]]


def test_title_and_q_search_case_insensitively_and_literally(anonymous_client, tenants):
    get, acme, works = anonymous_client.get, tenants["acme"], tenants["works"]
    assert ids(get("/v1/sources", headers=acme, params={"title": "TEAPOT"})) == [works["teapot"]["id"]]
    assert ids(get("/v1/sources", headers=acme, params={"q": "acme-004"})) == [works["vase"]["id"]]
    assert set(ids(get("/v1/sources", headers=acme, params={"q": "study"}))) == {
        works[s]["id"] for s in SUBJECTS}
    # LIKE wildcards in the search text are literal characters, not patterns.
    assert ids(get("/v1/sources", headers=acme, params={"title": "%"})) == []
    assert ids(get("/v1/sources", headers=acme, params={"q": "ACME_00"})) == []


def test_created_range(anonymous_client, tenants):
    get, acme = anonymous_client.get, tenants["acme"]
    now = datetime.now(timezone.utc)
    assert len(ids(get("/v1/sources", headers=acme, params={"created_after": (now - timedelta(hours=1)).isoformat()}))) == 5
    assert ids(get("/v1/sources", headers=acme, params={"created_after": (now + timedelta(hours=1)).isoformat()})) == []
    assert ids(get("/v1/sources", headers=acme, params={"created_before": (now - timedelta(hours=1)).isoformat()})) == []
    assert get("/v1/sources", headers=acme, params={"created_after": "yesterday"}).status_code == 422
    # An offset other than UTC means the same instant (SQLite stores UTC without an offset).
    half_an_hour_ago = (now - timedelta(minutes=30)).astimezone(timezone(timedelta(hours=2))).isoformat()
    assert len(ids(get("/v1/sources", headers=acme, params={"created_after": half_an_hour_ago}))) == 5
    assert ids(get("/v1/sources", headers=acme, params={"created_before": half_an_hour_ago})) == []


@pytest.mark.parametrize("service_env", ["sqlite", "postgresql"], indirect=True)
def test_cursor_pages_cover_every_work_once_and_count_only_on_request(anonymous_client, tenants):
    get, admin = anonymous_client.get, tenants["admin"]
    seen, cursor, pages = [], None, 0
    while True:
        body = get("/v1/sources", headers=admin, params={"limit": 2} | ({"cursor": cursor} if cursor else {})).json()
        assert body["count"] is None
        seen += [w["id"] for w in body["data"]]
        pages += 1
        if (cursor := body["next_cursor"]) is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 6
    assert seen == ids(get("/v1/sources", headers=admin, params={"limit": 100}))  # oldest first, stable
    assert get("/v1/sources", headers=admin, params={"with_count": True, "limit": 1}).json()["count"] == 6
    # The deprecated offset pages still work, with the count clients of the first API read.
    assert ids(get("/v1/sources", headers=admin, params={"offset": 4, "limit": 2})) == seen[4:]
    assert get("/v1/sources", headers=admin, params={"offset": 0}).json()["count"] == 6
    bad = get("/v1/sources", headers=admin, params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"


def test_patch_changes_metadata_of_own_works_only(anonymous_client, tenants):
    acme, other, admin, work = tenants["acme"], tenants["other"], tenants["admin"], tenants["works"]["cat"]
    url = f"/v1/sources/{work['id']}"
    refused = anonymous_client.patch(url, headers=other, json={"title": "stolen"})
    assert refused.status_code == 404
    assert anonymous_client.patch(url, headers=tenants["attributor"], json={"title": "x"}).status_code == 403
    assert anonymous_client.get(url, headers=acme).json()["title"] == "Cat study"

    changed = anonymous_client.patch(url, headers=acme, json={"title": "Cat, 2nd edition", "licence": "CC-BY-4.0"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["title"] == "Cat, 2nd edition" and changed.json()["external_ref"] == "ACME-001"
    cleared = anonymous_client.patch(url, headers=admin, json={"external_ref": None}).json()
    assert cleared["external_ref"] is None and cleared["licence"] == "CC-BY-4.0"
    assert anonymous_client.get(url, headers=acme).json()["title"] == "Cat, 2nd edition"
    audit = anonymous_client.get("/v1/audit", headers=admin, params={"action": "work.update"}).json()["data"]
    assert [(e["target"], e["detail"]) for e in audit][::-1] == [
        (work["id"], {"title": "Cat, 2nd edition", "licence": "CC-BY-4.0"}), (work["id"], {"external_ref": None})]


@pytest.mark.parametrize("body", [{"title": None}, {"title": ""}, {"rights_holder": "Other"}, {"title": "x" * 301}])
def test_patch_refuses_bad_fields_and_changes_nothing(anonymous_client, tenants, body):
    work = tenants["works"]["vase"]
    response = anonymous_client.patch(f"/v1/sources/{work['id']}", headers=tenants["admin"], json=body)
    assert response.status_code == 422
    after = anonymous_client.get(f"/v1/sources/{work['id']}", headers=tenants["acme"]).json()
    assert (after["title"], after["rights_holder"]) == (work["title"], "ACME")


@pytest.mark.parametrize("service_env", ["sqlite", "postgresql"], indirect=True)
def test_external_ref_unique_per_rights_holder_when_enabled(anonymous_client, make_key, monkeypatch):
    from common.settings import get_settings
    monkeypatch.setenv("ATTRIB_UNIQUE_EXTERNAL_REF", "true")
    get_settings.cache_clear()
    acme, other = auth(make_key("registrar", "ACME")), auth(make_key("registrar", "Other"))
    first = register(anonymous_client, acme, "dog", external_ref="REF-1")
    assert first.status_code == 201
    # Re-running an import with the same bytes answers with the same work ...
    assert register(anonymous_client, acme, "dog", external_ref="REF-1").json()["id"] == first.json()["id"]
    # ... and a different image under a used reference is refused, naming the work to PATCH.
    clash = register(anonymous_client, acme, "cat", external_ref="REF-1")
    assert clash.status_code == 409 and clash.json()["work_id"] == first.json()["id"]
    assert clash.json()["type"] == "/problems/duplicate-external-ref"
    assert register(anonymous_client, other, "cat", external_ref="REF-1").status_code == 201  # another holder
    second = register(anonymous_client, acme, "cat", external_ref="REF-2").json()
    patched = anonymous_client.patch(f"/v1/sources/{second['id']}", headers=acme, json={"external_ref": "REF-1"})
    assert patched.status_code == 409
    assert anonymous_client.delete(f"/v1/sources/{first.json()['id']}", headers=acme).status_code == 204
    # A deleted work frees its reference.
    assert anonymous_client.patch(f"/v1/sources/{second['id']}", headers=acme,
                                  json={"external_ref": "REF-1"}).status_code == 200


def test_external_refs_may_repeat_by_default(anonymous_client, make_key):
    acme = auth(make_key("registrar", "ACME"))
    assert register(anonymous_client, acme, "dog", external_ref="REF-1").status_code == 201
    assert register(anonymous_client, acme, "cat", external_ref="REF-1").status_code == 201


@pytest.mark.parametrize("service_env", ["postgresql"], indirect=True)
def test_concurrent_writers_of_one_external_ref_take_turns(service_env):
    """Two imports checking the same reference at once must not both find it free: the second waits
    for the first's transaction (PostgreSQL advisory lock), then sees its work."""
    import threading
    import uuid as uuid_module
    from common.db import crud, listing
    from common.db.session import new_session
    first = new_session()
    listing.lock_external_ref(first, rights_holder="ACME", external_ref="REF-9")
    crud.create_work(first, work_id=uuid_module.uuid4(), title="t", rights_holder="ACME", external_ref="REF-9",
                     licence=None, images=[])
    seen = []

    def second_writer():
        with new_session() as second:
            listing.lock_external_ref(second, rights_holder="ACME", external_ref="REF-9")
            seen.append(listing.find_live_work_by_external_ref(second, rights_holder="ACME", external_ref="REF-9"))

    thread = threading.Thread(target=second_writer)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive() and seen == []  # blocked while the first transaction is open
    first.commit()
    first.close()
    thread.join(timeout=10)
    assert seen and seen[0] is not None

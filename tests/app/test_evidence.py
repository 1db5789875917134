"""Evidence in results: a match names its best image, external_ref and licence and links a thumbnail;
who may fetch which thumbnail (attributors only images matched in their own jobs, registrars their own
works, reviewers matched images, admins all); the query's thumbnail outlives the query image."""
import io

from PIL import Image

from common.storage import LocalStorage
from common.thumbnails import THUMBNAIL_SIDE, query_thumbnail_key
from tests.app.review_helpers import finish_job, register, submit
from tests.conftest import auth


def _thumbnail_path(match: dict) -> str:
    return match["thumbnail_url"].removeprefix("http://testserver")


def test_match_carries_evidence_and_thumbnail(anonymous_client, make_key):
    acme, attributor = auth(make_key("registrar", "ACME")), auth(make_key("attributor"))
    work = register(anonymous_client, acme, external_ref="cat-42", licence="CC-BY-4.0")
    job = submit(anonymous_client, attributor)
    finish_job(job["id"], [work])
    body = anonymous_client.get(f"/attribute/{job['id']}", headers=attributor).json()
    match = body["matches"][0]
    assert match["best_image_id"] == work["images"][0]["id"]
    assert (match["external_ref"], match["licence"]) == ("cat-42", "CC-BY-4.0")
    thumb = anonymous_client.get(_thumbnail_path(match), headers=attributor)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["cache-control"].startswith("private")
    image = Image.open(io.BytesIO(thumb.content))
    assert image.format == "JPEG" and max(image.size) == THUMBNAIL_SIDE  # the photo is larger
    again = anonymous_client.get(_thumbnail_path(match), headers=attributor | {"If-None-Match": thumb.headers["etag"]})
    assert again.status_code == 304


def test_attributor_sees_only_images_matched_in_its_own_jobs(anonymous_client, make_key):
    acme = auth(make_key("registrar", "ACME"))
    mine, other = auth(make_key("attributor")), auth(make_key("attributor"))
    matched, unmatched = register(anonymous_client, acme, "dog"), register(anonymous_client, acme, "cat")
    job = submit(anonymous_client, mine)
    finish_job(job["id"], [matched])
    url = f"/sources/{matched['id']}/images/{matched['images'][0]['id']}/thumbnail"
    assert anonymous_client.get(url, headers=mine).status_code == 200
    assert anonymous_client.get(url, headers=other).status_code == 404  # another client's match
    browse = f"/sources/{unmatched['id']}/images/{unmatched['images'][0]['id']}/thumbnail"
    assert anonymous_client.get(browse, headers=mine).status_code == 404  # no catalogue browsing
    wrong_work = f"/sources/{unmatched['id']}/images/{matched['images'][0]['id']}/thumbnail"
    assert anonymous_client.get(wrong_work, headers=mine).status_code == 404


def test_registrars_see_their_own_works_reviewers_matched_admins_all(anonymous_client, make_key):
    acme, rival = auth(make_key("registrar", "ACME")), auth(make_key("registrar", "Rival"))
    reviewer, admin = auth(make_key("reviewer")), auth(make_key("admin"))
    matched, unmatched = register(anonymous_client, acme, "dog"), register(anonymous_client, acme, "cat")
    finish_job(submit(anonymous_client, auth(make_key("attributor")))["id"], [matched])
    urls = [f"/sources/{w['id']}/images/{w['images'][0]['id']}/thumbnail" for w in (matched, unmatched)]
    assert [anonymous_client.get(u, headers=acme).status_code for u in urls] == [200, 200]
    assert [anonymous_client.get(u, headers=rival).status_code for u in urls] == [404, 404]
    assert [anonymous_client.get(u, headers=reviewer).status_code for u in urls] == [200, 404]
    assert [anonymous_client.get(u, headers=admin).status_code for u in urls] == [200, 200]


def test_deleted_work_thumbnails_are_gone(anonymous_client, make_key, service_env):
    acme, admin = auth(make_key("registrar", "ACME")), auth(make_key("admin"))
    work = register(anonymous_client, acme)
    url = f"/sources/{work['id']}/images/{work['images'][0]['id']}/thumbnail"
    assert anonymous_client.get(url, headers=admin).status_code == 200
    storage = LocalStorage(service_env["ATTRIB_DATA_DIR"] + "/storage")
    assert list(storage.list(f"thumbs/sources/{work['id']}"))  # cached after the first request
    assert anonymous_client.delete(f"/sources/{work['id']}", headers=acme).status_code == 204
    assert anonymous_client.get(url, headers=admin).status_code == 404
    assert not list(storage.list(f"thumbs/sources/{work['id']}"))


def test_query_thumbnail_kept_for_owner_and_reviewers(anonymous_client, make_key, service_env):
    mine, other, reviewer = (auth(make_key(s)) for s in ("attributor", "attributor", "reviewer"))
    job = submit(anonymous_client, mine)
    assert job["query_thumbnail_url"] is None  # the worker makes it when it runs the job
    finish_job(job["id"], [])
    storage = LocalStorage(service_env["ATTRIB_DATA_DIR"] + "/storage")
    assert storage.exists(query_thumbnail_key(job["id"]))
    job = anonymous_client.get(f"/attribute/{job['id']}", headers=mine).json()
    url = job["query_thumbnail_url"].removeprefix("http://testserver")
    assert anonymous_client.get(url, headers=mine).status_code == 200
    assert anonymous_client.get(url, headers=reviewer).status_code == 200
    assert anonymous_client.get(url, headers=other).status_code == 404


def test_huge_image_id_is_a_client_error(anonymous_client, make_key):
    """Found by the fuzz run: image_id=2**63 overflowed the database integer and answered 500."""
    from fastapi.testclient import TestClient
    from app.main import create_app
    with TestClient(create_app(), raise_server_exceptions=False) as client:
        response = client.get(f"/sources/{'0' * 8}-0000-4000-8000-{'0' * 12}/images/{2**63}/thumbnail",
                              headers=auth(make_key("admin")))
    assert response.status_code == 422, response.text

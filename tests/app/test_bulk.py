"""POST /sources/bulk: a per-item report, idempotent per item, bad items alone refused, request limits
as clear problems, embedding enqueued as ceil(n / batch) jobs. No worker runs here."""
import json

import pytest
from PIL import Image
from redis import Redis

from common.jobs import get_queues
from common.settings import get_settings
from tests.conftest import auth, clear_cached_config
from tests.corpus.make_corpus import progressive_jpeg_with_scans
from tests.factories import encode, huge_png, photo_bytes, tiny_png, truncated_jpeg


def jpeg(subject: str, i: int):
    return (f"{subject}-{i}.jpg", photo_bytes(subject, i), "image/jpeg")


def post_bulk(client, items, files, **kwargs):
    parts = [("files", f) for f in files]
    return client.post("/sources/bulk", data={"manifest": json.dumps({"items": items})}, files=parts, **kwargs)


def embed_queue():
    settings = get_settings()
    return get_queues(Redis.from_url(settings.redis_url), settings.queue_name).embed


GOOD = [{"item_id": "dog", "title": "Dog", "rights_holder": "studio", "files": ["dog-0.jpg", "dog-1.jpg"]},
        {"item_id": "cat", "title": "Cat", "rights_holder": "studio", "licence": "CC-BY", "files": ["cat-0.jpg"]}]
GOOD_FILES = [jpeg("dog", 0), jpeg("dog", 1), jpeg("cat", 0)]


@pytest.mark.parametrize("service_env", ["sqlite", "postgresql"], indirect=True)
def test_report_per_item_and_a_rerun_answers_duplicate(client, monkeypatch):
    monkeypatch.setenv("ATTRIB_EMBED_JOB_IMAGES", "2")
    clear_cached_config()
    bad = [{"item_id": "broken", "title": "Broken", "rights_holder": "studio", "files": ["broken.jpg"]},
           {"item_id": "ghost", "title": "Ghost", "rights_holder": "studio", "files": ["nowhere.jpg"]},
           {"item_id": "untitled", "rights_holder": "studio", "files": ["dog-0.jpg"]},
           {"item_id": "cat", "title": "Cat again", "rights_holder": "studio", "files": ["cat-0.jpg"]},
           {"item_id": "anyone", "title": "No holder", "files": ["cat-0.jpg"]}]
    first = post_bulk(client, GOOD[:1] + bad[:3] + GOOD[1:] + bad[3:],
                      GOOD_FILES + [("broken.jpg", truncated_jpeg(), "image/jpeg")])
    assert first.status_code == 200, first.text
    body = first.json()
    by_id = {(r["item_id"], r["status"]): r for r in body["items"]}
    assert [r["status"] for r in body["items"]] == ["created", "refused", "refused", "refused", "created",
                                                    "refused", "refused"]
    assert body["summary"] == {"created": 2, "duplicate": 0, "refused": 5}
    assert by_id[("broken", "refused")]["reason"] == "corrupt"
    assert by_id[("ghost", "refused")]["reason"] == "missing_file"
    assert by_id[("untitled", "refused")]["reason"] == "invalid_item"
    assert by_id[("cat", "refused")]["reason"] == "duplicate_item_id"
    assert by_id[("anyone", "refused")]["reason"] == "rights_holder_required"
    # 3 images, 2 per job: ceil(3 / 2) = 2 embedding jobs, nothing else.
    assert len(embed_queue().job_ids) == 2
    works = client.get("/sources?with_count=true").json()
    assert works["count"] == 2 and {w["title"] for w in works["data"]} == {"Dog", "Cat"}

    again = post_bulk(client, GOOD, GOOD_FILES).json()
    assert [r["status"] for r in again["items"]] == ["duplicate", "duplicate"]
    created = {r["item_id"]: r["work_id"] for r in body["items"] if r["status"] == "created"}
    assert {r["item_id"]: r["work_id"] for r in again["items"]} == created
    assert client.get("/sources?with_count=true").json()["count"] == 2
    assert len(embed_queue().job_ids) == 2
    # Each created work is in the audit log once, naming its bulk item; the rerun added nothing.
    audited = client.get("/audit", params={"action": "work.register"}).json()["data"]
    assert sorted((e["target"], e["detail"]["bulk_item_id"]) for e in audited) == sorted(
        (work_id, item_id) for item_id, work_id in created.items())


def test_same_images_under_another_item_id_are_a_duplicate(client):
    created = post_bulk(client, GOOD[:1], GOOD_FILES[:2]).json()["items"][0]
    renamed = {**GOOD[0], "item_id": "dog-renamed"}
    again = post_bulk(client, [renamed], GOOD_FILES[:2]).json()["items"][0]
    assert again == {"item_id": "dog-renamed", "status": "duplicate", "work_id": created["work_id"]}
    partly = {**GOOD[0], "item_id": "mixed", "files": ["dog-0.jpg", "cat-0.jpg"]}
    mixed = post_bulk(client, [partly], [GOOD_FILES[0], GOOD_FILES[2]]).json()["items"][0]
    assert mixed["status"] == "refused" and mixed["reason"] == "duplicate_images"


def test_a_deleted_work_can_be_imported_again(client):
    first = post_bulk(client, GOOD[:1], GOOD_FILES[:2]).json()["items"][0]
    assert client.delete(f"/sources/{first['work_id']}").status_code == 204
    second = post_bulk(client, GOOD[:1], GOOD_FILES[:2]).json()["items"][0]
    assert second["status"] == "created" and second["work_id"] != first["work_id"]


def test_registrar_imports_for_its_own_rights_holder_only(anonymous_client, make_key):
    registrar = auth(make_key("registrar", rights_holder="studio"))
    items = [{"item_id": "a", "title": "A", "files": ["dog-0.jpg"]},
             {"item_id": "b", "title": "B", "rights_holder": "other", "files": ["cat-0.jpg"]}]
    body = post_bulk(anonymous_client, items, [GOOD_FILES[0], GOOD_FILES[2]], headers=registrar).json()
    assert [(r["status"], r.get("reason")) for r in body["items"]] == [("created", None), ("refused", "forbidden")]
    attributor = auth(make_key("attributor"))
    assert post_bulk(anonymous_client, items, GOOD_FILES, headers=attributor).status_code == 403


def test_request_limits_are_clear_problems(client, monkeypatch):
    monkeypatch.setenv("ATTRIB_BULK_MAX_ITEMS", "1")
    monkeypatch.setenv("ATTRIB_BULK_MAX_FILES", "2")
    clear_cached_config()
    too_many_items = post_bulk(client, GOOD, GOOD_FILES[:1])
    assert too_many_items.status_code == 413 and too_many_items.json()["reason"] == "too_many_items"
    too_many_files = post_bulk(client, GOOD[:1], GOOD_FILES)
    assert too_many_files.status_code == 413 and too_many_files.json()["reason"] == "too_many_files"
    not_json = client.post("/sources/bulk", data={"manifest": "{items"}, files=[("files", GOOD_FILES[0])])
    assert not_json.status_code == 422 and not_json.json()["reason"] == "invalid_manifest"
    no_manifest = client.post("/sources/bulk", files=[("files", GOOD_FILES[0])])
    assert no_manifest.status_code == 422 and no_manifest.headers["content-type"] == "application/problem+json"
    twice = post_bulk(client, GOOD[:1], [GOOD_FILES[0], GOOD_FILES[0]])
    assert twice.status_code == 422 and twice.json()["reason"] == "duplicate_filename"
    assert client.get("/sources?with_count=true").json()["count"] == 0


def test_an_oversized_image_refuses_only_its_item(client, monkeypatch):
    monkeypatch.setenv("ATTRIB_MAX_UPLOAD_BYTES", str(len(photo_bytes("cat", 0)) + 10))
    clear_cached_config()
    items = [{"item_id": "big", "title": "Big", "rights_holder": "s", "files": ["big.jpg"]},
             {"item_id": "tiny", "title": "Tiny", "rights_holder": "s", "files": ["tiny.png"]},
             {"item_id": "cat", "title": "Cat", "rights_holder": "s", "files": ["cat-0.jpg"]}]
    files = [("big.jpg", photo_bytes("cat", 0) + b"\0" * 4096, "image/jpeg"), ("tiny.png", tiny_png(), "image/png"),
             GOOD_FILES[2]]
    body = post_bulk(client, items, files).json()
    assert [(r["status"], r.get("reason")) for r in body["items"]] == [
        ("refused", "too_large"), ("refused", "too_small"), ("created", None)]


def test_images_over_the_decode_budget_refuse_only_their_items(client, monkeypatch):
    """One child checks a request's images in turn (common.images.ImageChecker). An image that stops it
    (CPU, memory) is refused `too_costly` and the images after it are checked in a new child: the other
    items are answered as if each had come alone."""
    monkeypatch.setenv("ATTRIB_IMAGE_DECODE_CPU_S", "1")
    monkeypatch.setenv("ATTRIB_IMAGE_DECODE_MEMORY_BYTES", str(128 * 1024 ** 2))
    monkeypatch.setenv("ATTRIB_MAX_JPEG_SCANS", str(10 ** 6))  # so the scans are decoded, not counted
    clear_cached_config()
    slow = progressive_jpeg_with_scans(400, size=(4096, 4096), flat=True)  # seconds of CPU to decode
    wide = encode(Image.new("RGB", (6000, 6000), (1, 2, 3)), "PNG")  # 120 KB; 108 MB once decoded
    items = [{"item_id": i, "title": i, "rights_holder": "s", "files": files} for i, files in [
        ("dog", ["dog-0.jpg"]), ("slow", ["slow.jpg"]), ("cat", ["cat-0.jpg"]), ("wide", ["wide.png"]),
        ("bomb", ["bomb.png"]), ("mixed", ["dog-1.jpg", "slow.jpg"]), ("dog-again", ["dog-1.jpg"])]]
    files = [jpeg("dog", 0), jpeg("dog", 1), jpeg("cat", 0), ("slow.jpg", slow, "image/jpeg"),
             ("wide.png", wide, "image/png"), ("bomb.png", huge_png(), "image/png")]
    body = post_bulk(client, items, files).json()
    assert [(r["item_id"], r["status"], r.get("reason")) for r in body["items"]] == [
        ("dog", "created", None), ("slow", "refused", "too_costly"), ("cat", "created", None),
        ("wide", "refused", "too_costly"), ("bomb", "refused", "too_many_pixels"),
        ("mixed", "refused", "too_costly"), ("dog-again", "created", None)]
    assert body["items"][1]["detail"].startswith("slow.jpg: decoding this image needs more CPU time or memory")
    assert client.get("/sources?with_count=true").json()["count"] == 3


def test_a_full_embedding_queue_answers_503(client, monkeypatch):
    monkeypatch.setenv("ATTRIB_MAX_QUEUED_EMBED_JOBS", "1")
    clear_cached_config()
    assert post_bulk(client, GOOD[:1], GOOD_FILES[:2]).status_code == 200
    full = post_bulk(client, GOOD[1:], GOOD_FILES[2:])
    assert full.status_code == 503 and full.json()["reason"] == "queue_full"
    assert int(full.headers["retry-after"]) > 0
    assert client.get("/sources?with_count=true").json()["count"] == 1


def test_the_manifest_may_be_a_file_part(client):
    manifest = ("manifest.json", json.dumps({"items": GOOD[1:]}).encode(), "application/json")
    response = client.post("/sources/bulk", files=[("manifest", manifest), ("files", GOOD_FILES[2])])
    assert response.status_code == 200 and response.json()["summary"]["created"] == 1


@pytest.mark.parametrize("service_env", ["sqlite", "postgresql"], indirect=True)
def test_external_ref_unique_per_rights_holder_holds_for_bulk_too(client, monkeypatch):
    """ATTRIB_UNIQUE_EXTERNAL_REF, the single path's rule: a re-run keyed by external_ref (other item ids,
    re-encoded images) reports each item duplicate with the work holding the reference, not a new work."""
    monkeypatch.setenv("ATTRIB_UNIQUE_EXTERNAL_REF", "true")
    clear_cached_config()
    items = [{**GOOD[0], "external_ref": "CAT-1"}, {**GOOD[1], "external_ref": "CAT-2"}]
    first = post_bulk(client, items, GOOD_FILES).json()
    assert first["summary"] == {"created": 2, "duplicate": 0, "refused": 0}
    work_of = {r["item_id"]: r["work_id"] for r in first["items"]}
    rerun = [{**items[0], "item_id": "row-1", "files": ["dog-2.jpg"]}, {**items[1], "item_id": "row-2"},
             {"item_id": "row-3", "title": "Teapot", "rights_holder": "studio", "external_ref": "CAT-1",
              "files": ["teapot-0.jpg"]}]
    again = post_bulk(client, rerun, [jpeg("dog", 2), GOOD_FILES[2], jpeg("teapot", 0)]).json()
    assert again["summary"] == {"created": 0, "duplicate": 3, "refused": 0}
    assert [(r["work_id"], r.get("reason")) for r in again["items"]] == [
        (work_of["dog"], "external_ref"), (work_of["cat"], None), (work_of["dog"], "external_ref")]
    assert client.get("/sources?with_count=true").json()["count"] == 2
    # Another rights holder's reference is its own; and the single path says the same (409 naming the work).
    other = post_bulk(client, [{**rerun[2], "rights_holder": "other"}], [jpeg("teapot", 0)]).json()
    assert other["items"][0]["status"] == "created"
    clash = client.post("/v1/sources", data={"title": "t", "rights_holder": "studio", "external_ref": "CAT-2"},
                        files=[("images", jpeg("vase", 0))])
    assert clash.status_code == 409 and clash.json()["work_id"] == work_of["cat"]


def test_external_refs_may_repeat_in_bulk_by_default(client):
    items = [{**GOOD[0], "external_ref": "SAME"}, {**GOOD[1], "external_ref": "SAME"}]
    assert post_bulk(client, items, GOOD_FILES).json()["summary"]["created"] == 2


def test_an_import_is_read_by_its_own_tenant_only(anonymous_client, make_key):
    studio, other = auth(make_key("registrar", rights_holder="studio")), auth(make_key("registrar", "other"))
    items = [{"item_id": "a", "title": "A", "files": ["dog-0.jpg"]}]
    report = post_bulk(anonymous_client, items, [GOOD_FILES[0]], headers=studio).json()
    url = f"/v1/sources/bulk/{report['import_id']}"
    assert report["status_url"].endswith(url)
    shown = anonymous_client.get(url, headers=studio).json()
    assert (shown["status"], shown["items"], shown["images"]) == (
        "embedding", {"created": 1, "duplicate": 0, "refused": 0},
        {"total": 1, "pending": 1, "embedded": 0, "failed": 0, "deleted": 0})
    assert shown["deliveries"] is None  # no callback_url
    missing = anonymous_client.get(url, headers=other)
    assert missing.status_code == 404 and missing.json()["title"] == "Unknown import"
    assert anonymous_client.get(url, headers=auth(make_key("admin"))).status_code == 200
    assert anonymous_client.get(url, headers=auth(make_key("attributor"))).status_code == 403
    # Deleting the work leaves nothing pending (the recovery pass then finishes it: tests/common/test_imports.py).
    anonymous_client.delete(f"/v1/sources/{report['items'][0]['work_id']}", headers=studio)
    assert anonymous_client.get(url, headers=studio).json()["images"]["deleted"] == 1


def test_an_import_with_nothing_to_embed_finishes_at_once(client, monkeypatch):
    """A re-run (all duplicates) has no image to wait for: it finishes in the request, its webhook row
    committed with it (sent by any worker's deliverer; none runs here)."""
    monkeypatch.setenv("ATTRIB_SECRET_KEY", "bulk-" + "k" * 40)
    monkeypatch.setenv("ATTRIB_WEBHOOK_ALLOW_HOSTS", "127.0.0.1")
    clear_cached_config()
    post_bulk(client, GOOD, GOOD_FILES)
    manifest = {"items": GOOD, "callback_url": "http://127.0.0.1:9/hooks"}
    rerun = client.post("/v1/sources/bulk", data={"manifest": json.dumps(manifest)},
                        files=[("files", f) for f in GOOD_FILES]).json()
    shown = client.get(f"/v1/sources/bulk/{rerun['import_id']}").json()
    assert shown["status"] == "finished" and shown["items"]["duplicate"] == 2 and shown["images"]["total"] == 0
    assert [(d["event"], d["status"], d["attempts"]) for d in shown["deliveries"]] == [
        ("registration.finished", "pending", 0)]

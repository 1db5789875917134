"""Bulk registration's database work per item, counted in SQL statements (deterministic, unlike time):
a catalogue import of 100k works must not pay a handful of round trips per work for what one query per
request can answer, and a re-sent manifest (resuming after a crash) must cost next to nothing per item."""
import contextlib
import json

import pytest
from PIL import Image
from sqlalchemy import event

from common.db.session import get_engine
from tests.factories import encode


@contextlib.contextmanager
def counted_statements():
    seen: list[str] = []

    def count(conn, cursor, statement, *args):
        seen.append(statement.split(None, 1)[0].upper())

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def bulk(client, first: int, n: int):
    items = [{"item_id": f"item-{i}", "title": f"Work {i}", "rights_holder": "studio", "files": [f"{i}.png"]}
             for i in range(first, first + n)]
    files = [("files", (f"{i}.png", encode(Image.new("RGB", (40, 30), (i, 255 - i, 7)), "PNG"), "image/png"))
             for i in range(first, first + n)]
    with counted_statements() as seen:
        response = client.post("/sources/bulk", data={"manifest": json.dumps({"items": items})}, files=files)
    assert response.status_code == 200, response.text
    return response.json()["summary"], seen


@pytest.mark.parametrize("service_env", ["sqlite", "postgresql"], indirect=True)
def test_statements_per_item_created_and_re_sent(client):
    small, small_seen = bulk(client, 0, 4)
    large, large_seen = bulk(client, 100, 12)
    assert small["created"] == 4 and large["created"] == 12
    per_created = (len(large_seen) - len(small_seen)) / 8
    _, small_again = bulk(client, 0, 4)
    large_again_summary, large_again = bulk(client, 100, 12)
    assert large_again_summary == {"created": 0, "duplicate": 12, "refused": 0}
    per_duplicate = (len(large_again) - len(small_again)) / 8
    print(f"statements per created item {per_created}, per re-sent item {per_duplicate}")
    assert per_created <= 4, large_seen
    assert per_duplicate == 0, large_again


@pytest.mark.parametrize("service_env", ["sqlite", "postgresql"], indirect=True)
def test_an_item_registered_after_the_manifest_check_is_still_answered_duplicate(service_env, tmp_path):
    """Rule 2 is applied to the whole manifest before any item; a concurrent request that registers the
    same item (other images) in between loses nothing: the unique index refuses the second work, and
    the item is answered with the winner's work."""
    from common.db.models import Scope
    from common.db.session import new_session
    from common.images import ImageChecker, ImageLimits
    from common.registration import Metadata, Registrant, register
    from common.storage import LocalStorage

    registrant, storage = Registrant(Scope.admin, None), LocalStorage(tmp_path / "files")
    with ImageChecker(ImageLimits()) as checker, new_session() as session:
        def images(shade: int):
            image = checker.check(encode(Image.new("RGB", (40, 30), (shade, 9, 9)), "PNG"))
            return {image.sha256: image}

        meta = Metadata("Work", import_item_id="item-1")
        winner = register(session, storage, registrant, "studio", images(1), meta, unique_external_ref=False)
        late = register(session, storage, registrant, "studio", images(2), meta, unique_external_ref=False,
                        import_item_checked=True)
    assert winner.created and not late.created
    assert (late.work_id, late.why) == (winner.work_id, "import_item")


@pytest.mark.parametrize("service_env", ["sqlite", "postgresql"], indirect=True)
def test_rule_2_still_answers_first_when_the_late_registration_shares_images(service_env, tmp_path):
    """The same race, but the winner holds one of the item's images: the item is the winner's work
    (rule 2), not refused for images held elsewhere (rule 3)."""
    from common.db.models import Scope
    from common.db.session import new_session
    from common.images import ImageChecker, ImageLimits
    from common.registration import Metadata, Registrant, register
    from common.storage import LocalStorage

    registrant, storage = Registrant(Scope.admin, None), LocalStorage(tmp_path / "files")
    with ImageChecker(ImageLimits()) as checker, new_session() as session:
        a, b = (checker.check(encode(Image.new("RGB", (40, 30), (shade, 9, 9)), "PNG")) for shade in (1, 2))
        meta = Metadata("Work", import_item_id="item-1")
        winner = register(session, storage, registrant, "studio", {a.sha256: a}, meta, unique_external_ref=False)
        late = register(session, storage, registrant, "studio", {a.sha256: a, b.sha256: b}, meta,
                        unique_external_ref=False, import_item_checked=True)
    assert (late.work_id, late.created, late.why) == (winner.work_id, False, "import_item")

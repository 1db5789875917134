"""The API checks uploads in reused decoder children (common.image_pool, app/uploads.py): one child
answers upload after upload, a child stopped by a limit is never kept, at most decode_concurrency
children exist per process, a forked process forgets its parent's children, and the app's shutdown ends
them. The answers themselves are check_image's (tests/app/test_hostile_images.py runs the corpus)."""
import json
import os
import threading
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from app.uploads import CHECKERS
from common.image_pool import CheckerPool
from common.images import ImageLimits, check_image
from tests.conftest import auth, clear_cached_config
from tests.factories import encode, photo_bytes

LIMITS = ImageLimits()


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_api_uploads_are_checked_by_one_reused_child_which_a_limit_replaces(service_env, make_key, monkeypatch):
    monkeypatch.setenv("ATTRIB_IMAGE_DECODE_MEMORY_BYTES", str(128 * 1024 ** 2))
    clear_cached_config()
    wide = encode(Image.new("RGB", (6000, 6000), (1, 2, 3)), "PNG")  # 120 KB; 108 MB once decoded
    from app.main import create_app
    with TestClient(create_app()) as client:
        client.headers.update(auth(make_key("admin")))
        assert CHECKERS.pids() == []  # nothing starts before the first upload
        seen = []
        for i in range(4):
            response = client.post("/attribute", files={"image": (f"q{i}.jpg", photo_bytes("dog", i))})
            assert response.status_code == 202, response.text
            seen.append(CHECKERS.pids())
        files = [("images", (f"cat{i}.jpg", photo_bytes("cat", i), "image/jpeg")) for i in range(2)]
        assert client.post("/sources", files=files, data={"title": "cat", "rights_holder": "s"}).status_code == 201
        seen.append(CHECKERS.pids())
        first = seen[0][0]
        assert seen == [[first]] * 5 and first != os.getpid() and alive(first)

        costly = client.post("/attribute", files={"image": ("wide.png", wide)})
        assert costly.status_code == 413 and costly.json()["reason"] == "too_costly"
        assert CHECKERS.pids() == [] and not alive(first)  # never kept after its limit
        after = client.post("/attribute", files={"image": ("q.jpg", photo_bytes("teapot", 0))})
        assert after.status_code == 202, after.text
        [second] = CHECKERS.pids()
        assert second != first and alive(second)
    assert CHECKERS.pids() == [] and not alive(second)  # the app's shutdown ended it


def test_a_child_is_replaced_after_its_maximum_number_of_checks(service_env, client, monkeypatch):
    monkeypatch.setenv("ATTRIB_IMAGE_DECODE_CHILD_MAX_CHECKS", "2")
    clear_cached_config()
    seen = []
    for i in range(5):
        assert client.post("/attribute", files={"image": ("q.jpg", photo_bytes("dog", i))}).status_code == 202
        seen.append(CHECKERS.pids())
    assert seen[1] == seen[3] == [] and seen[0] == [seen[0][0]]
    assert len({seen[0][0], seen[2][0], seen[4][0]}) == 3


def test_at_most_decode_concurrency_children_and_further_checks_wait_for_one():
    limits, data = ImageLimits(decode_concurrency=2), photo_bytes("dog", 0)
    expected, pool, later = check_image(data, limits), CheckerPool(), []

    def check_later() -> None:
        with pool.lend(limits) as checker:
            later.append((checker.check(data), checker.pid))

    try:
        with pool.lend(limits) as first, pool.lend(limits) as second:
            assert first.check(data) == second.check(data) == expected
            third = threading.Thread(target=check_later)
            third.start()
            third.join(0.5)
            assert third.is_alive() and not later  # both checkers are lent: it waits, it starts none
        third.join()
        pids = pool.pids()
        assert len(set(pids)) == 2 and {first.pid, second.pid} == set(pids)
        assert later[0][0] == expected and later[0][1] in pids  # the third check reused a child
    finally:
        pool.close()
    assert pool.pids() == [] and not any(alive(pid) for pid in pids)


def test_concurrent_checks_answer_like_check_image():
    limits = ImageLimits(decode_concurrency=2)
    images = [photo_bytes(subject, i) for subject in ("dog", "cat") for i in range(3)]
    expected = [check_image(data, limits) for data in images]
    pool, answers, errors = CheckerPool(), {}, []

    def check_all(thread: int) -> None:
        try:
            answers[thread] = [pool.check(data, limits) for data in images]
        except Exception as exc:  # reported below: an exception in a thread would pass silently
            errors.append(exc)

    threads = [threading.Thread(target=check_all, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors and answers == {t: expected for t in range(6)}
        assert 1 <= len(pool.pids()) <= 2
    finally:
        pool.close()


def test_checkers_with_other_limits_replace_the_idle_child():
    pool = CheckerPool()
    try:
        pool.check(photo_bytes("dog", 0), LIMITS)
        [old] = pool.pids()
        pool.check(photo_bytes("dog", 0), ImageLimits(decode_cpu_s=5))
        [new] = pool.pids()
        assert new != old and not alive(old)
    finally:
        pool.close()


def test_a_forked_process_forgets_its_parents_children():
    pool = CheckerPool()
    try:
        pool.check(photo_bytes("dog", 0), LIMITS)
        [parent_child] = pool.pids()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the forked process: report what its pool holds, then leave at once
            try:
                os.write(write, json.dumps(pool.pids()).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as reader:
            seen_by_fork = json.loads(reader.read())
        os.waitpid(pid, 0)
        assert seen_by_fork == [] and pool.pids() == [parent_child] and alive(parent_child)
    finally:
        pool.close()

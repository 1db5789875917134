"""Reused decoder children for single uploads (common.image_pool): at most decode_concurrency children
exist per process, a forked process forgets its parent's children, and close() ends them. The answers
themselves are check_image's (tests/app/test_hostile_images.py runs the corpus)."""
import json
import os
import threading
from pathlib import Path

from common.image_pool import CheckerPool
from common.images import ImageLimits, check_image
from tests.factories import photo_bytes

LIMITS = ImageLimits()


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


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

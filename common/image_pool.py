"""A process's reusable image checkers, for callers that check one upload at a time from many threads
(the API: POST /attribute, POST /sources, each request in FastAPI's thread pool).

A fresh sandboxed child per image (`check_image`) costs ~11 ms of CPU, and ~60 ms when the process's
main script is uvicorn's (CPython 3.11's forkserver re-runs it in every child), against <1 ms to
decode a typical photo. The pool keeps at most `decode_concurrency` ImageCheckers, each with one child
that checks many uploads in turn; a check takes one and gives it back. Every answer is still
`check_image`'s (ImageChecker runs again alone what the shared child cannot finish), at most
`decode_concurrency` decodes run at once (common.sandbox's semaphore) and, with at most that many
children, their memory stays within `decode_concurrency x decode_memory_bytes`. A child is replaced
after `decode_child_max_checks` checks and never kept after a limit stopped it (ImageChecker says why).

Children start lazily, in the process that checks: nothing runs before the first upload, a pool
inherited through fork() forgets its parent's children (they are not this process's to end), and
`close()` (at the app's shutdown) ends them."""
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from common.images import CheckedImage, ImageChecker, ImageLimits

_POOLS: "weakref.WeakSet[CheckerPool]" = weakref.WeakSet()


class CheckerPool:
    """`check_image(data, limits)` with reused children; safe to call from any number of threads.
    Threads beyond `limits.decode_concurrency` wait for a checker, as they would for a decode slot."""

    def __init__(self):
        self._reset()
        _POOLS.add(self)

    def _reset(self) -> None:
        self._ready = threading.Condition()
        self._idle: list[ImageChecker] = []  # most recently used last: a warm child is taken first
        self._count = 0                      # checkers in this pool: idle + lent out
        self._generation = 0                 # close() ends the checkers of earlier generations
        self._born: dict[int, int] = {}      # id(checker) -> its generation

    def check(self, data: bytes, limits: ImageLimits) -> CheckedImage:
        with self.lend(limits) as checker:
            return checker.check(data)

    @contextmanager
    def lend(self, limits: ImageLimits) -> Iterator[ImageChecker]:
        """A checker for this thread alone until the block ends; waits while all are lent out."""
        checker = self._take(limits)
        try:
            yield checker
        finally:
            self._give_back(checker, limits)

    def pids(self) -> list[int]:
        """Process ids of the idle checkers' children (tests: which child checked, and that it ended)."""
        with self._ready:
            return [checker.pid for checker in self._idle if checker.pid is not None]

    def close(self) -> None:
        """End every idle child now and each lent one when it comes back; the pool stays usable (the next
        check starts a child again), so a process that serves again after a shutdown still works."""
        with self._ready:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._generation += 1
            for checker in idle:
                del self._born[id(checker)]
            self._ready.notify_all()
        for checker in idle:
            checker.close()

    def _take(self, limits: ImageLimits) -> ImageChecker:
        stale = None
        with self._ready:
            while not self._idle and self._count >= limits.decode_concurrency:
                self._ready.wait()
            if self._idle:
                checker = self._idle.pop()
                if checker.limits == limits:
                    return checker
                stale = checker  # the settings changed: its slot gets a checker with today's limits
                del self._born[id(checker)]
            else:
                self._count += 1
            checker = ImageChecker(limits)  # its child starts on the first check, in this thread
            self._born[id(checker)] = self._generation
        if stale is not None:
            stale.close()
        return checker

    def _give_back(self, checker: ImageChecker, limits: ImageLimits) -> None:
        with self._ready:
            keep = (self._born.get(id(checker)) == self._generation and checker.limits == limits
                    and self._count <= limits.decode_concurrency)
            if keep:
                self._idle.append(checker)
            else:
                self._born.pop(id(checker), None)
                self._count -= 1
            self._ready.notify()
        if not keep:
            checker.close()

    def _forget_after_fork(self) -> None:
        # The children belong to the parent (ending them from here would kill its checks) and the
        # lock may have been held by a parent thread that does not exist here: start empty.
        self._reset()


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

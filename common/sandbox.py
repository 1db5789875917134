"""Run one untrusted computation (decoding an uploaded image) in a throw-away child process with
limits on CPU time (RLIMIT_CPU), address space (RLIMIT_AS) and wall time, so a file that is
expensive to decode costs a bounded amount and can never take the API or a worker down with it.

Children come from a forkserver that has already imported Pillow (a fork of a small, single-threaded
process: milliseconds, and safe while the parent runs threads). One child per call: a child killed
for its limit takes nobody else's work with it. A semaphore bounds how many run at once, so the
memory the checks can use is at most `concurrency x memory_bytes`.

Starting a child costs ~11 ms of CPU (~60 ms under the `uvicorn` console script, whose main module each
child imports again, see below), more than decoding a typical photo (<1 ms): callers with many inputs
(a bulk import, the API's pool in common.image_pool) use `LimitedChild`, one child that runs the calls one after another,
each with its own budget, and falls back to `run_limited` for any call that child cannot finish."""
import multiprocessing
import resource
import threading
from collections.abc import Callable

_CONTEXT = multiprocessing.get_context("forkserver")
# "__main__" was meant to make the server import the main script once so that children need not, but on
# CPython 3.11 the forkserver never receives the main path (it filters for 'main_path', the data says
# 'init_main_from_path'), so each fresh child still imports the main module: reused children
# (LimitedChild) are what keeps that cost off every upload.
_CONTEXT.set_forkserver_preload(["__main__", "common.images"])
_slots: threading.BoundedSemaphore | None = None
_slots_size = 0
_slots_lock = threading.Lock()


class LimitExceeded(Exception):
    """The child ran out of CPU time, memory or wall time (or died): the input is too costly."""


def run_limited(fn: Callable, *args, cpu_s: int, memory_bytes: int, wall_s: float, concurrency: int = 4):
    """fn(*args) in a child process; its return value, or LimitExceeded. fn must be importable
    (module level) and return something picklable; it should catch its own expected errors."""
    with _semaphore(concurrency):
        receiver, sender = _CONTEXT.Pipe(duplex=False)
        child = _CONTEXT.Process(target=_run_child, args=(sender, fn, args, cpu_s, memory_bytes), daemon=True)
        child.start()
        sender.close()
        try:
            if not receiver.poll(wall_s):
                raise LimitExceeded(f"no answer within {wall_s:g} s")
            ok, value = receiver.recv()
        except EOFError as exc:  # killed by SIGXCPU / SIGKILL before it answered
            raise LimitExceeded("the decoder process was stopped by its limits") from exc
        finally:
            if child.is_alive():
                child.kill()
            child.join()
            receiver.close()
    if not ok:
        raise LimitExceeded(value)
    return value


class LimitedChild:
    """`run_limited(fn, *args)` for many calls in turn, in one child that stays between calls.

    Each call gets its own budget: before it, the child sets its CPU limit to the CPU it has used so far
    plus `cpu_s` (whole seconds, rounded so the budget is never above a fresh child's), and the parent
    waits `wall_s` for its answer; the memory limit is the child's. So a call can only meet a tighter
    budget here than alone (what earlier calls left on the heap). When the child is stopped by a limit
    (or raises MemoryError), the call is run again alone with `run_limited`: its answer, a value or
    LimitExceeded, is exactly the one-call-one-child answer, at the cost of running a costly input twice;
    the next call starts a new child. Use from one thread; `close()` (or `with`) ends the child.
    A slot of the same semaphore is held per call, not for the child's life, so an idle child (holding
    no decoded pixels) never delays another upload's check.

    `max_calls` bounds the reuse: a child that has answered that many calls is ended, and the next call
    starts a new one. A child kept for long across many inputs (other tenants' uploads, in the API) would
    let one input that subverted the decoder watch or tamper with the answers for all those after it; with
    the bound, such a child lives for at most `max_calls` calls (and is never kept after a limit)."""

    def __init__(self, fn: Callable, *, cpu_s: int, memory_bytes: int, wall_s: float, concurrency: int = 4,
                 max_calls: int | None = None):
        if max_calls is not None and max_calls < 1:
            raise ValueError("max_calls must be at least 1")
        self.fn, self.cpu_s, self.memory_bytes, self.wall_s = fn, cpu_s, memory_bytes, wall_s
        self.concurrency, self.max_calls = concurrency, max_calls
        self._child = self._conn = None
        self._calls = 0  # answered by the current child

    def __call__(self, *args):
        with _semaphore(self.concurrency):
            try:
                ok, value = self._ask(args)
            except LimitExceeded:
                ok, value = False, None
            if ok:
                self._calls += 1
                if self.max_calls is not None and self._calls >= self.max_calls:
                    self.close()
                return value
            self.close()  # whatever the child holds now, the next call starts clean
        return run_limited(self.fn, *args, cpu_s=self.cpu_s, memory_bytes=self.memory_bytes, wall_s=self.wall_s,
                           concurrency=self.concurrency)

    def _ask(self, args: tuple) -> tuple[bool, object]:
        if self._child is None:
            self._conn, theirs = _CONTEXT.Pipe(duplex=True)
            self._child = _CONTEXT.Process(target=_serve_child, args=(theirs, self.fn, self.cpu_s, self.memory_bytes),
                                           daemon=True)
            self._child.start()
            theirs.close()
        try:
            self._conn.send(args)
            if not self._conn.poll(self.wall_s):
                raise LimitExceeded(f"no answer within {self.wall_s:g} s")
            return self._conn.recv()
        except (EOFError, OSError) as exc:  # killed by SIGXCPU / SIGKILL before it answered
            raise LimitExceeded("the decoder process was stopped by its limits") from exc

    @property
    def pid(self) -> int | None:
        """The current child's process id (None when none runs): which child answered, for tests."""
        return self._child.pid if self._child is not None else None

    def close(self) -> None:
        if self._child is not None:
            self._conn.close()  # the child's recv() ends, so it exits on its own
            self._child.kill()
            self._child.join()
            self._child = self._conn = None
        self._calls = 0

    def __enter__(self) -> "LimitedChild":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _semaphore(concurrency: int) -> threading.BoundedSemaphore:
    global _slots, _slots_size
    with _slots_lock:
        if _slots is None or _slots_size != concurrency:
            _slots, _slots_size = threading.BoundedSemaphore(concurrency), concurrency
        return _slots


def _run_child(sender, fn: Callable, args: tuple, cpu_s: int, memory_bytes: int) -> None:
    # A fresh process: its CPU clock starts at zero, so the limit is this call's own budget.
    # SIGXCPU (soft limit) kills by default; the hard limit one second later is the backstop.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        result = (True, fn(*args))
    except MemoryError:
        result = (False, "the decoder ran out of its memory budget")
    sender.send(result)
    sender.close()


def _serve_child(conn, fn: Callable, cpu_s: int, memory_bytes: int) -> None:
    """LimitedChild's loop: one answer per call, until the parent closes its end. No hard CPU limit
    (it could never be raised again for the next call): SIGXCPU kills, and the parent's wall-time limit
    is the backstop."""
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    while True:
        try:
            args = conn.recv()
        except EOFError:
            return
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = int(usage.ru_utime + usage.ru_stime) + cpu_s
        resource.setrlimit(resource.RLIMIT_CPU, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
        try:
            result = (True, fn(*args))
        except MemoryError:
            result = (False, "the decoder ran out of its memory budget")
        conn.send(result)
        del args, result  # an idle child holds no upload's bytes

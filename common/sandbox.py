"""Run one untrusted computation (decoding an uploaded image) in a throw-away child process with
limits on CPU time (RLIMIT_CPU), address space (RLIMIT_AS) and wall time, so a file that is
expensive to decode costs a bounded amount and can never take the API or a worker down with it.

Children come from a forkserver that has already imported Pillow (a fork of a small, single-threaded
process: milliseconds, and safe while the parent runs threads). One child per call: a child killed
for its limit takes nobody else's work with it. A semaphore bounds how many run at once, so the
memory the checks can use is at most `concurrency x memory_bytes`."""
import multiprocessing
import resource
import threading
from collections.abc import Callable

_CONTEXT = multiprocessing.get_context("forkserver")
# "__main__" first: the server imports the main script once (e.g. uvicorn's launcher), so a child
# does not import it again on every call (multiprocessing's children re-run the main module's imports).
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

"""Background work at a lower CPU priority than the jobs beside it, in the same process.

A worker's snapshot thread rebuilds its base (training and encoding: minutes at 1M, over an hour at
10M) with FAISS's OpenMP threads on every core, while the job thread answers attributions. Linux
gives each thread its own nice value and a new thread inherits its creator's, so a fresh thread that
raises its own niceness before calling FAISS also lowers the OpenMP team it starts (FAISS's OpenBLAS
is the OpenMP build, so its BLAS runs in that team too). The thread ends with the work, so nothing
else in the process runs lowered. Elsewhere (no per-thread priority) the work just runs."""
import logging
import os
import threading
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


def run_niced(work: Callable[[], T], niceness: int, name: str = "niced") -> T:
    """`work()` in a new thread whose niceness is raised by `niceness` (0: as is); its result or error."""
    outcome: dict = {}

    def target() -> None:
        if niceness > 0:
            lower_this_thread(niceness)
        try:
            outcome["value"] = work()
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def lower_this_thread(niceness: int) -> int | None:
    """Raise the calling thread's niceness by `niceness`; returns the new value (None: not supported)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
        return os.getpriority(os.PRIO_PROCESS, tid)
    except (AttributeError, OSError) as exc:
        log.warning("could not lower this thread's CPU priority: %s", exc)
        return None

"""Work at a lower CPU priority than the rest of the process: the decode threads of an import
(core/pipeline.py) and a worker's background rebuild of its index (indexing/live.py).

Linux gives each thread its own nice value, and a new thread inherits its creator's. A worker's
snapshot thread rebuilds its base (training and encoding: minutes at 1M, over an hour at 10M) with
FAISS's OpenMP threads on every core while the job thread answers attributions; a fresh thread that
raises its own niceness before calling FAISS also lowers the OpenMP team it starts (FAISS's OpenBLAS is
the OpenMP build, so its BLAS runs in that team too), and the thread ends with the work, so nothing
else in the process runs lowered. Elsewhere (no per-thread priority) nothing is lowered: the work just
runs, since lowering would slow the whole process."""
import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def lower_this_thread(by: int) -> None:
    """Lower the calling thread's CPU priority by `by` (nice; 0: as is). Only on Linux, where nice is
    per thread."""
    if by and os.path.isdir("/proc/self/task"):
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))


def run_niced(work: Callable[[], T], niceness: int, name: str = "niced") -> T:
    """`work()` in a new thread whose niceness is raised by `niceness` (0: as is); its result or error."""
    outcome: dict = {}

    def target() -> None:
        try:
            lower_this_thread(niceness)
            outcome["value"] = work()
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            outcome["error"] = exc

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]

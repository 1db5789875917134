"""A worker's rebuild runs at a lower CPU priority than its jobs: the thread doing it and the OpenMP
threads FAISS starts from it are niced, nothing else in the process is, and the work's result or
error reaches the caller."""
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from common.low_priority import run_niced
from indexing.backends.faiss import IndexParams, build_store, omp_threads


def thread_nices() -> dict[int, int]:
    """nice value of every thread of this process (field 19 of /proc/<pid>/task/<tid>/stat)."""
    nices = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that just ended
            continue
        nices[int(tid)] = int(fields[16])
    return nices


def test_the_work_and_the_openmp_threads_it_starts_are_niced():
    caller = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def work():
        with omp_threads(2):  # this thread's team: two threads even on one core
            vectors = np.random.default_rng(0).random((5000, 32), np.float32)
            build_store("enc", 32, np.arange(5000), vectors, IndexParams(ann_threshold=100, ann_codes="Flat"))
            return threading.get_native_id(), thread_nices()

    worker, during = run_niced(work, 10)
    assert during[worker] == caller + 10
    lowered = [tid for tid, nice in during.items() if nice == caller + 10]
    assert len(lowered) >= 2  # the worker and the OpenMP thread its training started
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == caller  # the caller is untouched


def test_results_and_errors_reach_the_caller():
    assert run_niced(lambda: 42, 5) == 42
    assert run_niced(lambda: "as is", 0) == "as is"

    def fails():
        raise ValueError("bad sample")
    with pytest.raises(ValueError, match="bad sample"):
        run_niced(fails, 5)

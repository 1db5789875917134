"""The RQ worker class that runs each job inside a log context naming it (job_id for attributions,
work_id for embeddings, rq_job for both), so every line a job logs can be traced to its request."""
import logging
import time

from rq import SimpleWorker

from common.logging_config import log_context

log = logging.getLogger("attrib.jobs")
_ID_ARGUMENT = {"attribute_image": "job_id", "embed_work": "work_id"}


def job_ids(job) -> dict:
    """The ids a job's log lines carry, from its dotted function name and first argument."""
    name = (job.func_name or "").rsplit(".", 1)[-1]
    ids = {"rq_job": job.id, "task": name}
    if name in _ID_ARGUMENT and job.args:
        ids[_ID_ARGUMENT[name]] = job.args[0]
    return ids


class LoggedWorker(SimpleWorker):
    def execute_job(self, job, queue):
        with log_context(**job_ids(job), worker=self.name):
            start = time.perf_counter()
            log.info("job started")
            try:
                return super().execute_job(job, queue)
            finally:
                log.info("job ended", extra={"fields": {"duration_ms": round((time.perf_counter() - start) * 1000, 1)}})

"""`?wait` without a thread per waiter: one listener per API process (a redis.asyncio pub/sub
connection, started in the app's lifespan) wakes the asyncio.Events of the requests waiting for a
job. A waiter registers before it reads the row once (a job finishing in between is not missed),
sleeps on its event, and re-reads the row when woken or at a slow safety interval (pub/sub is lossy
across a Redis restart). Waits are capped per API key and per process; over a cap the caller gets
its answer at once (202 and the status URL), exactly as with wait=0."""
import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator

from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import RedisError

from common.events import CHANNEL, parse_job_finished

log = logging.getLogger(__name__)


# How long an API process's shutdown waits for the job-events listener to end (JobEvents.stop).
STOP_WAIT_S = 5.0


class JobEvents:
    def __init__(self, redis_url: str | None, *, max_waits: int, max_waits_per_key: int, recheck_s: float):
        self.redis_url, self.recheck_s = redis_url, recheck_s
        self.max_waits, self.max_waits_per_key = max_waits, max_waits_per_key
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._per_key: Counter[str] = Counter()
        self._task: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        return sum(self._per_key.values())

    async def start(self) -> None:
        if self.redis_url and self._task is None:
            self._task = asyncio.create_task(self._listen(), name="job-events")

    async def stop(self) -> None:
        """Cancel the listener and wait for it, cancelling again while it still runs: a cancel that lands
        while redis-py connects and subscribes can be lost there (seen with redis 8.1 when an API process
        stopped right after it started: the listener went on into `listen()` and the shutdown hung for
        good). Gives up after STOP_WAIT_S rather than hold the process's shutdown."""
        task, self._task = self._task, None
        if task is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_WAIT_S
        while not task.done() and loop.time() < deadline:
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if not task.done():
            log.warning("job-events listener did not stop within %s s; leaving it", STOP_WAIT_S)
        elif not task.cancelled() and task.exception() is not None:
            log.warning("job-events listener had failed: %r", task.exception())

    async def _listen(self) -> None:
        while True:
            client = AsyncRedis.from_url(self.redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._notify(parse_job_finished(message["data"]))
            except (RedisError, OSError) as exc:  # waiters fall back to their safety re-reads meanwhile
                log.warning("job-events listener lost Redis (%s); reconnecting", exc)
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    def _notify(self, job_id: str | None) -> None:
        for event in self._events.get(job_id, ()):
            event.set()

    @contextlib.contextmanager
    def _slot(self, key_id: str) -> Iterator[bool]:
        granted = self.waiting < self.max_waits and self._per_key[key_id] < self.max_waits_per_key
        if granted:
            self._per_key[key_id] += 1
        try:
            yield granted
        finally:
            if granted:
                self._per_key[key_id] -= 1
                if not self._per_key[key_id]:
                    del self._per_key[key_id]

    async def wait_for(self, job_id: str, *, key_id: str, seconds: float, load: Callable[[], Awaitable],
                       finished: Callable[[object], bool]):
        """The job (via `load`) once `finished(job)` or after `seconds`; None if over a cap."""
        with self._slot(key_id) as granted:
            if not granted:
                return None
            event = asyncio.Event()
            self._events[job_id].add(event)
            try:
                return await self._wait(event, seconds, load, finished)
            finally:
                self._events[job_id].discard(event)
                if not self._events[job_id]:
                    del self._events[job_id]

    async def _wait(self, event: asyncio.Event, seconds: float, load, finished):
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        job = await load()
        while job is not None and not finished(job) and (left := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=min(left, self.recheck_s))
            event.clear()
            job = await load()
        return job

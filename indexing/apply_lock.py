"""One applier at a time for a vector collection that several workers share (a Milvus server URI).

Why: a sync reads a stretch of the change log, fetches the upserted vectors, writes them, then stores the new
position. Two workers doing that at once can interleave so that an upsert one of them read *before* a delete
is written *after* the other applied that delete: the vector comes back, and since both then store a position
past the delete, nobody replays it. So the whole "read the tail, apply, store the position" step runs under a
Redis lock named by the collection, and starts from the position stored in the collection (not the worker's
cached one), re-read once the lock is held.

A worker that finds the lock taken waits a little (the holder is usually applying the very rows this worker
wants to see), then serves what the collection holds. FAISS stores and milvus-lite files belong to one
process each, so they never need this."""
from redis import Redis
from redis.lock import Lock


class ApplyLock:
    def __init__(self, redis: Redis, scope: str, collection: str, *, ttl_s: float = 60.0, wait_s: float = 5.0):
        """`ttl_s` frees the lock of a worker that died while applying; the holder renews it per batch.
        `scope` (the queue name) keeps stacks that share one Redis apart."""
        self.key, self.wait_s = f"attrib:vector-apply:{scope}:{collection}", wait_s
        # thread_local=False: the token must be valid for renewals from whichever thread syncs.
        self._lock = Lock(redis, self.key, timeout=ttl_s, thread_local=False)

    def acquire(self, wait_s: float | None = None) -> bool:
        wait = self.wait_s if wait_s is None else wait_s
        return bool(self._lock.acquire(blocking=wait > 0, blocking_timeout=wait if wait > 0 else None))

    def renew(self) -> None:
        """Called between batches of a long replay (a fresh collection filled from the whole log)."""
        self._lock.reacquire()

    def release(self) -> None:
        if self._lock.owned():
            self._lock.release()

    def __enter__(self) -> "ApplyLock":
        if not self.acquire():
            raise TimeoutError(f"{self.key} is held by another applier")
        return self

    def __exit__(self, *exc) -> None:
        self.release()

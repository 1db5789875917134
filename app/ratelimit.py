"""Rate limits in Redis, per key (or per client address for requests without a valid key): a
fixed-window counter shared by every API process."""
import time

from redis import Redis

from app.problems import Problem


def enforce_rate_limit(redis: Redis, key_id: str, limit: int, window_s: int, who: str = "key",
                       also_get: str | None = None):
    """Count this request; with `also_get`, that key's value is read in the same round trip and returned."""
    now = time.time()
    window = int(now // window_s)
    counter = f"attrib:rate:{key_id}:{window}"
    pipe = redis.pipeline()
    pipe.incr(counter)
    pipe.expire(counter, window_s + 1)
    if also_get:
        pipe.get(also_get)
    count, _, *extra = pipe.execute()
    if count > limit:
        retry_after = max(1, int((window + 1) * window_s - now + 0.999))
        raise Problem(429, f"more than {limit} requests in {window_s} s for this {who}; retry in {retry_after} s",
                      title="Too many requests", headers={"Retry-After": str(retry_after)})
    return extra[0] if extra else None

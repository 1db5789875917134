"""One settings object for the API, the worker, the trainer and Alembic (env prefix ATTRIB_)."""
import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ATTRIB_", env_file=".env", extra="ignore")

    # Embedded defaults: SQLite + local files; production sets a PostgreSQL URL.
    database_url: str = "sqlite:///var/attrib.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "attribution"
    data_dir: Path = Path("var")

    # Encoder used when no trained (encoder, index) pair has been published:
    # "builtin:efficientnet-lite0" (packaged ImageNet weights), "open_clip:NAME:TAG",
    # or the path of an exported encoder artefact directory.
    encoder: str = "builtin:efficientnet-lite0"
    # Torch threads per process; 0 = half the cores (at least 1). Measured on this project's 2-core machine
    # while shared: 2 threads ran EfficientNet-Lite0 at 0.4-1.8 images/s, 1 thread at 4.2-5.8 (OpenMP
    # threads spin and get descheduled when the cores are oversubscribed); the other core decodes.
    torch_threads: int = Field(default=0, ge=0)
    # Images per forward pass on a CPU / on a GPU. On this CPU batch 8 was no faster than batch 1 (issue 8:
    # 0.70x; here 0.8-1.1x), and a small batch lets an embedding job yield to attributions sooner.
    embed_batch_size: int = Field(default=1, ge=1)
    gpu_embed_batch_size: int = Field(default=256, ge=1)
    # NHWC layout for the encoder (measured 1.28x on this project's CPU).
    channels_last: bool = True
    # Threads decoding and preprocessing the next batch during the forward pass (0: one per core).
    decode_workers: int = Field(default=0, ge=0)
    # On a GPU worker, decode plain JPEGs on the GPU (nvJPEG) and preprocess as tensor ops there.
    gpu_decode: bool = True
    # Images per registration embedding job: n images make ceil(n / embed_job_images) jobs.
    embed_job_images: int = Field(default=64, ge=1)

    # Bounded queues: beyond these backlogs (jobs waiting) the API answers 503 with Retry-After.
    max_queued_attributions: int = Field(default=5000, ge=1)
    max_queued_embed_jobs: int = Field(default=2000, ge=1)
    queue_full_retry_after_s: int = Field(default=30, ge=1)

    # Bulk registration (POST /sources/bulk): per request.
    bulk_max_items: int = Field(default=500, ge=1)
    bulk_max_files: int = Field(default=1000, ge=1)
    bulk_max_request_bytes: int = 512 * 1024 * 1024
    bulk_max_manifest_bytes: int = 4 * 1024 * 1024

    # API processes behind the API command (scripts/stack.sh, the Docker image): uvicorn --workers.
    api_workers: int = Field(default=2, ge=1)
    # An API key lookup is cached this long in each API process; revoking bumps a Redis counter that
    # every process reads with its rate-limit call, so a revoked key stops at once.
    key_cache_ttl_s: float = Field(default=30.0, ge=0)

    # Upload limits: bytes are checked while reading, pixels before decoding.
    max_upload_bytes: int = 20 * 1024 * 1024
    max_request_bytes: int = 100 * 1024 * 1024  # a whole multipart request, checked from Content-Length
    max_image_pixels: int = 40_000_000
    min_image_side: int = 16
    max_images_per_work: int = 32

    default_top_k: int = 10
    max_top_k: int = 100
    max_wait_seconds: float = 30.0
    # How many nearest images are fetched per query before grouping them into works.
    image_hits_per_work: int = 4

    # Opt-in: keep submitted query images as unlabeled training data (see README).
    collect_queries_for_training: bool = False

    # A worker saves its up-to-date index at most this often (seconds; 0 = after every change).
    index_save_interval_s: float = 0.0

    # Requests per key per window (fixed window in Redis); over it: 429 with Retry-After.
    rate_limit_requests: int = Field(default=600, ge=1)
    rate_limit_window_s: int = Field(default=60, ge=1)
    # How long a response is replayed for a repeated Idempotency-Key.
    idempotency_ttl_s: int = 24 * 3600

    # A worker retries a job this often before marking it failed.
    job_max_attempts: int = 3

    # A worker's heartbeat key lives this long; a job whose worker stopped beating is recovered after it.
    worker_heartbeat_ttl_s: int = Field(default=30, ge=2)
    # Recovery leaves queued rows younger than this alone (the API may still be enqueueing them).
    recovery_grace_s: float = Field(default=20.0, ge=0)
    # Test-only: sleep this long inside each job after marking it running, so that fault tests can kill
    # a worker mid-job. Never set in production.
    fault_job_delay_s: float = Field(default=0.0, ge=0)

    # Encrypts secrets at rest (webhook signing secrets), with Fernet. Any long random string; several,
    # comma-separated, rotate it: the first encrypts, every one decrypts. Unset: webhooks are off.
    secret_key: str | None = None
    # Callback hosts allowed although they resolve to loopback/private/link-local addresses
    # (comma-separated host names or IP addresses). Empty: only public addresses are called.
    webhook_allow_hosts: str = ""
    webhook_max_attempts: int = Field(default=8, ge=1)
    # Retry n waits min(base * 2**(n-1), max) seconds, scaled by a random factor in [0.5, 1].
    webhook_backoff_base_s: float = Field(default=10.0, gt=0)
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # How often the deliverer looks for due rows, and how long a claimed row is held before another
    # deliverer may take it again (a killed deliverer's row is due again after this).
    webhook_poll_interval_s: float = Field(default=1.0, gt=0)
    webhook_lease_s: float = Field(default=60.0, gt=0)

    # Finished jobs (with their matches, deliveries and any kept query file) are deleted this many days
    # after they finish; 0 keeps them forever. Workers sweep every `retention_sweep_interval_s`.
    job_retention_days: float = Field(default=0.0, ge=0)
    retention_sweep_interval_s: float = Field(default=3600.0, gt=0)

    @property
    def webhook_allow_host_set(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.webhook_allow_hosts.split(",") if h.strip())

    @field_validator("torch_threads")
    @classmethod
    def _default_threads(cls, value: int) -> int:
        return value or max(1, len(os.sched_getaffinity(0)) // 2)

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"


@lru_cache
def get_settings() -> Settings:
    return Settings()

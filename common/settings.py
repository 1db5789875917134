"""One settings object for the API, the worker, the trainer and Alembic (env prefix ATTRIB_)."""
import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

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
    # "builtin:efficientnet-lite0" (packaged ImageNet weights), "timm:ARCH:/path/ckpt.pth" (any timm
    # architecture with a local checkpoint), "open_clip:NAME:TAG_OR_FILE", or an exported encoder artefact dir.
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
    # Threads reading and decoding the next batch during the forward pass (0: one per core on a CPU, two on
    # a GPU, where decoding runs on the device: core.pipeline.make_feeder).
    decode_workers: int = Field(default=0, ge=0)
    # On a GPU worker, decode plain JPEGs on the GPU (nvJPEG) and preprocess as tensor ops there.
    gpu_decode: bool = True
    # A worker that serves only the embedding queue (`--queues embed`, the default launch's import worker)
    # runs its decode threads this much lower in CPU priority (nice): they read ahead of the forward pass,
    # so on shared cores they can give way to the API and the attribution worker. 0 = off.
    embed_worker_nice: int = Field(default=10, ge=0, le=19)
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
    # A whole request body: refused from Content-Length, and counted while it streams (any transfer
    # encoding); the key is checked before the first byte is read (app/gate.py).
    max_request_bytes: int = 100 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    min_image_side: int = 16
    max_images_per_work: int = 32
    # What decoding an image may cost (common/images.py). Checked from the header before decoding:
    # long side / short side (the encoder resizes the short side to ~256 px, so this also bounds the
    # resized size), frames of animations and multi-page files, scans of progressive JPEGs.
    max_image_aspect_ratio: float = Field(default=20.0, ge=1)
    max_image_frames: int = Field(default=1000, ge=1)
    max_jpeg_scans: int = Field(default=100, ge=1)
    # The full decode that tells corrupt files apart runs in a child process with these limits
    # (CPU seconds, address space in bytes); over them the upload is refused as `too_costly` (413).
    # At most image_decode_concurrency checks run at once per process.
    image_decode_cpu_s: int = Field(default=10, ge=1)
    image_decode_memory_bytes: int = Field(default=1024 * 1024 * 1024, ge=64 * 1024 * 1024)
    image_decode_concurrency: int = Field(default=4, ge=1)
    # The API keeps image_decode_concurrency decoder children per process and reuses them (a fresh child
    # costs more CPU than a typical decode); each answers this many checks, then a new one replaces it.
    image_decode_child_max_checks: int = Field(default=200, ge=1)
    # An image whose embedding stopped a worker this many times (crash, OOM kill) is marked failed.
    max_image_attempts: int = Field(default=2, ge=1)

    default_top_k: int = 10
    max_top_k: int = 100
    max_wait_seconds: float = 30.0
    # `?wait` holds no thread (app/waiting.py): waits per API process and per key are capped; over a
    # cap the request answers at once (202 + status URL). A waiter re-reads its job's row when the
    # job-finished event arrives, and at least every wait_recheck_s (the event is lossy across a
    # Redis restart).
    max_concurrent_waits: int = Field(default=500, ge=0)
    max_concurrent_waits_per_key: int = Field(default=20, ge=0)
    wait_recheck_s: float = Field(default=5.0, gt=0)
    # Absolute URLs in `Location` and `status_url` start with this (e.g. https://attrib.example.org);
    # unset: they are relative paths. Never taken from the Host header.
    public_base_url: str | None = None
    # Threads of the API's pool for blocking work (upload checks, database); None: anyio's 40.
    api_threads: int | None = Field(default=None, ge=1)
    # API processes, once started, freeze start-up's objects out of garbage collection (a full collection
    # over them took 84-97 ms, stalling every request in flight; common/gc_tuning.py); API and worker
    # processes log collections that take at least this long (0: never).
    gc_freeze: bool = True
    gc_log_slow_ms: float = Field(default=20.0, ge=0)
    # How many nearest images are fetched per query before grouping them into works.
    image_hits_per_work: int = 4

    # Opt-in: keep submitted query images as unlabeled training data (see README).
    collect_queries_for_training: bool = False

    # Vector index (indexing/backends/faiss.py): exact search below this many vectors, an approximate
    # IVF index (trained offline by the snapshot writer or `rebuild-index`) at or above it.
    ann_threshold: int = Field(default=50_000, ge=1)
    # Codes of the approximate index: auto (4-bit PQ, one code per 4 dims, SIMD scan), SQ8 (1 byte/dim),
    # Flat, PQ<m>, PQ<m>x4fs
    ann_codes: str = "auto"
    # PQ codes taken of randomly rotated vectors (spreads a feature's variance over every sub-quantiser)
    ann_rotate: bool = True
    # Candidates of the approximate index scored again exactly (float16 vectors read from disk); 0 = off
    ann_rerank: int = Field(default=1000, ge=0)
    ann_nprobe: int = Field(default=128, ge=1)  # IVF lists visited per query (recall vs latency)
    # A query whose best approximate score is below this is searched again with ann_retry_nprobe lists
    # (0 = never): far-off queries' answers sit in lists the first pass skips (docs/scaling.md).
    ann_retry_below: float = Field(default=0.55, ge=0)
    ann_retry_nprobe: int = Field(default=512, ge=1)
    ann_retry_rerank: int = Field(default=3000, ge=0)  # re-rank depth of that second search
    # IVF lists: 0 = about sqrt(N), at most 4,096; more than 4,096: an HNSW coarse quantiser (docs/scaling.md)
    ann_lists: int = Field(default=0, ge=0)
    # Changes held beside the base index before the snapshot writer folds them into a new base (or rebuilds it).
    index_compact_after: int = Field(default=20_000, ge=1)
    # Changes are folded into a copy of the base (its quantiser kept) while the count stays within this
    # factor of the count the quantiser was trained on; beyond it, or when the index type changes, the
    # base is rebuilt from the database and trained again. Below 1 (0): always rebuild (docs/scaling.md).
    index_retrain_growth: float = Field(default=2.0, ge=0)
    # CPU niceness added to a worker's background rebuild (0 = none): the job thread keeps its core while
    # the base trains (minutes at 1M); the rebuild takes what the jobs leave.
    index_rebuild_nice: int = Field(default=10, ge=0, le=19)
    # One worker (a Redis lock) writes a snapshot of its index this often when it changed, and at shutdown.
    snapshot_interval_s: float = Field(default=300.0, gt=0)

    # Requests per key per window (fixed window in Redis); over it: 429 with Retry-After.
    rate_limit_requests: int = Field(default=600, ge=1)
    rate_limit_window_s: int = Field(default=60, ge=1)
    # Requests per client address per window without a valid key (anonymous, unknown or revoked keys:
    # each costs a database lookup). /healthz, /readyz and the API docs are not counted.
    anonymous_rate_limit_requests: int = Field(default=60, ge=1)
    # How long a response is replayed for a repeated Idempotency-Key.
    idempotency_ttl_s: int = 24 * 3600

    # Refuse (409) a second live work with the same external_ref for one rights holder, so a catalogue
    # import can be re-run without creating duplicates. Off by default: some catalogues reuse refs.
    unique_external_ref: bool = False

    # Logs of the API and the workers: "json" (one object a line, with request, job and key ids) or "text".
    log_format: Literal["json", "text"] = "text"
    log_level: str = "INFO"

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

    # Where shared files live (common.storage): empty = a folder under data_dir ("storage/"); or
    # "s3://bucket/prefix" on any S3-compatible store (credentials from the usual AWS_* variables),
    # which lets API, workers and trainer run on hosts that share no filesystem.
    storage_url: str = ""
    s3_endpoint_url: str = ""  # e.g. http://minio:9000; empty = AWS
    # Vector engine: "faiss" (in-process, one machine) or "milvus" (pymilvus; a server or cluster URI such
    # as http://milvus:19530, or a milvus-lite file path ending in .db: one process per file).
    vector_backend: str = Field(default="faiss", pattern="^(faiss|milvus)$")
    milvus_uri: str = ""  # empty = <data_dir>/milvus/worker-N.db (milvus-lite, one file per worker process)
    milvus_token: str = ""
    milvus_index_type: str = "FLAT"  # FLAT in tests; HNSW, AUTOINDEX, IVF_SQ8, ... on a server

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

    @property
    def cache_dir(self) -> Path:
        """Local copies of shared files (snapshots from object storage), per host."""
        return self.data_dir / "cache"


@lru_cache
def get_settings() -> Settings:
    return Settings()

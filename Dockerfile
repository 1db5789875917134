# syntax=docker/dockerfile:1
# Multi-stage image for the attribution service.
#   docker build --target api -t attrib-api .   # FastAPI + Alembic; never installs torch
#   docker build --target ml  -t attrib-ml  .   # worker and trainer (torch, FAISS, open_clip)
# Bake open_clip hub weights into the ml image so nothing is downloaded at run time:
#   docker build --target ml --build-arg OPEN_CLIP_MODEL=ViT-B-32 \
#       --build-arg OPEN_CLIP_PRETRAINED=laion2b_s34b_b79k -t attrib-ml .

# ---- base: the kernel every process needs (pydantic, SQLAlchemy, Alembic, psycopg, RQ, Pillow, NumPy)
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ATTRIB_DATA_DIR=/data
# Non-root user; /data is the shared volume (uploads + artefacts). A fresh named volume
# mounted there inherits this ownership.
RUN groupadd --system --gid 10001 attrib \
    && useradd --system --uid 10001 --gid attrib --home-dir /home/attrib --create-home attrib \
    && mkdir -p /data \
    && chown attrib:attrib /data
WORKDIR /app
COPY pyproject.toml constraints.txt alembic.ini ./
COPY common ./common
COPY core ./core
COPY indexing ./indexing
COPY app ./app
COPY worker ./worker
COPY training ./training
COPY cli ./cli
COPY migrations ./migrations
COPY docker ./docker
RUN pip install --no-cache-dir . \
    && chmod 0755 docker/prestart.sh

# ---- api: FastAPI + Alembic (also runs the one-shot migration). No torch, no FAISS.
FROM base AS api
# Versions come from pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --no-cache-dir ".[api]"
# The `attrib` CLI (admins: `docker compose run --rm api attrib keys create ...`).
# hadolint ignore=DL3013,DL3059
RUN pip install --no-cache-dir ".[cli]"
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
# Several API processes (ATTRIB_API_WORKERS, default 2): one process saturated at ~90 requests/s (issue 8).
ENV ATTRIB_API_WORKERS=2
CMD ["sh", "-c", "exec uvicorn app.main:app --host 0.0.0.0 --port 8000 --proxy-headers --workers \"$ATTRIB_API_WORKERS\""]

# ---- ml: worker and trainer. torch/torchvision are pinned by constraints.txt.
FROM base AS ml
# libgomp1: OpenMP runtime for FAISS/torch CPU kernels (Debian's current build; not pinned).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*
# torch first, in its own layer, so source edits do not re-download it.
RUN pip install --no-cache-dir -c constraints.txt torch==2.14.1 torchvision==0.29.1
# hadolint ignore=DL3059
RUN pip install --no-cache-dir -c constraints.txt ".[ml]"
USER 10001:10001
# Optional: fetch open_clip weights now, as the runtime user, into its cache
# (~/.cache/huggingface or ~/.cache/clip), so the running container never downloads.
ARG OPEN_CLIP_MODEL=""
ARG OPEN_CLIP_PRETRAINED=""
RUN if [ -n "$OPEN_CLIP_MODEL" ]; then \
        python -c "import sys, open_clip; open_clip.create_model_and_transforms(sys.argv[1], pretrained=sys.argv[2] or None)" \
            "$OPEN_CLIP_MODEL" "$OPEN_CLIP_PRETRAINED"; \
    fi
# Production images do not reach the hub at run time; set HF_HUB_OFFLINE=0 to allow it.
ENV HF_HUB_OFFLINE=1
CMD ["python", "-m", "worker"]

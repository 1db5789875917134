"""Every resource lives under /v1; the unversioned paths of the first API stay as aliases, hidden from
the schema (clients generated from it use /v1). Probes and problem pages are unversioned only."""
from fastapi import APIRouter

from app.api.routes import (attributions, audit, bulk, evidence, health, jobs, keys, models, problems, sources, verdicts,
                            webhooks)

API_PREFIX = "/v1"

resources = APIRouter()
resources.include_router(bulk.router)  # before sources: /sources/bulk is not a work id
resources.include_router(sources.router)
resources.include_router(jobs.router)
resources.include_router(attributions.router)
resources.include_router(evidence.router)
resources.include_router(verdicts.router)
resources.include_router(keys.router)
resources.include_router(webhooks.router)
resources.include_router(audit.router)
resources.include_router(models.router)

api_router = APIRouter()
# /v1 first: url_for (status URLs, Location) then names the versioned path.
api_router.include_router(resources, prefix=API_PREFIX)
api_router.include_router(resources, include_in_schema=False)
api_router.include_router(problems.router)
api_router.include_router(health.router)

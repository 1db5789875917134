from fastapi import APIRouter

from app.api.routes import attributions, audit, bulk, health, keys, sources, webhooks

api_router = APIRouter()
api_router.include_router(bulk.router)
api_router.include_router(sources.router)
api_router.include_router(attributions.router)
api_router.include_router(keys.router)
api_router.include_router(webhooks.router)
api_router.include_router(audit.router)
api_router.include_router(health.router)

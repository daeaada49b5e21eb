"""The Ray Serve application: one FastAPI ingress deployment, bound by build_app()."""
from __future__ import annotations

import uuid

from fastapi import FastAPI, Request
from ray import serve

from flashmart.obs import configure_json_logging, request_id_var
from flashmart.settings import Settings
from serve.errors import install_error_handlers

API_TITLE = "flashmart"


def create_fastapi() -> FastAPI:
    from serve.routes import ROUTERS

    api = FastAPI(title=API_TITLE, version="0.1.0", description="Flash-sale-proof e-commerce on Ray actors.")
    install_error_handlers(api)
    from serve.security import install_security

    install_security(api)  # body size limit, CORS, security headers (settings read per replica)

    @api.middleware("http")
    async def request_id(request: Request, call_next):
        # Serve (and HAProxy) assign x-request-id and echo it in the response; we carry the
        # same id into logs and actor calls through request_id_var (see flashmart.obs).
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        token = request_id_var.set(rid)
        try:
            return await call_next(request)
        finally:
            request_id_var.reset(token)

    for router in ROUTERS:
        api.include_router(router)
    return api


@serve.deployment(name="Api", max_ongoing_requests=256)
@serve.ingress()
class Api:
    """The ingress replica: opens its context once, then serves the FastAPI app built for it."""

    async def __init__(self, settings: Settings):
        from serve.context import open_context
        from serve.services import open_services

        configure_json_logging()
        self.ctx = await open_context(settings)
        self.ctx.services.update(await open_services(settings))

    def __serve_build_asgi_app__(self) -> FastAPI:
        # built on the replica (not pickled from the driver), after the context is open
        api = create_fastapi()
        api.state.ctx = self.ctx
        return api


def build_app(settings: Settings):
    """Bind the deployments with the settings; scaling bounds come from the settings too."""
    return Api.options(
        max_ongoing_requests=settings.max_ongoing_requests,
        autoscaling_config={
            "min_replicas": settings.serve_replicas_min,
            "max_replicas": settings.serve_replicas_max,
            "target_ongoing_requests": max(1, settings.max_ongoing_requests // 4),
        },
    ).bind(settings)

"""The Ray Serve application: one FastAPI ingress deployment, bound by build_app()."""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from ray import serve

from flashmart.obs import configure_json_logging, request_id_var
from flashmart.serve.errors import install_error_handlers
from flashmart.settings import Settings

API_TITLE = "flashmart"


class RequestIdMiddleware:
    """Carries the request id (Serve and HAProxy assign x-request-id and echo it in the response)
    into logs and actor calls through request_id_var. Pure ASGI: starlette's @app.middleware("http")
    wrapper cost about two thirds of a hello world's throughput in benchmarks/http.py."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = next((v.decode() for k, v in scope.get("headers", ()) if k == b"x-request-id"), None)
        token = request_id_var.set(rid or uuid.uuid4().hex)
        try:
            await self.app(scope, receive, send)
        finally:
            request_id_var.reset(token)


def create_fastapi() -> FastAPI:
    from flashmart.serve.deadline import RequestDeadlineMiddleware
    from flashmart.serve.routes import ROUTERS
    from flashmart.serve.security import install_security
    from flashmart.serve.web.sale_meter import SaleMeterMiddleware

    api = FastAPI(
        title=API_TITLE, version="0.1.0", description="Flash-sale-proof e-commerce on Ray actors."
    )
    install_error_handlers(api)
    install_security(api)  # body size limit, CORS, security headers (settings read per replica)
    api.add_middleware(RequestIdMiddleware)
    api.add_middleware(SaleMeterMiddleware)  # the live sale room's request figures
    api.add_middleware(RequestDeadlineMiddleware)  # outermost: a hung dependency answers 503
    for router in ROUTERS:
        api.include_router(router)
    return api


@serve.deployment(name="Api")  # max_ongoing_requests: build_app, from the settings
@serve.ingress()
class Api:
    """The ingress replica: opens its context once, then serves the FastAPI app built for it."""

    async def __init__(self, settings: Settings):
        from flashmart.serve.context import open_context
        from flashmart.serve.services import open_services

        configure_json_logging()
        self.ctx = await open_context(settings)
        self.ctx.services.update(await open_services(settings))
        self.ctx.services.update(open_cart_services(self.ctx))

    def __serve_build_asgi_app__(self) -> FastAPI:
        # built on the replica (not pickled from the driver), after the context is open
        api = create_fastapi()
        api.state.ctx = self.ctx
        return api


def open_cart_services(ctx) -> dict:
    """What add-to-cart and the product page need in the replica: the catalog cache following the
    catalog's change stream (its own connection: it holds one in a blocking read), the product pages
    it keeps fresh, the cart operations over the cart store, this replica's batched inventory client
    and its database pool."""
    from flashmart.actors.carts.book import CartBook
    from flashmart.serve.product_pages import ProductPages
    from flashmart.storage.cart_redis import CartStore
    from flashmart.storage.catalog_cache import CatalogCache
    from flashmart.storage.redis import async_redis, redis_timeouts

    settings = ctx.settings
    catalog = CatalogCache.start(
        ctx.db,
        ctx.redis,
        follower=async_redis(settings.redis_url, max_connections=2, **redis_timeouts(settings)),
    )
    return {
        "catalog": catalog,
        # product pages in memory, dropped by the same follower (serve/product_pages.py)
        "pages": ProductPages(catalog, settings.product_cache_ttl_s),
        "cart_book": CartBook(
            CartStore(ctx.redis, settings.cart_ttl_s), ctx.services["inventory"], ctx.db, settings
        ),
    }


def build_app(settings: Settings):
    """Bind the deployments with the settings; scaling bounds come from the settings too."""
    return Api.options(
        max_ongoing_requests=settings.max_ongoing_requests,
        # a replica whose event loop is saturated by a flash crowd answers its health check late; the
        # default (30 s, 3 misses) killed busy replicas in a 100,000-buyer run, which loses their
        # requests and spends CPU on restarts exactly when there is none to spare
        health_check_period_s=10,
        health_check_timeout_s=settings.serve_health_check_timeout_s,
        # Serve's access log writes a line per request in every replica: off unless asked for
        logging_config={"enable_access_log": settings.serve_access_log},
        **replica_count(settings),
    ).bind(settings)


def replica_count(settings: Settings) -> dict:
    """A fixed number of replicas when the bounds are equal (the default, 2): the autoscaler would
    only spend the controller's CPU polling metrics to arrive at the same number."""
    if settings.serve_replicas_min == settings.serve_replicas_max:
        return {"num_replicas": settings.serve_replicas_min}
    return {
        "autoscaling_config": {
            "min_replicas": settings.serve_replicas_min,
            "max_replicas": settings.serve_replicas_max,
            # a replica's fair share of work, far below the in-flight bound (which counts waiters)
            "target_ongoing_requests": settings.serve_target_ongoing_requests,
        }
    }

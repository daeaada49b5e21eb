"""One place where business refusals and bad input become HTTP status codes with readable messages."""

from __future__ import annotations

import json

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from flashmart import refusals

# A refusal reason (returned by actors and services) -> HTTP status.
STATUS_BY_REASON: dict[str, int] = {
    "bad_request": 400,
    "unauthenticated": 401,
    "sign_in_required": 401,  # a flash sale for signed-in buyers only
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "sold_out": 409,
    "limit_reached": 409,
    "too_many_units": 409,  # the cart's cap of units per SKU
    "hold_expired": 409,
    "unknown_hold": 409,
    "payment_declined": 402,
    "fraud_declined": 403,
    "members_only": 403,  # a flash sale in its members' early access
    "not_entitled": 403,  # content the caller's membership or purchases do not include
    "too_large": 413,
    "currency_mismatch": 409,  # a cart holds one currency
    "no_exchange_rate": 422,  # no rate set for the cart's currency: dollar amounts cannot be charged
    "invalid": 422,
    "rate_limited": 429,
    "overloaded": 503,
    "unavailable": 503,
    # the payment gateway said no to a valid request: neither the client's input nor flashmart's fault
    "gateway_refused": 502,
}

# A checkout's refusal -> HTTP status. A checkout that is refused for any other reason (the stock or the
# cart changed meanwhile) is a conflict with the current state: 409.
CHECKOUT_STATUS_BY_REASON: dict[str, int] = {
    "payment_declined": 402,
    "fraud_declined": 403,
    "overloaded": 503,
    "unavailable": 503,
    "invalid": 422,
    "no_exchange_rate": 422,
    "hold_expired": 409,
    "sold_out": 409,
    "limit_reached": 409,
    "unknown_hold": 409,
    "bad_request": 400,
    "not_found": 404,
    "coupon_exhausted": 409,
    "coupon_expired": 409,
    "coupon_min_spend": 409,
    "insufficient_credit": 409,
    "checkout_interrupted": 409,
    "price_changed": 409,  # the cart now shows the current prices: the buyer confirms again
    "shipping_quote_changed": 409,  # the carrier quotes this cart another price now: choose again
}
CHECKOUT_REFUSED_DEFAULT_STATUS = 409
ORDER_PLACED_STATUS = 201


def status_of(refusal: refusals.Refusal) -> int:
    return STATUS_BY_REASON.get(refusal.reason, 400)


def checkout_status(refusal: refusals.Refusal) -> int:
    return CHECKOUT_STATUS_BY_REASON.get(refusal.reason, CHECKOUT_REFUSED_DEFAULT_STATUS)


class Refused(refusals.Refused):
    """Raise from a route for any expected refusal: Refused("sold_out", "SKU X has no units left").
    A refusal raised by the domain (flashmart.refusals.Refused) is answered the same way."""

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        status: int | None = None,
        headers: dict | None = None,
        **extra,
    ):
        super().__init__(reason, message, extra or None)
        self.status = status or STATUS_BY_REASON.get(reason, 400)
        self.headers = headers

    @property
    def extra(self) -> dict:
        return self.details or {}

    @classmethod
    def at_checkout(cls, refusal: refusals.Refusal) -> Refused:
        """A checkout's refusal, with the checkout's status for it."""
        return cls(
            refusal.reason,
            refusal.message,
            status=checkout_status(refusal),
            **(refusal.details or {}),
        )


def _readable(errors: list[dict]) -> str:
    parts = []
    for err in errors:
        where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts)


BACKEND_RETRY_AFTER_S = 1
DEADLINE_RETRY_AFTER_S = 5


def deadline_passed_response(deadline_s: float) -> JSONResponse:
    """A request that did not start its answer within the deadline (a hung dependency)."""
    body = {
        "error": "unavailable",
        "message": f"the request did not complete within {deadline_s:g}s (a backing service is "
        "slow or unavailable); retry shortly",
    }
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(DEADLINE_RETRY_AFTER_S)})


INGRESS_RETRY_AFTER_S = 1


def ingress_unavailable_http() -> str:
    """The raw answer of the ingress (HAProxy, its errorfile) when the replica that had the request
    went away (killed, crashed) or none is up: 503 with Retry-After, never a bare 500. A GET was
    retried on another replica first; anything else may have acted, so the client retries it with
    the same keys (an add names its cart, a checkout carries its idempotency key)."""
    body = json.dumps(
        {
            "error": "unavailable",
            "message": "the server handling the request went away; retry shortly with the same "
            "request (an add names its cart, a checkout its idempotency key)",
        }
    )
    return (
        "HTTP/1.1 503 Service Unavailable\r\n"
        f"Retry-After: {INGRESS_RETRY_AFTER_S}\r\n"
        "Content-Type: application/json\r\n"
        "Cache-Control: no-store\r\n"
        f"Content-Length: {len(body.encode())}\r\n"
        "\r\n"
        f"{body}"
    )


def refusal_response(exc: refusals.Refused) -> Response:
    """The answer to a refusal. A hot route returns it instead of raising: FastAPI's way from a raised
    exception to its handler costs more than a sold-out answer itself (serve/routes/cart.py)."""
    refusal = exc.refusal
    return Response(
        orjson.dumps(refusal.body(), option=orjson.OPT_NON_STR_KEYS),
        status_code=getattr(exc, "status", None) or status_of(refusal),
        headers=getattr(exc, "headers", None),
        media_type="application/json",
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(refusals.Refused)
    async def _refused(_: Request, exc: refusals.Refused) -> Response:
        return refusal_response(exc)

    async def _backend_down(_: Request, exc: Exception) -> JSONResponse:
        # PostgreSQL or Redis unreachable (a restart, a failover): nothing was half written (each
        # request's writes are one transaction), so the client may simply retry.
        body = {
            "error": "unavailable",
            "message": f"a backing store or service is unavailable ({type(exc).__name__}); "
            "retry shortly",
        }
        return JSONResponse(
            body, status_code=503, headers={"Retry-After": str(BACKEND_RETRY_AFTER_S)}
        )

    import psycopg
    import psycopg_pool
    import ray.exceptions
    import redis.exceptions

    for kind in (
        psycopg.OperationalError,  # also a statement_timeout, and an actor's task that raised one
        psycopg_pool.PoolTimeout,
        redis.exceptions.ConnectionError,
        redis.exceptions.TimeoutError,
        ray.exceptions.RayActorError,  # an actor that died and is being restarted
        ray.exceptions.ActorUnavailableError,
    ):
        app.add_exception_handler(kind, _backend_down)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in errors
        ]
        return JSONResponse(
            {"error": "invalid", "message": _readable(errors), "detail": detail}, status_code=422
        )

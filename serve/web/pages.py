"""The pages of the storefront (/shop), the admin portal (/admin) and the courier app (/courier),
their static files and their live streams (server-sent events).

A page is a server-rendered shell (Jinja2: layout, navigation, labelled forms); its data comes from
the JSON API, called by the page's own small script with the signed-in user's token. So there is no
second copy of a business rule here, and the pages are kept out of the OpenAPI document.
"""

from __future__ import annotations

import asyncio
import json
import time
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse

from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

router = APIRouter(include_in_schema=False)

WEB = Path(__file__).parent
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
SKU = PathParam(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
STOCK_POLL_S = 0.25  # the sold-out board is in this process: looking costs a set lookup
HEARTBEAT_S = 15.0  # a comment line now and then keeps idle proxies from closing the stream
STREAM_MAX_S = 600.0  # a stream ends after this; EventSource reconnects by itself
# Each open stream holds one of the replica's max_ongoing_requests. Past this many stock streams a
# replica answers the current state and asks the browser to come back later (retry), so product
# pages left open in a flash crowd cannot crowd out the buying requests.
STOCK_STREAMS_MAX = 64
BUSY_RETRY_MS = 5000
_stock_streams = 0
SALE_ROOM_TICK_S = 1.0
STRIPE_JS_LIVE = "https://js.stripe.com/v3/"


@cache
def _templates():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(WEB / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def stripe_js_url(settings) -> str:
    """The Stripe.js a checkout page loads: the configured one; else live Stripe's when the API is
    Stripe's own; else the one the embedded gateway serves beside its API."""
    if settings.stripe_js_url:
        return settings.stripe_js_url
    base = settings.resolved().stripe_api_base.rstrip("/")
    return (
        STRIPE_JS_LIVE
        if urlsplit(base).hostname == "api.stripe.com"
        else f"{base}/js.stripe.com/v3/"
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def media_origin(settings) -> str:
    """Where signed content URLs point (the object store as clients reach it): the library's
    players fetch video segments and tracks from there."""
    resolved = settings.resolved()
    return _origin(resolved.object_store_public_url or resolved.object_store_url)


def page_csp(settings) -> str:
    """Scripts and frames only from here and the payment gateway's Stripe.js; the card fields talk
    to the gateway itself, never to flashmart. Media (and the HLS player's segment fetches) also
    from the object store's signed URLs; `blob:` is the player's MediaSource."""
    js = _origin(stripe_js_url(settings))
    api = _origin(settings.resolved().stripe_api_base)
    media = media_origin(settings)
    stripe_hosts = " https://*.stripe.com" if js == _origin(STRIPE_JS_LIVE) else ""
    return (
        f"default-src 'self'; script-src 'self' {js}{stripe_hosts}; "
        f"connect-src 'self' {api} {js}{stripe_hosts} {media}; frame-src {js}{stripe_hosts}; "
        f"media-src 'self' blob: {media}; "
        "img-src 'self' https: data:; style-src 'self' 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


def _script_safe_json(value) -> str:
    """JSON to embed in a <script> element: no "</script>" or "<!--" can end it early."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(ctx: Context, template: str, **values) -> HTMLResponse:
    settings = ctx.settings
    page = {
        "stripe_js": stripe_js_url(settings),
        "stripe_publishable_key": settings.stripe_publishable_key,
        "hold_ttl_s": settings.hold_ttl_s,
        "template": template,
        **values,
    }
    html = _templates().get_template(template).render(page=page, page_json=_script_safe_json(page))
    return HTMLResponse(
        html, headers={"content-security-policy": page_csp(settings), "cache-control": "no-store"}
    )


# --- static files ----------------------------------------------------------------------------------


@cache
def _static_files() -> dict[str, Path]:
    return {p.name: p for p in (WEB / "static").iterdir() if p.suffix in STATIC_TYPES}


@router.get("/static/web/{name}")
async def static_file(name: str) -> FileResponse:
    path = _static_files().get(name)
    if path is None:
        raise Refused("not_found", f"no static file {name}")
    return FileResponse(
        path,
        media_type=STATIC_TYPES[path.suffix],
        headers={"cache-control": "public, max-age=300"},
    )


# --- storefront ------------------------------------------------------------------------------------


@router.get("/shop")
async def shop_home(ctx: Context = Depends(get_ctx)):
    return render(ctx, "shop/search.html", app="shop", title="Search")


@router.get("/shop/products/{product_id}")
async def shop_product(
    product_id: int = PathParam(..., ge=1, le=2**62), ctx: Context = Depends(get_ctx)
):
    return render(ctx, "shop/product.html", app="shop", title="Product", product_id=product_id)


_SHOP_PAGES = {
    "cart": ("shop/cart.html", "Your cart"),
    "checkout": ("shop/checkout.html", "Checkout"),
    "orders": ("shop/orders.html", "Your orders"),
    "account": ("shop/account.html", "Sign in"),
    "wishlist": ("shop/wishlist.html", "Wishlist"),
    "membership": ("shop/membership.html", "Membership"),
    "library": ("shop/library.html", "Your library"),
}


@router.get("/shop/{page}")
async def shop_page(page: str, ctx: Context = Depends(get_ctx)):
    if page not in _SHOP_PAGES:
        raise Refused("not_found", f"no page /shop/{page}")
    template, title = _SHOP_PAGES[page]
    return render(ctx, template, app="shop", title=title)


@router.get("/shop/orders/{order_id}")
async def shop_order(
    order_id: str = PathParam(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$"),
    ctx: Context = Depends(get_ctx),
):
    return render(ctx, "shop/order.html", app="shop", title="Order", order_id=order_id)


@router.get("/shop/queue/{sku}")
async def shop_queue(sku: str = SKU, ctx: Context = Depends(get_ctx)):
    return render(ctx, "shop/queue.html", app="shop", title="Waiting room", sku=sku)


@router.get("/shop/stock/{sku}/events")
async def stock_events(request: Request, sku: str = SKU, ctx: Context = Depends(get_ctx)):
    """Server-sent events: `stock` with {"sku", "sold_out"} now and at every change. Fed by the
    replica's sold-out board, which follows the inventory engine's stock feed."""
    board = ctx.services["sold_out"]

    def state() -> str:
        data = json.dumps({"sku": sku, "sold_out": board.is_sold_out(sku)})
        return f"event: stock\ndata: {data}\n\n"

    async def busy():
        yield f"retry: {BUSY_RETRY_MS}\n\n" + state()

    async def events():
        global _stock_streams
        _stock_streams += 1
        try:
            yield "retry: 2000\n\n"
            last, last_sent = None, time.monotonic()
            until = time.monotonic() + STREAM_MAX_S
            while time.monotonic() < until and not await request.is_disconnected():
                sold_out = board.is_sold_out(sku)
                if sold_out is not last:
                    last, last_sent = sold_out, time.monotonic()
                    yield state()
                elif time.monotonic() - last_sent > HEARTBEAT_S:
                    last_sent = time.monotonic()
                    yield ": still here\n\n"
                await asyncio.sleep(STOCK_POLL_S)
        finally:
            _stock_streams -= 1

    return _event_stream(busy() if _stock_streams >= STOCK_STREAMS_MAX else events())


def _event_stream(gen) -> StreamingResponse:
    return StreamingResponse(
        gen,
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


# --- admin portal ----------------------------------------------------------------------------------

_ADMIN_PAGES = {
    "": ("admin/home.html", "Admin"),
    "catalog": ("admin/catalog.html", "Catalog"),
    "stock": ("admin/stock.html", "Stock"),
    "sales": ("admin/sales.html", "Flash sales"),
    "orders": ("admin/orders.html", "Orders"),
    "fraud": ("admin/fraud.html", "Fraud review"),
    "promotions": ("admin/promotions.html", "Coupons and gift cards"),
    "shipments": ("admin/shipments.html", "Shipments"),
    "users": ("admin/users.html", "Users and roles"),
    "products": ("admin/products.html", "Products"),
    "invoices": ("admin/invoices.html", "Invoices"),
    "tickets": ("admin/tickets.html", "Support tickets"),
    "reports": ("admin/reports.html", "Reports"),
    "reordering": ("admin/reordering.html", "Reordering"),
    "audit": ("admin/audit.html", "Audit log"),
}


@router.get("/admin")
async def admin_home(ctx: Context = Depends(get_ctx)):
    return render(ctx, "admin/home.html", app="admin", title="Admin")


@router.get("/admin/sales/{sku}")
async def admin_sale_room(sku: str = SKU, ctx: Context = Depends(get_ctx)):
    return render(ctx, "admin/sale_room.html", app="admin", title=f"Sale room {sku}", sku=sku)


@router.get("/admin/sales/{sku}/events")
async def sale_room_events(
    request: Request,
    sku: str = SKU,
    principal: Principal = Depends(require("inventory.read")),
    ctx: Context = Depends(get_ctx),
):
    """Server-sent events: `room` with the sale room's figures every second (serve/web/sale_room.py).
    Read with fetch (it sends the token); a seller watches only their own SKUs."""
    from flashmart.serve.routes.inventory import _check_sku_owner
    from flashmart.serve.web.sale_room import snapshot

    if principal.role == "seller":
        await _check_sku_owner(ctx, principal, sku)

    async def events():
        until = time.monotonic() + STREAM_MAX_S
        while time.monotonic() < until and not await request.is_disconnected():
            started = time.monotonic()
            try:
                data = await snapshot(ctx, sku)
                yield f"event: room\ndata: {json.dumps(data)}\n\n"
            except Exception as exc:
                yield f"event: gap\ndata: {json.dumps({'reason': type(exc).__name__})}\n\n"
            await asyncio.sleep(max(0.05, SALE_ROOM_TICK_S - (time.monotonic() - started)))

    return _event_stream(events())


@router.get("/admin/{page}")
async def admin_page(page: str, ctx: Context = Depends(get_ctx)):
    if page not in _ADMIN_PAGES:
        raise Refused("not_found", f"no page /admin/{page}")
    template, title = _ADMIN_PAGES[page]
    return render(ctx, template, app="admin", title=title)


# --- courier app -----------------------------------------------------------------------------------


@router.get("/courier")
async def courier_home(ctx: Context = Depends(get_ctx)):
    return render(ctx, "courier/home.html", app="courier", title="Deliveries")


@router.get("/")
async def root():
    return RedirectResponse("/shop", status_code=307)

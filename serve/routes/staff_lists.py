"""The admin portal's lists over HTTP: orders (with filters, and an order's returns), products with
their variants and stock per warehouse, flash sales, accounts. A seller sees only the rows of their
own products; accounts are for admins."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused
from flashmart.storage import staff_lists_postgres as staff_lists

router = APIRouter(prefix="/api/v1/admin", tags=["admin lists"])
users_router = APIRouter(prefix="/api/v1/users", tags=["users"])
OrderStatus = Literal[
    "review", "confirmed", "shipped", "delivered", "cancelled", "failed", "returned"
]
SKU_TEXT = r"^[A-Za-z0-9._:-]+$"
Limit = Query(50, ge=1, le=200)
Offset = Query(0, ge=0, le=1_000_000)


async def _seller_scope(ctx: Context, principal: Principal) -> int | None:
    """None for staff who see everything; a seller's catalog id otherwise."""
    if principal.role != "seller":
        return None
    from flashmart.storage.sellers_postgres import seller_id_of_user

    own = await seller_id_of_user(ctx.db, principal.user_id)
    if own is None:
        raise Refused("forbidden", "your account is not linked to a seller in the catalog")
    return own


def _utc(at: dt.datetime | None) -> dt.datetime | None:
    """A time without a zone is read as UTC (a date from a form has none)."""
    return at.replace(tzinfo=dt.UTC) if at is not None and at.tzinfo is None else at


def _window(
    since: dt.datetime | None, until: dt.datetime | None
) -> tuple[dt.datetime | None, dt.datetime | None]:
    since, until = _utc(since), _utc(until)
    if since and until and until <= since:
        raise Refused("invalid", "'to' must be after 'from'")
    return since, until


@router.get("/orders")
async def list_orders(
    status: OrderStatus | None = None,
    email: str | None = Query(None, min_length=1, max_length=254, description="part of it"),
    sku: str | None = Query(None, min_length=1, max_length=100, pattern=SKU_TEXT),
    since: dt.datetime | None = Query(None, alias="from", description="placed at or after"),
    until: dt.datetime | None = Query(None, alias="to", description="placed before"),
    limit: int = Limit,
    offset: int = Offset,
    principal: Principal = Depends(require("order.list")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Orders newest first (checkouts that never finished are not listed). A seller sees the orders
    with lines of their products and those lines (`your_lines`), without the order's totals (the
    buyer's business); they ship them at /api/v1/seller/orders."""
    since, until = _window(since, until)
    seller_id = await _seller_scope(ctx, principal)
    rows = await staff_lists.orders(
        ctx.db,
        seller_id=seller_id,
        status=status,
        email=email,
        sku=sku,
        placed_from=since,
        placed_to=until,
        limit=limit,
        offset=offset,
    )
    if seller_id is not None:
        for r in rows:
            del r["grand_total"], r["units"]
    return {"orders": rows, "limit": limit, "offset": offset}


@router.get("/orders/{order_id}/returns")
async def order_returns(
    order_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")],
    _: Principal = Depends(require("return.review")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """The returns a buyer asked for on this order, to approve or reject."""
    return {"order_id": order_id, "returns": await staff_lists.order_returns(ctx.db, order_id)}


@router.get("/products")
async def list_products(
    q: str | None = Query(None, min_length=1, max_length=200, description="name or SKU, part"),
    status: Literal["active", "archived"] | None = None,
    limit: int = Limit,
    offset: int = Offset,
    principal: Principal = Depends(require("inventory.read")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Products newest first, each with its variants and their stock per warehouse (on hand,
    held, sold, available). A seller sees their own products."""
    rows = await staff_lists.products(
        ctx.db,
        seller_id=await _seller_scope(ctx, principal),
        q=q,
        status=status,
        limit=limit,
        offset=offset,
    )
    return {"products": rows, "limit": limit, "offset": offset}


@router.get("/flash-sales")
async def list_flash_sales(
    state: Literal["scheduled", "live", "ended"] | None = None,
    limit: int = Limit,
    offset: int = Offset,
    principal: Principal = Depends(require("inventory.read")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Flash sales newest first with their state and units; each opens its live sale room at
    /admin/sales/{sku}. A seller sees the sales of their own products."""
    rows = await staff_lists.flash_sales(
        ctx.db,
        seller_id=await _seller_scope(ctx, principal),
        state=state,
        now=dt.datetime.now(dt.UTC),
        limit=limit,
        offset=offset,
    )
    return {"flash_sales": rows, "limit": limit, "offset": offset}


@users_router.get("")
async def list_accounts(
    role: Literal["customer", "seller", "admin", "support", "courier"] | None = None,
    email: str | None = Query(None, min_length=1, max_length=254, description="part of it"),
    limit: int = Limit,
    offset: int = Offset,
    _: Principal = Depends(require("user.admin")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Accounts newest first (admins): role, whether disabled."""
    rows = await staff_lists.accounts(ctx.db, role=role, email=email, limit=limit, offset=offset)
    return {"users": rows, "limit": limit, "offset": offset}

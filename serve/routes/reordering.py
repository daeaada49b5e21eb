"""Automatic reordering: suppliers, a reorder rule per SKU and warehouse, the purchase orders the
back office places when available stock falls below a rule's point, and receiving them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

router = APIRouter(prefix="/api/v1", tags=["reordering"])


def _store(ctx: Context):
    from flashmart.storage.reordering_postgres import PostgresReorderStore

    return PostgresReorderStore(ctx.db)


async def _seller_scope(ctx: Context, principal: Principal) -> int | None:
    if principal.role == "admin":
        return None
    from flashmart.storage.sellers_postgres import seller_id_of_user

    own = await seller_id_of_user(ctx.db, principal.user_id)
    if own is None:
        raise Refused("forbidden", "your account is not linked to a seller in the catalog")
    return own


async def _own_sku(ctx: Context, principal: Principal, sku: str) -> None:
    scope = await _seller_scope(ctx, principal)
    async with ctx.db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT p.seller_id FROM product_variants v JOIN products p ON p.id = v.product_id "
                "WHERE v.sku = %s",
                (sku,),
            )
        ).fetchone()
    if row is None or (scope is not None and row["seller_id"] != scope):
        raise Refused("not_found", f"no SKU {sku} of yours")


class SupplierBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(..., min_length=1, max_length=200)
    email: EmailStr


@router.post("/suppliers", status_code=201)
async def add_supplier(
    body: SupplierBody,
    principal: Principal = Depends(require("reorder.write")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    return await _store(ctx).add_supplier(body.name, str(body.email))


class RuleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reorder_point: int = Field(..., ge=0, le=10_000_000)
    reorder_quantity: int = Field(..., ge=1, le=10_000_000)
    supplier_id: int = Field(..., ge=1, le=2**62)
    lead_time_days: int = Field(..., ge=0, le=365)


@router.put("/reorder-rules/{sku}/{warehouse_id}")
async def put_rule(
    sku: str,
    warehouse_id: str,
    body: RuleBody,
    principal: Principal = Depends(require("reorder.write")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Set the reorder point, quantity, supplier and lead time of a SKU in a warehouse."""
    from flashmart.actors.reordering.state import ReorderRule

    await _own_sku(ctx, principal, sku)
    async with ctx.db.connection() as conn:
        wh = await (
            await conn.execute("SELECT 1 FROM warehouses WHERE id = %s", (warehouse_id,))
        ).fetchone()
    if wh is None:
        raise Refused("invalid", f"no warehouse {warehouse_id}")
    if not await _store(ctx).supplier_exists(body.supplier_id):
        raise Refused("invalid", f"no supplier {body.supplier_id}")
    rule = ReorderRule(sku, warehouse_id, **body.model_dump())
    await _store(ctx).put_rule(rule)
    return {"sku": sku, "warehouse_id": warehouse_id, **body.model_dump()}


@router.get("/reorder-rules")
async def list_rules(
    limit: int = Query(200, ge=1, le=1000),
    principal: Principal = Depends(require("reorder.write")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Rules with the stock available now (a seller sees the rules of their SKUs)."""
    rows = await _store(ctx).rules(await _seller_scope(ctx, principal), limit)
    return {"rules": rows}


@router.get("/purchase-orders")
async def list_purchase_orders(
    status: Literal["open", "received", "cancelled"] | None = None,
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=1_000_000),
    principal: Principal = Depends(require("reorder.write")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    from flashmart.storage.reordering_postgres import po_json

    rows = await _store(ctx).purchase_orders(
        status, await _seller_scope(ctx, principal), limit, offset
    )
    return {"purchase_orders": [po_json(r) for r in rows]}


class ReceiveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantity: int | None = Field(
        None, ge=1, le=10_000_000, description="units received; default: the quantity ordered"
    )


@router.post("/purchase-orders/{po_id}/receive")
async def receive(
    po_id: Annotated[int, Path(ge=1, le=2**62)],
    body: ReceiveBody,
    principal: Principal = Depends(require("purchase_order.receive")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """The goods arrived: the units are added to the warehouse's stock through the inventory engine."""
    from flashmart.actors.reordering.service import ReceiveRefused, engine_receiver
    from flashmart.storage.reordering_postgres import po_json

    store = _store(ctx)
    po = await store.purchase_order(po_id)
    if po is None:
        raise Refused("not_found", f"no purchase order {po_id}")
    await _own_sku(ctx, principal, po["sku"])
    try:
        out = await store.receive(
            po_id,
            body.quantity or po["quantity"],
            engine_receiver(ctx.services["inventory"]),
            principal.user_id,
            dt.datetime.now(dt.UTC),
        )
    except ReceiveRefused as exc:
        raise Refused("conflict", str(exc)) from exc
    if isinstance(out, str):
        raise Refused("conflict", out)
    return po_json(out)

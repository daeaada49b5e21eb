"""Warehouses, stock levels and flash sales (sellers, admins, simulators)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flashmart.actors.inventory.messages import Refusal
from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

router = APIRouter(prefix="/api/v1", tags=["inventory"])

SKU = Path(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WarehouseIn(Body):
    id: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field("", max_length=200)
    lat: float = Field(..., ge=-90, le=90)
    lon: float = Field(..., ge=-180, le=180)


class StockLevel(Body):
    warehouse_id: str = Field(..., min_length=1, max_length=64)
    on_hand: int = Field(..., ge=0, le=1_000_000_000)


class StockIn(Body):
    warehouses: list[StockLevel] = Field(..., min_length=1, max_length=100)

    @model_validator(mode="after")
    def _distinct(self):
        ids = [w.warehouse_id for w in self.warehouses]
        if len(ids) != len(set(ids)):
            raise ValueError("each warehouse may appear once")
        return self


class FlashSaleIn(Body):
    sku: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    sale_price: float = Field(..., ge=0, le=10_000_000)
    starts_at: datetime
    ends_at: datetime
    per_buyer_limit: int = Field(1, ge=1, le=1000)
    guests_allowed: bool = Field(
        False,
        description="guests may buy too (their limit is counted per cart, email and card); "
        "by default only signed-in buyers may",
    )

    @model_validator(mode="after")
    def _window(self):
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


def inventory(ctx: Context):
    client = ctx.services.get("inventory")
    if client is None:
        raise Refused("unavailable", "the inventory engine is not running")
    return client


async def _check_sku_owner(ctx: Context, principal: Principal, sku: str) -> None:
    """Admins may manage any SKU; a seller only the SKUs of their own products."""
    async with ctx.db.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT s.user_id FROM product_variants v JOIN products p ON p.id = v.product_id "
                "JOIN sellers s ON s.id = p.seller_id WHERE v.sku = %s",
                (sku,),
            )
        ).fetchone()
    if row is None:
        if principal.role == "admin":
            return  # admins may stock a SKU before its listing exists (imports, simulations)
        raise Refused("not_found", f"no product variant has SKU {sku}")
    if principal.role != "admin" and row["user_id"] != principal.user_id:
        raise Refused("forbidden", f"SKU {sku} belongs to another seller")


async def _known_warehouses(ctx: Context, ids: list[str]) -> None:
    async with ctx.db.connection() as conn:
        rows = await (
            await conn.execute("SELECT id FROM warehouses WHERE id = ANY(%s)", (ids,))
        ).fetchall()
    missing = sorted(set(ids) - {r["id"] for r in rows})
    if missing:
        raise Refused(
            "invalid", f"unknown warehouse(s): {', '.join(missing)}; create them first", status=422
        )


@router.post("/warehouses", status_code=201)
async def create_warehouse(
    body: WarehouseIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("warehouse.write")),
) -> dict:
    async with ctx.db.connection() as conn:
        row = await (
            await conn.execute(
                "INSERT INTO warehouses (id, name, lat, lon) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING RETURNING id, name, lat, lon",
                (body.id, body.name, body.lat, body.lon),
            )
        ).fetchone()
        if row is None:
            raise Refused("conflict", f"warehouse {body.id} already exists")
        await _audit(conn, principal, "warehouse.create", "warehouse", body.id, body.model_dump())
    return row  # shards load a warehouse's location the first time stock names it


@router.get("/warehouses")
async def list_warehouses(
    ctx: Context = Depends(get_ctx), _: Principal = Depends(require("inventory.read"))
) -> list[dict]:
    async with ctx.db.connection() as conn:
        return await (
            await conn.execute("SELECT id, name, lat, lon FROM warehouses ORDER BY id")
        ).fetchall()


@router.put("/inventory/{sku}")
async def set_stock(
    body: StockIn,
    sku: str = SKU,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("inventory.write")),
) -> dict:
    """Set on_hand per warehouse. On-hand may not go below what is held plus sold (409)."""
    await _check_sku_owner(ctx, principal, sku)
    await _known_warehouses(ctx, [w.warehouse_id for w in body.warehouses])
    client = inventory(ctx)
    for level in body.warehouses:
        result = await client.set_stock(sku, level.warehouse_id, level.on_hand)
        _raise_refusal(result)
    async with ctx.db.connection() as conn:
        await _audit(conn, principal, "inventory.set", "sku", sku, body.model_dump())
    return _view(await client.stock(sku))


@router.get("/inventory/{sku}")
async def get_stock(
    sku: str = SKU,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("inventory.read")),
) -> dict:
    """Admins and support read any SKU's stock; a seller only their own products' SKUs."""
    if principal.role == "seller":
        await _check_sku_owner(ctx, principal, sku)
    return _view(await inventory(ctx).stock(sku))


@router.post("/flash-sales", status_code=201)
async def create_flash_sale(
    body: FlashSaleIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("flash_sale.write")),
) -> dict:
    """Declare a flash sale: the SKU moves to a shard of its own with the per-buyer limit."""
    await _check_sku_owner(ctx, principal, body.sku)
    _raise_refusal(
        await inventory(ctx).declare_hot(
            body.sku, body.per_buyer_limit, window_ends_at=body.ends_at.timestamp()
        )
    )
    async with ctx.db.connection() as conn:
        row = await (
            await conn.execute(
                "INSERT INTO flash_sales (sku, sale_price, starts_at, ends_at, per_buyer_limit, "
                "created_by, guests_allowed) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "RETURNING id, sku, sale_price::float AS sale_price, starts_at, ends_at, "
                "per_buyer_limit, guests_allowed",
                (
                    body.sku,
                    body.sale_price,
                    body.starts_at,
                    body.ends_at,
                    body.per_buyer_limit,
                    principal.user_id,
                    body.guests_allowed,
                ),
            )
        ).fetchone()
        await _audit(
            conn, principal, "flash_sale.create", "sku", body.sku, body.model_dump(mode="json")
        )
        product = await (
            await conn.execute(
                "SELECT product_id FROM product_variants WHERE sku = %s", (body.sku,)
            )
        ).fetchone()
    if product is not None:  # its price now follows the sale's window: replicas read it again
        from flashmart.serve.product_changes import product_changed

        await product_changed(ctx, [int(product["product_id"])])
    return {**row, "hot": True}


def _raise_refusal(result) -> None:
    if isinstance(result, Refusal):
        raise Refused(
            result.reason if result.reason in ("overloaded", "not_found") else "conflict",
            result.message or result.reason,
        )


def _view(stock) -> dict:
    return stock.as_dict()


async def _audit(
    conn, principal: Principal, action: str, object_type: str, object_id: str, details: dict
) -> None:
    from flashmart.storage.audit import audit

    await audit(conn, principal.user_id, action, object_type, object_id, details, None)
    await conn.commit()

"""Catalog and search over HTTP: sellers manage products; everybody searches and reads them.

Writes go to PostgreSQL, then drop the product's cached page from Redis and queue it for the search
index (visible within ~1 s; if the index writer is down, within seconds of its restart: it catches up
from products.updated_at).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flashmart.actors.search.index import SUGGEST_CHARS_MIN
from flashmart.obs import logger
from flashmart.serve import analytics
from flashmart.serve.auth import Principal, optional_principal, require
from flashmart.serve.context import Context, ctx_of, get_ctx
from flashmart.serve.errors import Refused
from flashmart.serve.json import json_response
from flashmart.serve.product_changes import product_changed
from flashmart.serve.ratelimit import api_buckets, rate_limit_reads, take_local
from flashmart.serve.routes.recommendations import count_view, lists_for_page
from flashmart.storage import catalog_postgres as cat
from flashmart.storage import product_cache
from flashmart.storage.audit import audit

log = logger("catalog")
# product pages, search and suggestions take a token from api.ip (and api.user when signed in): from
# the replica's share of the buckets (reads: no Redis round trip), a seller's writes from Redis
router = APIRouter(
    prefix="/api/v1/products", tags=["catalog"], dependencies=[Depends(rate_limit_reads("api"))]
)

SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
CATEGORY_PATTERN = r"^[a-z0-9][a-z0-9-]{0,59}(/[a-z0-9][a-z0-9-]{0,59}){0,5}$"
IMPORT_BYTES_MAX = 5_000_000
IMPORT_ROWS_MAX = 10_000
COMPARE_MAX = 5
SEARCH_PARAMS = {
    "q",
    "category",
    "brand",
    "min_price",
    "max_price",
    "min_rating",
    "in_stock",
    "sort",
    "page",
    "limit",
    "facets",
    "attr",
}
AttrValue = str | int | float | bool
# a seller write has committed before the search index hears of it: it waits this long at most for
# the writer (restarting after a crash, say); the writer catches up from PostgreSQL anyway


def _attributes_ok(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > 50:
        raise ValueError("at most 50 attributes")
    for k, v in value.items():
        if not 1 <= len(k) <= 50:
            raise ValueError("attribute names are 1..50 characters")
        if isinstance(v, str) and len(v) > 200:
            raise ValueError(f"attribute {k!r} is longer than 200 characters")
        # Python's JSON reads NaN and Infinity, which neither JSON nor PostgreSQL's jsonb stores
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"attribute {k!r} must be a finite number, not {v}")
    return value


def _name_ok(v: str | None) -> str | None:
    if v is None:
        return None
    if not v.strip():
        raise ValueError("name must not be blank")
    return v.strip()


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(pattern=SKU_PATTERN)
    attributes: dict[str, AttrValue] = Field(default_factory=dict)
    price_adjustment: Decimal = Field(Decimal(0), ge=-1_000_000, le=1_000_000, decimal_places=2)

    _attrs = field_validator("attributes")(_attributes_ok)


class VariantPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attributes: dict[str, AttrValue] | None = None
    price_adjustment: Decimal | None = Field(None, ge=-1_000_000, le=1_000_000, decimal_places=2)

    _attrs = field_validator("attributes")(lambda v: v if v is None else _attributes_ok(v))

    @model_validator(mode="after")
    def _no_nulls(self) -> VariantPatch:
        # both columns are NOT NULL; leave a field out to keep it
        nulls = [
            k
            for k in ("attributes", "price_adjustment")
            if k in self.model_fields_set and getattr(self, k) is None
        ]
        if nulls:
            raise ValueError(f"these fields cannot be null: {', '.join(nulls)}")
        return self


class ProductIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=300)
    description: str = Field("", max_length=10_000)
    brand: str = Field("", max_length=100)
    category: str | None = Field(
        None, pattern=CATEGORY_PATTERN, description="slug path, e.g. electronics/computers/laptops"
    )
    price: Decimal = Field(ge=0, le=10_000_000, decimal_places=2)
    currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    weight_g: int | None = Field(None, ge=0, le=10_000_000)
    attributes: dict[str, AttrValue] = Field(default_factory=dict)
    images: list[Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^https?://")]] = (
        Field(default_factory=list, max_length=20)
    )
    variants: list[VariantIn] = Field(default_factory=list, max_length=100)
    in_stock: bool = Field(True, description="stock status until the inventory engine reports one")
    seller_id: int | None = Field(None, description="admins only: list the product for this seller")

    _attrs = field_validator("attributes")(_attributes_ok)
    _name = field_validator("name")(_name_ok)

    @model_validator(mode="after")
    def _variant_prices(self) -> ProductIn:
        negative = [v.sku for v in self.variants if self.price + v.price_adjustment < 0]
        if negative:
            raise ValueError(
                f"a variant's price (price + price_adjustment) cannot be negative: {', '.join(negative)}"
            )
        return self


class ProductPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=300)
    description: str | None = Field(None, max_length=10_000)
    brand: str | None = Field(None, max_length=100)
    category: str | None = Field(None, pattern=CATEGORY_PATTERN)
    price: Decimal | None = Field(None, ge=0, le=10_000_000, decimal_places=2)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    weight_g: int | None = Field(None, ge=0, le=10_000_000)
    attributes: dict[str, AttrValue] | None = None
    images: (
        list[Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^https?://")]] | None
    ) = Field(None, max_length=20)
    in_stock: bool | None = None

    _attrs = field_validator("attributes")(lambda v: v if v is None else _attributes_ok(v))
    _name = field_validator("name")(_name_ok)  # stripped like POST's


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    price: Decimal = Field(ge=0, le=10_000_000, decimal_places=2)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")


# --- helpers --------------------------------------------------------------------------------------


async def _own_product(ctx: Context, conn, principal: Principal, product_id: int) -> dict:
    owner = await cat.seller_of_product(conn, product_id)
    if owner is None:
        raise Refused("not_found", f"product {product_id} does not exist")
    if principal.role != "admin" and owner["user_id"] != principal.user_id:
        raise Refused("forbidden", f"product {product_id} belongs to another seller")
    return owner


async def _seller_id(ctx: Context, conn, principal: Principal, requested: int | None) -> int:
    if requested is not None:
        if principal.role != "admin":
            raise Refused("forbidden", "only admins may list products for another seller")
        row = await (
            await conn.execute("SELECT id FROM sellers WHERE id = %s", (requested,))
        ).fetchone()
        if row is None:
            raise Refused("invalid", f"seller {requested} does not exist")
        return requested
    seller = await cat.seller_for_user(
        conn, principal.user_id, principal.email.split("@")[0] or "seller"
    )
    return seller["id"]


@contextmanager
def _sku_conflicts() -> Iterator[None]:
    """A SKU inserted concurrently after our sku_taken check: 409 like the check's, not a 500 (the
    failed transaction is rolled back by whoever owns it)."""
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        detail = (exc.diag.message_detail or "") if exc.diag else ""
        sku = (
            detail.split("=(", 1)[1].rsplit(") already", 1)[0]
            if "=(" in detail
            else "one of the SKUs"
        )
        raise Refused("conflict", f"SKU already exists: {sku}") from None


async def _check_variant_prices(conn, product_id: int) -> None:
    """After a price or adjustment change, in its transaction (which holds the product row's lock, so
    a concurrent change of the other operand waits and then checks the combined result)."""
    negative = await cat.negative_variant_prices(conn, product_id)
    if negative:
        shown = ", ".join(f"{v['sku']} ({v['price']:.2f})" for v in negative[:5])
        raise Refused(
            "invalid", f"a variant's price (price + price_adjustment) cannot be negative: {shown}"
        )


def _jsonable(changes: dict) -> dict:
    return json.loads(json.dumps(changes, default=str))


def _duplicate_skus(variants: list[VariantIn]) -> list[str]:
    seen, dup = set(), []
    for v in variants:
        if v.sku in seen:
            dup.append(v.sku)
        seen.add(v.sku)
    return dup


async def _create(ctx: Context, conn, principal: Principal, body: ProductIn) -> int:
    if dup := _duplicate_skus(body.variants):
        raise Refused("invalid", f"SKU listed twice: {', '.join(dup)}")
    if taken := await cat.sku_taken(conn, [v.sku for v in body.variants]):
        raise Refused("conflict", f"SKU already exists: {', '.join(taken)}")
    seller_id = await _seller_id(ctx, conn, principal, body.seller_id)
    with _sku_conflicts():
        pid = await cat.create_product(conn, seller_id, body.model_dump())
    await _audit(
        conn,
        principal,
        "product.create",
        pid,
        {"price": str(body.price), "skus": [v.sku for v in body.variants]},
    )
    return pid


async def _audit(conn, principal: Principal, action: str, product_id: int, details: dict) -> None:
    """In the transaction of the change: listings, prices and variants are what buyers pay for."""
    await audit(conn, principal.user_id, action, "product", product_id, details)


# --- seller writes --------------------------------------------------------------------------------


@router.post("", status_code=201)
async def create_product(
    body: ProductIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.write")),
) -> dict:
    """List a product (with its variants) for the calling seller."""
    async with ctx.db.connection() as conn:
        pid = await _create(ctx, conn, principal, body)
    await product_changed(ctx, [pid])
    return await _product_page(ctx, pid)


@router.patch("/{product_id}")
async def update_product(
    product_id: int,
    body: ProductPatch,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.write")),
) -> dict:
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise Refused("invalid", "nothing to change: send at least one field")
    nulls = [
        k
        for k in ("name", "price", "currency", "description", "brand", "attributes", "in_stock")
        if k in changes and changes[k] is None
    ]
    if nulls:
        raise Refused("invalid", f"these fields cannot be null: {', '.join(nulls)}")
    async with ctx.db.connection() as conn:
        await _own_product(ctx, conn, principal, product_id)
        await cat.update_product(conn, product_id, changes)
        if "price" in changes:
            await _check_variant_prices(conn, product_id)
        await _audit(conn, principal, "product.update", product_id, _jsonable(changes))
    await product_changed(ctx, [product_id])
    return await _product_page(ctx, product_id)


@router.post("/{product_id}/price")
async def change_price(
    product_id: int,
    body: PriceIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.write")),
) -> dict:
    async with ctx.db.connection() as conn:
        await _own_product(ctx, conn, principal, product_id)
        await cat.update_product(conn, product_id, body.model_dump(exclude_none=True))
        await _check_variant_prices(conn, product_id)
        await _audit(
            conn,
            principal,
            "product.price",
            product_id,
            _jsonable(body.model_dump(exclude_none=True)),
        )
    await product_changed(ctx, [product_id])
    return await _product_page(ctx, product_id)


@router.post("/{product_id}/archive")
async def archive_product(
    product_id: int,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.write")),
) -> dict:
    """Take the product off sale and out of search; its page stays readable."""
    async with ctx.db.connection() as conn:
        await _own_product(ctx, conn, principal, product_id)
        await cat.set_status(conn, product_id, "archived")
        await _audit(conn, principal, "product.archive", product_id, {})
    await product_changed(ctx, [product_id])
    return {"product_id": product_id, "status": "archived"}


@router.post("/{product_id}/unarchive")
async def unarchive_product(
    product_id: int,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.write")),
) -> dict:
    async with ctx.db.connection() as conn:
        await _own_product(ctx, conn, principal, product_id)
        await cat.set_status(conn, product_id, "active")
        await _audit(conn, principal, "product.unarchive", product_id, {})
    await product_changed(ctx, [product_id])
    return {"product_id": product_id, "status": "active"}


@router.post("/{product_id}/variants", status_code=201)
async def add_variant(
    product_id: int,
    body: VariantIn,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.write")),
) -> dict:
    async with ctx.db.connection() as conn:
        await _own_product(ctx, conn, principal, product_id)
        if await cat.sku_taken(conn, [body.sku]):
            raise Refused("conflict", f"SKU already exists: {body.sku}")
        await cat.touch(conn, product_id)  # first: the product row's lock orders price changes
        with _sku_conflicts():
            await cat.add_variant(conn, product_id, body.model_dump())
        await _check_variant_prices(conn, product_id)
        await _audit(
            conn, principal, "product.variant_add", product_id, _jsonable(body.model_dump())
        )
    await product_changed(ctx, [product_id])
    return await _product_page(ctx, product_id)


@router.patch("/{product_id}/variants/{variant_id}")
async def update_variant(
    product_id: int,
    variant_id: int,
    body: VariantPatch,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.write")),
) -> dict:
    async with ctx.db.connection() as conn:
        await _own_product(ctx, conn, principal, product_id)
        changes = body.model_dump(exclude_unset=True)
        if not await cat.update_variant(conn, product_id, variant_id, changes):
            raise Refused("not_found", f"product {product_id} has no variant {variant_id}")
        if changes:
            await _check_variant_prices(conn, product_id)
            await _audit(
                conn,
                principal,
                "product.variant_update",
                product_id,
                {"variant_id": variant_id, **_jsonable(changes)},
            )
    if changes:  # (an empty patch of an existing variant changes nothing: just the page)
        await product_changed(ctx, [product_id])
    return await _product_page(ctx, product_id)


@router.delete("/{product_id}/variants/{variant_id}")
async def delete_variant(
    product_id: int,
    variant_id: int,
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.write")),
) -> dict:
    async with ctx.db.connection() as conn:
        await _own_product(ctx, conn, principal, product_id)
        if not await cat.delete_variant(conn, product_id, variant_id):
            raise Refused("not_found", f"product {product_id} has no variant {variant_id}")
        await _audit(
            conn, principal, "product.variant_delete", product_id, {"variant_id": variant_id}
        )
    await product_changed(ctx, [product_id])
    return await _product_page(ctx, product_id)


# --- bulk import ----------------------------------------------------------------------------------


def _csv_rows(text: str) -> list[dict]:
    """CSV columns: name, description, brand, category, price, currency, weight_g, in_stock,
    images ('|' separated), attributes (JSON object), sku (one variant), variants (JSON list)."""
    rows = []
    for raw in csv.DictReader(io.StringIO(text)):
        row: dict[str, Any] = {
            k.strip(): v for k, v in raw.items() if k is not None and v not in (None, "")
        }
        if None in raw:
            row["__extra__"] = raw[None]
        for key in ("attributes", "variants"):
            if key in row:
                try:
                    row[key] = json.loads(row[key])
                except json.JSONDecodeError:
                    row[key] = f"not JSON: {row[key][:40]}"
        if "images" in row:
            row["images"] = [u for u in row["images"].split("|") if u]
        if "in_stock" in row:
            row["in_stock"] = row["in_stock"].strip().lower() in ("1", "true", "yes", "y")
        if "sku" in row and isinstance(row.get("variants", []), list):
            row["variants"] = [*row.get("variants", []), {"sku": row.pop("sku")}]
        rows.append(row)
    return rows


def _jsonl_rows(text: str) -> list[Any]:
    rows: list[Any] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            rows.append(f"not JSON ({exc.msg})")
    return rows


def _reason(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])


@router.post("/import")
async def import_products(
    request: Request,
    format: str | None = Query(None, pattern="^(csv|jsonl)$"),
    ctx: Context = Depends(get_ctx),
    principal: Principal = Depends(require("product.import")),
) -> dict:
    """Bulk listing from CSV or JSON lines (Content-Type text/csv or application/x-ndjson, or
    ?format=). Each row stands alone: good rows are created, bad rows are reported with a reason."""
    kind = format or ("csv" if "csv" in request.headers.get("content-type", "") else "jsonl")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > IMPORT_BYTES_MAX:
            raise Refused(
                "too_large", f"import files are limited to {IMPORT_BYTES_MAX // 1_000_000} MB"
            )
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Refused("invalid", "the file is not UTF-8 text") from None
    try:
        rows = _csv_rows(text) if kind == "csv" else _jsonl_rows(text)
    except csv.Error as exc:
        raise Refused("invalid", f"unreadable CSV: {exc}") from None
    if not rows:
        raise Refused("invalid", "the file has no rows")
    if len(rows) > IMPORT_ROWS_MAX:
        raise Refused("too_large", f"at most {IMPORT_ROWS_MAX} rows per import")
    report, created = [], []
    async with ctx.db.connection() as conn:
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                report.append(
                    {
                        "row": number,
                        "status": "rejected",
                        "reason": str(row)
                        if isinstance(row, str)
                        else "a row must be a JSON object",
                    }
                )
                continue
            if "__extra__" in row:
                report.append(
                    {"row": number, "status": "rejected", "reason": "more values than columns"}
                )
                continue
            try:
                product = ProductIn.model_validate(row)
            except ValidationError as exc:
                report.append({"row": number, "status": "rejected", "reason": _reason(exc)})
                continue
            try:
                async with conn.transaction():
                    pid = await _create(ctx, conn, principal, product)
            except Refused as exc:
                report.append({"row": number, "status": "rejected", "reason": exc.message})
                continue
            created.append(pid)
            report.append({"row": number, "status": "created", "product_id": pid})
        await audit(
            conn,
            principal.user_id,
            "product.import",
            "import",
            None,
            {"format": kind, "rows": len(rows), "created": created[:1000]},
        )
    await product_changed(ctx, created)
    return {"created": len(created), "rejected": len(rows) - len(created), "rows": report}


# --- public reads ---------------------------------------------------------------------------------


def _search_service(ctx: Context):
    search = ctx.services.get("search")
    if search is None:
        raise Refused("unavailable", "search is not running")
    return search


class SearchParams(BaseModel):
    """The search query string (validated by hand in the route, see below)."""

    model_config = ConfigDict(extra="forbid")
    q: str | None = Field(None, max_length=200, description="keywords; typos are tolerated")
    category: str | None = Field(
        None, max_length=400, description="category slug path; includes its subtree"
    )
    brand: list[Annotated[str, Field(max_length=100)]] = Field(
        default_factory=list, max_length=20, description="repeat or comma-separate"
    )
    min_price: float | None = Field(None, ge=0, le=1e9)
    max_price: float | None = Field(None, ge=0, le=1e9)
    min_rating: float | None = Field(None, ge=0, le=5)
    in_stock: bool | None = None
    sort: str = Field("relevance", description="relevance, price_asc, price_desc, rating, newest")
    page: int = Field(1, ge=1, le=500)
    limit: int = Field(20, ge=1, le=100)
    facets: bool = Field(
        True, description="brand, category, price-range and attribute counts (false: cheaper)"
    )
    attr: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list,
        max_length=20,
        description="variant attribute filter name:value, e.g. size:M or color:black,navy (repeat)",
    )


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    """OpenAPI parameters for a query-string model, so /docs shows what the route validates itself."""
    props = model.model_json_schema()["properties"]
    out = []
    for name, schema in props.items():
        param = {"name": name, "in": "query", "required": False, "schema": schema}
        if "description" in schema:
            param["description"] = schema["description"]
        if schema.get("type") == "array":
            param.update(style="form", explode=True)
        out.append(param)
    return out


def _search_params(request: Request) -> SearchParams:
    qp = request.query_params
    unknown = set(qp) - SEARCH_PARAMS
    if unknown:
        raise Refused(
            "invalid",
            f"unknown parameter(s): {', '.join(sorted(unknown))}; "
            f"use {', '.join(sorted(SEARCH_PARAMS))}",
        )
    data: dict[str, Any] = {k: qp[k] for k in qp if k not in ("brand", "attr")}
    for listed in ("brand", "attr"):
        if listed in qp:
            data[listed] = qp.getlist(listed)
    try:
        return SearchParams.model_validate(data)
    except ValidationError as exc:
        raise Refused("invalid", _reason(exc)) from None


def _attribute_filters(items: list[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """["size:M", "color:black,navy", "size:L"] -> (("size", ("M", "L")), ("color", ("black",
    "navy"))): values of one attribute are alternatives, attributes are all required."""
    grouped: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition(":")
        key = " ".join(key.lower().split())
        picked = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not picked:
            raise Refused("invalid", f"attr must be name:value (e.g. size:M), not {item[:40]!r}")
        grouped.setdefault(key, [])
        grouped[key] += [v for v in picked if v not in grouped[key]]
    return tuple((k, tuple(v)) for k, v in grouped.items())


@router.get("/search", openapi_extra={"parameters": _query_parameters(SearchParams)})
async def search_products(request: Request):
    """Search: results, total_results, page, total_pages, facets (brands, categories,
    price_ranges, each value with its count; attributes: {name: [values with counts]}), did_you_mean
    (a respelling that finds more, when a query finds little). A page past the end is empty.

    The hot path of the shop, so the route does its own parsing: a page already rendered for the
    same query string (since the index last changed) is sent without validating anything again;
    FastAPI's per-parameter validation and a sync dependency's thread hop cost more than the search."""
    search = _search_service(request.app.state.ctx)
    raw = request.scope["query_string"]
    page = search.cached_page(raw)
    if page is not None:
        analytics.searched(request.app.state.ctx, raw, page)
        return Response(page, media_type="application/json")
    p = _search_params(request)
    if p.q is None and not p.category and not p.brand:
        raise Refused("invalid", "give q (keywords), or browse with category or brand")
    brands = tuple(b.strip() for item in p.brand for b in item.split(",") if b.strip())
    if len(brands) > 20:
        raise Refused("invalid", "at most 20 brands")
    attributes = _attribute_filters(p.attr)
    out = await search.search_json(
        {
            "q": p.q,
            "category": p.category.strip("/") if p.category else None,
            "brands": brands,
            "min_price": p.min_price,
            "max_price": p.max_price,
            "min_rating": p.min_rating,
            "in_stock": p.in_stock,
            "attributes": attributes,
            "sort": p.sort,
            "page": p.page,
            "limit": p.limit,
            "facets": p.facets,
        },
        cache_key=raw,
    )
    if isinstance(out, dict):
        raise Refused(out["error"], out["message"])
    analytics.searched(request.app.state.ctx, raw, out)
    return Response(out, media_type="application/json")


@router.get("/suggest")
async def suggest(
    q: str = Query(..., max_length=100),
    limit: int = Query(8, ge=1, le=20),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Autocomplete while typing: matching product names (most popular first) and word completions.
    The word being typed needs `min_chars` characters; a shorter one gets empty lists (not an error:
    a widget asks on every keystroke, and one letter matches most of the catalog)."""
    out = await _search_service(ctx).suggest(q, limit)
    if "error" in out:
        raise Refused(out["error"], out["message"])
    return {"q": q, **out, "min_chars": SUGGEST_CHARS_MIN}


@router.get("/compare")
async def compare(
    ids: str = Query(..., max_length=200, description="2 to 5 product ids, comma separated"),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """An attribute-by-attribute table: one row per attribute, one column per product."""
    try:
        wanted = list(dict.fromkeys(int(x) for x in ids.split(",") if x.strip()))
    except ValueError:
        raise Refused("invalid", "ids must be comma-separated integers") from None
    if not 2 <= len(wanted) <= COMPARE_MAX:
        raise Refused("invalid", f"compare 2 to {COMPARE_MAX} distinct products")
    async with ctx.db.connection() as conn:
        rows = {r["id"]: r for r in await cat.products_for_compare(conn, wanted)}
    missing = [i for i in wanted if i not in rows]
    if missing:
        raise Refused("not_found", f"no active product with id {', '.join(map(str, missing))}")
    products = [rows[i] for i in wanted]
    base = [
        ("name", "name"),
        ("brand", "brand"),
        ("category", "category"),
        ("price", "price"),
        ("currency", "currency"),
        ("rating", "rating"),
        ("review_count", "review_count"),
        ("weight_g", "weight_g"),
        ("in_stock", "in_stock"),
        ("seller", "seller_name"),
    ]
    table = [{"attribute": label, "values": [p[key] for p in products]} for label, key in base]
    spec_keys = sorted({k for p in products for k in p["attributes"]})
    table += [
        {"attribute": k, "values": [p["attributes"].get(k) for p in products]} for k in spec_keys
    ]
    variant_keys = sorted({k for p in products for v in p["variant_attributes"] for k in v})
    table += [
        {
            "attribute": f"variants.{k}",
            "values": [
                sorted({str(v[k]) for v in p["variant_attributes"] if k in v}) for p in products
            ],
        }
        for k in variant_keys
    ]
    for row in table:
        row["differs"] = (
            len({json.dumps(v, sort_keys=True, default=str) for v in row["values"]}) > 1
        )
    return {"product_ids": wanted, "attributes": table}


def _stock(ctx: Context, product: dict) -> dict:
    """Stock status per variant from the stock feed this replica already follows (serve/sold_out.py,
    exact for sold out: a SKU is out only while its last published figure is 0), without asking the
    inventory engine. `variants` maps each SKU the engine has stocked to whether a unit is available;
    a product none of whose SKUs the engine has stocked keeps the catalog's flag. (The search writer
    follows the same feed and keeps products.in_stock, so the page needs no write of its own.)
    A digital variant (a content item sold once) holds no stock and is always available."""
    board = ctx.services.get("sold_out")
    variants = product["variants"][:20]
    known = {v["sku"]: True for v in variants if v.get("digital")}
    known |= {
        v["sku"]: not board.is_sold_out(v["sku"])
        for v in variants
        if board and not v.get("digital") and board.knows(v["sku"])
    }
    if not known:
        return {"in_stock": bool(product["in_stock"]), "source": "catalog", "variants": {}}
    return {"in_stock": any(known.values()), "source": "inventory", "variants": known}


async def _product_page(ctx: Context, product_id: int) -> dict:
    """The page with its stock status: from the replica's memory when it holds the page
    (serve/product_pages.py), else from Redis or PostgreSQL (and then kept in memory)."""
    pages = ctx.services.get("pages")
    page = pages.get(product_id) if pages is not None else None
    if page is None:
        page = await _stored_page(ctx, product_id, pages)
    stock = _stock(ctx, page)
    return {**page, "in_stock": stock["in_stock"], "stock": stock}


async def _stored_page(ctx: Context, product_id: int, pages) -> dict:
    token = pages.loading() if pages is not None else 0  # before the Redis read
    page, version = await product_cache.read(ctx.redis, product_id)
    if page is None:
        async with ctx.db.connection() as conn:
            product = await cat.get_product(conn, product_id)
        if product is None:
            raise Refused("not_found", f"product {product_id} does not exist")
        page = {
            "product_id": product["id"],
            "name": product["name"],
            "description": product["description"],
            "brand": product["brand"],
            "category": product["category"],
            "status": product["status"],
            "price": product["price"],
            "currency": product["currency"],
            "weight_g": product["weight_g"],
            "attributes": product["attributes"],
            "images": product["images"],
            "image_renditions": product["image_renditions"],
            "thumbnail": (
                product["image_renditions"][0]["thumb"] if product["image_renditions"] else None
            ),
            "variants": [
                {
                    "variant_id": v["id"],
                    "sku": v["sku"],
                    "attributes": v["attributes"],
                    "price_adjustment": v["price_adjustment"],
                    "price": round(product["price"] + v["price_adjustment"], 2),
                    "digital": bool(v.get("digital")),
                }
                for v in product["variants"]
            ],
            "seller": {
                "seller_id": product["seller_id"],
                "name": product["seller_name"],
                "rating": product["seller_rating"],
            },
            "rating": {"average": product["rating"], "count": product["review_count"]},
            "in_stock": product["in_stock"],
            "created_at": product["created_at"].isoformat(),
            "updated_at": product["updated_at"].isoformat(),
        }
        await product_cache.store(
            ctx.redis, product_id, page, version, ctx.settings.product_cache_ttl_s
        )
        if pages is not None:  # kept as Redis holds it (and serves it to the next reader)
            pages.keep(product_id, json.loads(json.dumps(page, default=str)), token)
    elif pages is not None:
        pages.keep(product_id, page, token)
    return page


async def get_product(
    product_id: int,
    ctx: Context = Depends(get_ctx),
    principal: Principal | None = Depends(optional_principal),
) -> dict:
    """The product page: variants, seller, price, stock status, rating summary (cached in the
    replica's memory and in Redis; stock status from the inventory engine's stock feed: no engine
    call), and the recommendation lists this replica holds for it (also bought, similar; no I/O on
    the request)."""
    return await _product_answer(ctx, product_id, principal)


async def _product_answer(ctx: Context, product_id: int, principal: Principal | None) -> Response:
    if not 1 <= product_id <= 2**63 - 1:
        raise Refused("not_found", f"product {product_id} does not exist")
    page = await _product_page(ctx, product_id)
    analytics.product_viewed(ctx, product_id)
    count_view(ctx, product_id, principal)
    return json_response({**page, "recommendations": lists_for_page(ctx, product_id)})


ID_DIGITS_MAX = 19  # a bigint's; longer ids are the full route's to refuse


class AnonymousPageFirst(APIRoute):
    """The product page's route: an anonymous visitor's page (no Authorization header, a product id
    of digits) is answered without FastAPI's dependency resolution and parameter validation, which
    cost as much as the page itself: the same rate limit (the replica's share of api.ip), the same
    page. A signed-in visitor, or any other id, takes the full route."""

    def get_route_handler(self):
        full = super().get_route_handler()

        async def handler(request: Request) -> Response:
            raw = request.path_params["product_id"]
            if (
                "authorization" in request.headers
                or not (raw.isascii() and raw.isdigit())
                or len(raw) > ID_DIGITS_MAX
            ):
                return await full(request)
            ctx = ctx_of(request)
            take_local(ctx, api_buckets(request, None))
            return await _product_answer(ctx, int(raw), None)

        return handler


router.add_api_route(
    "/{product_id}", get_product, methods=["GET"], route_class_override=AnonymousPageFirst
)


# Starlette tries a router's routes in order and the reads (search, product pages) are the shop's hot
# path: put them first, in their order (compare before /{product_id}), instead of behind the seller
# writes (~20 us of path matching per request).
router.routes.sort(key=lambda route: "GET" not in (getattr(route, "methods", None) or ()))

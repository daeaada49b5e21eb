"""Reports: sales and GMV by day, product, category and seller; the conversion funnel; searches
(top, and those that found nothing); refunds and returns; each flash sale's timeline. Admins see the
whole shop (or one seller with ?seller_id=), a seller their own products only. `format=csv` gives
the rows as CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from flashmart.serve.auth import Principal, require
from flashmart.serve.context import Context, get_ctx
from flashmart.serve.errors import Refused

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])
# format=csv answers the rows as CSV: documented beside the JSON answer
CSV_RESPONSE = {200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}
WINDOW_DAYS_MAX = 366
Format = Literal["json", "csv"]


def _store(ctx: Context):
    from flashmart.storage.analytics_postgres import PostgresAnalyticsStore

    return PostgresAnalyticsStore(ctx.db)


def _window(
    since: dt.datetime | None, until: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    until = until or dt.datetime.now(dt.UTC)
    since = since or until - dt.timedelta(days=30)
    for name, t in (("from", since), ("to", until)):
        if t.tzinfo is None:
            raise Refused("invalid", f"{name} needs a time zone, e.g. 2026-03-01T00:00:00Z")
    if since >= until:
        raise Refused("invalid", "from must be before to")
    if until - since > dt.timedelta(days=WINDOW_DAYS_MAX):
        raise Refused("invalid", f"a report covers at most {WINDOW_DAYS_MAX} days")
    return since, until


async def _scope(ctx: Context, principal: Principal, seller_id: int | None) -> int | None:
    """Whose products: an admin's choice (None = all), always the seller's own for a seller."""
    if principal.role == "admin":
        return seller_id
    from flashmart.storage.sellers_postgres import seller_id_of_user

    own = await seller_id_of_user(ctx.db, principal.user_id)
    if own is None:
        raise Refused("forbidden", "your account is not linked to a seller in the catalog")
    if seller_id is not None and seller_id != own:
        raise Refused("forbidden", "a seller sees reports of their own products only")
    return own


def _jsonable(v):
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)  # Decimal: exact, as text


def _rows_out(rows: list[dict]) -> list[dict]:
    return [{k: _jsonable(v) for k, v in r.items()} for r in rows]


def _csv(rows: list[dict], filename: str) -> Response:
    out = io.StringIO()
    if rows:
        w = csv.DictWriter(out, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(_rows_out(rows))
    return Response(
        out.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'},
    )


@router.get("/sales", responses=CSV_RESPONSE)
async def sales(
    by: Literal["day", "product", "category", "seller"] = "day",
    since: dt.datetime | None = Query(None, alias="from"),
    until: dt.datetime | None = Query(None, alias="to"),
    seller_id: int | None = Query(None, ge=1, le=2**62),
    format: Format = "json",
    principal: Principal = Depends(require("report.read")),
    ctx: Context = Depends(get_ctx),
):
    """Orders, units and GMV (goods at their sold price) of paid orders, grouped by `by`."""
    since, until = _window(since, until)
    scope = await _scope(ctx, principal, seller_id)
    rows = await _store(ctx).sales(by, since, until, scope)
    if format == "csv":
        return _csv(rows, f"sales-by-{by}")
    return {"by": by, "from": since.isoformat(), "to": until.isoformat(), "rows": _rows_out(rows)}


@router.get("/funnel", responses=CSV_RESPONSE)
async def funnel(
    since: dt.datetime | None = Query(None, alias="from"),
    until: dt.datetime | None = Query(None, alias="to"),
    seller_id: int | None = Query(None, ge=1, le=2**62),
    format: Format = "json",
    principal: Principal = Depends(require("report.read")),
    ctx: Context = Depends(get_ctx),
):
    """Product views -> add to cart -> checkout started -> paid orders, and each step's rate."""
    since, until = _window(since, until)
    scope = await _scope(ctx, principal, seller_id)
    steps = await _store(ctx).funnel(since, until, scope)
    names = list(steps)
    rows = [
        {
            "step": name,
            "count": steps[name],
            "rate_from_previous": None
            if i == 0 or not steps[names[i - 1]] or steps[name] is None
            else round(steps[name] / steps[names[i - 1]], 4),
        }
        for i, name in enumerate(names)
    ]
    if format == "csv":
        return _csv(rows, "funnel")
    return {"from": since.isoformat(), "to": until.isoformat(), "steps": rows}


@router.get("/searches", responses=CSV_RESPONSE)
async def searches(
    since: dt.datetime | None = Query(None, alias="from"),
    until: dt.datetime | None = Query(None, alias="to"),
    limit: int = Query(50, ge=1, le=1000),
    format: Format = "json",
    principal: Principal = Depends(require("report.admin")),
    ctx: Context = Depends(get_ctx),
):
    """The most frequent searches, and the most frequent that found nothing."""
    since, until = _window(since, until)
    out = await _store(ctx).searches(since, until, limit)
    if format == "csv":
        rows = [{"list": "top", **r} for r in out["top"]]
        rows += [{"list": "no_results", **r, "avg_results": 0} for r in out["no_results"]]
        return _csv(rows, "searches")
    return {k: _rows_out(v) for k, v in out.items()}


@router.get("/refunds", responses=CSV_RESPONSE)
async def refunds(
    since: dt.datetime | None = Query(None, alias="from"),
    until: dt.datetime | None = Query(None, alias="to"),
    seller_id: int | None = Query(None, ge=1, le=2**62),
    format: Format = "json",
    principal: Principal = Depends(require("report.read")),
    ctx: Context = Depends(get_ctx),
):
    """Refunds by day (count, amount) and returns by status."""
    since, until = _window(since, until)
    scope = await _scope(ctx, principal, seller_id)
    out = await _store(ctx).refunds(since, until, scope)
    if format == "csv":
        return _csv(out["refunds_by_day"], "refunds")
    return {k: _rows_out(v) for k, v in out.items()}


@router.get("/flash-sales/{sale_id}", responses=CSV_RESPONSE)
async def flash_sale_timeline(
    sale_id: Annotated[int, Path(ge=1, le=2**62)],
    format: Format = "json",
    principal: Principal = Depends(require("report.read")),
    ctx: Context = Depends(get_ctx),
):
    """A flash sale minute by minute: arrivals (add-to-cart attempts), reservations, refusals by
    reason, when it sold out, and how many arriving buyers ordered."""
    out = await _store(ctx).flash_sale(sale_id)
    if out is None:
        raise Refused("not_found", f"no flash sale {sale_id}")
    if principal.role != "admin":
        scope = await _scope(ctx, principal, None)
        if out["sale"]["seller_id"] != scope:
            raise Refused("not_found", f"no flash sale {sale_id} of yours")
    if format == "csv":
        return _csv(out["by_minute"], f"flash-sale-{sale_id}")
    return {
        **{
            k: _jsonable(v)
            for k, v in out.items()
            if k not in ("sale", "refusals_by_reason", "by_minute")
        },
        "sale": {k: _jsonable(v) for k, v in out["sale"].items()},
        "refusals_by_reason": _rows_out(out["refusals_by_reason"]),
        "by_minute": _rows_out(out["by_minute"]),
    }

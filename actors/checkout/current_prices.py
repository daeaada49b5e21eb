"""What a cart's lines cost now, for the checkout: the catalog's price (a running flash sale's price
within its window), a member's price for a member, nothing for a product no longer for sale. One
statement on the saga's pool, so the checkout charges the price that holds, not the cart's."""

from __future__ import annotations

import datetime as dt


async def current_prices(
    db,
    skus: list[str],
    user_id: int | None,
    at: dt.datetime,
    currency: str,
    expected: dict[str, str] | None = None,
) -> tuple[dict[str, str | None], dict[str, tuple[int, int]]]:
    """SKU -> its price now for this buyer; None when it is not for sale in this cart (archived,
    unknown, or sold in another currency than the cart's). With it, SKU -> (sale id, per-buyer
    limit) for the SKUs in a flash sale (its limit is also counted by email and card).

    A member's price comes from this process's cache of members, which may not know yet a
    membership the Serve replica already priced the cart with: when a member's price differs from
    `expected` (the cart's), the cache is read again once before the price counts as changed."""
    from decimal import Decimal

    from flashmart.actors.membership.benefits import cache_for, member_priced
    from flashmart.storage.catalog_postgres import prices_at

    async with db.connection() as conn:
        rows = await prices_at(conn, skus, at)
    sales = {sku: row["sale"] for sku, row in rows.items() if row["sale"] is not None}

    async def priced() -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for sku in skus:
            row = rows.get(sku)
            if row is None or row["price"] is None or row["currency"].strip() != currency:
                out[sku] = None
            elif user_id is None:
                out[sku] = row["price"]
            else:
                member = await member_priced(db, user_id, {"sku": sku, "price": row["price"]})
                out[sku] = str(member["price"])
        return out

    out = await priced()
    if user_id is not None and expected:
        moved = [s for s in skus if out[s] is not None and Decimal(out[s]) != Decimal(expected[s])]
        if moved:
            await cache_for(db).refresh()
            out = await priced()
    return out, sales

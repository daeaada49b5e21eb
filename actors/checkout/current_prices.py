"""What a cart's lines cost now, for the checkout: the catalog's price (a running flash sale's price
within its window), a member's price for a member, nothing for a product no longer for sale. One
statement on the saga's pool, so the checkout charges the price that holds, not the cart's."""

from __future__ import annotations

import datetime as dt


async def current_prices(
    db, skus: list[str], user_id: int | None, at: dt.datetime, currency: str
) -> tuple[dict[str, str | None], dict[str, tuple[int, int]]]:
    """SKU -> its price now for this buyer; None when it is not for sale in this cart (archived,
    unknown, or sold in another currency than the cart's). With it, SKU -> (sale id, per-buyer
    limit) for the SKUs in a flash sale (its limit is also counted by email and card)."""
    from flashmart.actors.membership.benefits import member_priced
    from flashmart.storage.catalog_postgres import prices_at

    async with db.connection() as conn:
        rows = await prices_at(conn, skus, at)
    out: dict[str, str | None] = {}
    sales = {sku: row["sale"] for sku, row in rows.items() if row["sale"] is not None}
    for sku in skus:
        row = rows.get(sku)
        if row is None or row["price"] is None or row["currency"].strip() != currency:
            out[sku] = None
        elif user_id is None:
            out[sku] = row["price"]
        else:
            out[sku] = str(
                (await member_priced(db, user_id, {"sku": sku, "price": row["price"]}))["price"]
            )
    return out, sales

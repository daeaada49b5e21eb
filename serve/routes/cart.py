"""Cart and wishlist endpoints. A logged-in customer's cart is keyed by their id; a guest
sends the id from the first answer back in the X-Cart-Id header, and merges it on login."""

from __future__ import annotations

import datetime as dt
import os
import re

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flashmart.actors.carts.actor import guest_buyer_id, user_cart_id
from flashmart.serve import analytics
from flashmart.serve.auth import (
    Principal,
    follow_revocations,
    optional_principal,
    principal_from_token,
    require,
)
from flashmart.serve.context import Context, ctx_of, get_ctx
from flashmart.serve.errors import Refused, refusal_response
from flashmart.serve.json import json_response
from flashmart.serve.ratelimit import (
    api_buckets,
    buckets_of,
    rate_limit,
    rate_limited,
    take,
    take_local,
)
from flashmart.storage.rate_buckets import bucket_call

# every cart call takes a token from the caller's address bucket (api.ip) and, signed in, their own
# (api.user): no one client adds, polls or holds at will. Add-to-cart (add_router) takes it inside its
# cart write (storage/cart_redis.py): the flash sale's hot call makes no round trip for its limit.
router = APIRouter(prefix="/api/v1", tags=["cart"], dependencies=[Depends(rate_limit("api"))])


class PlainAddFirst(APIRoute):
    """Add-to-cart's route: a plain add (a JSON body of `sku` and `quantity` only, a guest or a valid
    token, a well-formed X-Cart-Id or none) is answered before FastAPI parses the content type,
    resolves the route's dependencies and validates its body, which cost as much as the add itself:
    a SKU on the replica's sold-out board from the board alone, any other by the same add the route
    runs. Every other request, and any doubt, takes the full route, whose answer to the same request
    is the same."""

    def get_route_handler(self):
        full = super().get_route_handler()

        async def handler(request: Request) -> Response:
            answer = await _plain_add_first(request)
            return answer if answer is not None else await full(request)

        return handler


add_router = APIRouter(prefix="/api/v1", tags=["cart"], route_class=PlainAddFirst)
GUEST_ID = re.compile(r"^g[0-9a-f]{32}$")


SKU_LEN_MAX, QUANTITY_MIN, QUANTITY_MAX = 100, 1, 100


class AddItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str | None = Field(None, min_length=1, max_length=SKU_LEN_MAX)
    product_id: str | None = Field(None, min_length=1, max_length=40)
    options: dict[str, str] | None = Field(None, max_length=10)
    quantity: int = Field(1, ge=QUANTITY_MIN, le=QUANTITY_MAX)

    @model_validator(mode="after")
    def _one(self):
        if not self.sku and not self.product_id:
            raise ValueError("give sku or product_id")
        return self


class SetQuantity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantity: int = Field(..., ge=0, le=100, description="0 removes the item")


class CouponBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(..., min_length=1, max_length=64)


class MergeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    guest_cart_id: str = Field(..., pattern=GUEST_ID.pattern)


class CartWho:
    def __init__(self, cart_id: str, user_id: int | None, buyer_id: int, new: bool):
        self.cart_id, self.user_id, self.buyer_id, self.new = cart_id, user_id, buyer_id, new


async def cart_of(
    principal: Principal | None = Depends(optional_principal),
    x_cart_id: str | None = Header(None, description="guest cart id (from a previous answer)"),
) -> CartWho:
    return _cart_who(principal, x_cart_id)


def _cart_who(principal: Principal | None, x_cart_id: str | None) -> CartWho:
    if principal is not None:
        if not principal.can("cart.use"):
            raise Refused("forbidden", f"role {principal.role} has no cart")
        return CartWho(user_cart_id(principal.user_id), principal.user_id, principal.user_id, False)
    if x_cart_id is not None:
        if not GUEST_ID.match(x_cart_id):
            raise Refused(
                "bad_request", "X-Cart-Id must be a guest cart id as returned by this API"
            )
        return CartWho(x_cart_id, None, guest_buyer_id(x_cart_id), False)
    cid = "g" + os.urandom(16).hex()  # 128 random bits, as uuid4's 122, at a seventh of its cost
    return CartWho(cid, None, guest_buyer_id(cid), True)


def _out(result: dict) -> dict:
    if "refused" in result:
        raise Refused(
            result["refused"],
            result["message"],
            status=409 if result["refused"].startswith("coupon_") else None,
        )
    return result["cart"]


def sold_out(sku: str) -> Refused:
    return Refused("sold_out", f"{sku} is sold out: no unit is available")


def _refuse_sold_out(ctx: Context, sku: str) -> None:
    if ctx.services["sold_out"].is_sold_out(
        sku
    ):  # answered here, not by the shard (serve/sold_out.py)
        raise sold_out(sku)


async def _admit(ctx: Context, who: CartWho, sku: str) -> None:
    from flashmart.serve.waiting_room import require_admission

    # guests cannot queue (joining needs an account): as user -1 an open room refuses them
    buyer = Principal(
        user_id=who.user_id if who.user_id is not None else -1, role="customer", email=""
    )
    await require_admission(ctx, buyer, sku)


def _members_only(ctx: Context):
    """A flash sale in its members' early access sells to members only: the refusal for a buyer and
    the variant as the catalog cache gives it (in-process caches, no PostgreSQL once warm)."""
    from flashmart.actors.membership.benefits import early_access_refusal

    async def members_only(user_id: int | None, variant) -> str | None:
        return await early_access_refusal(ctx.db, user_id, variant)

    return members_only


async def _members_first(ctx: Context, who: CartWho, sku: str) -> None:
    variant = await ctx.services["catalog"].variant(sku=sku)
    if variant is not None and (message := await _members_only(ctx)(who.user_id, variant)):
        raise Refused("members_only", message)


async def _may_reserve(ctx: Context, who: CartWho, sku: str) -> None:
    """Every path that takes stock for a SKU (add by sku or by product, move from the wishlist, a larger
    quantity) passes here first: the sold-out board, members' early access, then the waiting room."""
    _refuse_sold_out(ctx, sku)
    await _members_first(ctx, who, sku)
    await _admit(ctx, who, sku)


async def _resolve_sku(ctx: Context, body: AddItem) -> str:
    """The SKU an add is for: a product (and options) names one variant, found before any check."""
    if body.sku:
        return body.sku
    variant = await ctx.services["catalog"].variant(
        product_id=int(body.product_id) if body.product_id.isdigit() else -1,
        options=body.options,
    )
    if variant is None:
        raise Refused(
            "not_found",
            f"no product for sale with product_id={body.product_id!r}"
            + (f" and options {body.options}" if body.options else ""),
        )
    return variant.sku


def coupon_buyer(user_id: int | None, guest_email: str | None) -> str | None:
    """Who a per-user coupon limit counts: the account, or a guest by email (as the order transaction
    redeems it). A guest's email is known only at checkout, so before that there is nobody to count."""
    if user_id is not None:
        return f"u:{user_id}"
    return f"g:{guest_email}" if guest_email else None


def _carts(ctx: Context):
    """The cart operations, run in this replica (actors/carts/book.py)."""
    return ctx.services["cart_book"]


@router.get("/cart")
async def get_cart(who: CartWho = Depends(cart_of), ctx: Context = Depends(get_ctx)) -> dict:
    """The cart at current prices (a line whose price moved shows, and keeps, the new one)."""
    return await _carts(ctx).current_view(who.cart_id, _price_now(ctx, who.user_id))


def _price_now(ctx: Context, user_id: int | None):
    """A SKU's price and currency now for this buyer, from the replica's catalog cache (None: not
    for sale)."""
    from flashmart.actors.carts.add import priced

    catalog, pricing = ctx.services["catalog"], _member_pricing(ctx)

    async def price_now(sku: str) -> tuple[str, str] | None:
        variant = await priced(pricing, user_id, await catalog.variant(sku=sku))
        return None if variant is None else (variant.price, variant.currency)

    return price_now


def _member_pricing(ctx: Context):
    from flashmart.actors.membership.benefits import member_priced

    async def pricing(user_id: int | None, variant: dict) -> dict:
        return await member_priced(ctx.db, user_id, variant)

    return pricing


async def _add(ctx: Context, who: CartWho, sku: str, body: AddItem, tokens) -> dict:
    """The sold-out board, the waiting room only when one may be open for the SKU, then the add in
    this replica (actors/carts/add.py): one batched reservation, one Redis round trip (which takes
    the caller's rate-limit `tokens` too)."""
    from flashmart.actors.carts.add import AddRequest, add_to_cart

    _refuse_sold_out(ctx, sku)
    catalog = ctx.services["catalog"]
    room_checked = catalog.room_may_be_open(sku)
    if room_checked:  # members' early access first: a room would tell a non-member to queue
        await _members_first(ctx, who, sku)
        await _admit(ctx, who, sku)
    req = AddRequest(who.cart_id, who.user_id, who.buyer_id, sku, None, None, body.quantity)
    book = _carts(ctx)
    for _ in range(2):
        result = await add_to_cart(
            book.store,
            catalog,
            book.inventory,
            req,
            items_max=ctx.settings.cart_items_max,
            room_checked=room_checked,
            pricing=_member_pricing(ctx),
            units_max=ctx.settings.cart_units_per_sku_max,
            tokens=tokens,
            rates=ctx.settings.currency_rates,
            members_only=_members_only(ctx),
        )
        if "rate_limited" in result:
            raise rate_limited(result["rate_limited"])
        if "room_open" not in result:
            return _out(result)
        catalog.rooms_open.add(sku)  # a room this replica had not heard of yet: ask it, then again
        await _admit(ctx, who, sku)
        room_checked = True
    raise Refused("unavailable", f"the waiting room of {sku} is changing: try again")


@add_router.post("/cart/items", responses={409: {}, 429: {}})
async def add_item(
    body: AddItem,
    request: Request,
    who: CartWho = Depends(cart_of),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """Adds and reserves: the units are held for you (hold TTL) or you get 409 with the reason (also
    beyond `cart_units_per_sku_max` units of one SKU in the cart). A SKU whose flash sale has an open
    waiting room is sold only to buyers it has admitted. Takes a token from api.ip and api.user."""
    return await _add_answer(ctx, who, body, await buckets_of(request, "api"))


async def _add_answer(ctx: Context, who: CartWho, body: AddItem, buckets) -> Response:
    """The answer to an add, by the full route or the plain one (`buckets`: the caller's api.*
    buckets): from the sold-out board, else the add itself."""
    from flashmart.actors.carts.add import Tokens

    board = ctx.services.get("sold_out")
    if body.sku is not None and board is not None and board.is_sold_out(body.sku):
        return _sold_out_answer(ctx, who, body, buckets)
    tokens = Tokens(*bucket_call(ctx.settings.rate_limits, buckets))
    try:
        sku = await _resolve_sku(ctx, body)
        with analytics.cart_add(ctx, sku, body.quantity, who.user_id, who.cart_id):  # its outcome
            return json_response(await _add(ctx, who, sku, body, tokens))
    except Exception:
        # ended before its cart write (sold out, unknown, failed): its token is taken on its own
        if not tokens.taken:
            await take(ctx, *tokens.for_write())
        raise


def _sold_out_answer(ctx: Context, who: CartWho, body: AddItem, buckets) -> Response:
    """A flash crowd's most frequent answer, from the replica's sold-out board alone: nothing shared is
    read or written, so its token comes from the replica's share of the buckets (serve/ratelimit.py,
    no Redis round trip), and the refusal is returned, not raised (FastAPI's exception path costs
    more than the answer). The same answer and analytics event as a refusal raised by `_add`."""
    take_local(ctx, buckets)
    refusal = sold_out(body.sku)
    analytics.cart_add_answered(
        ctx, body.sku, body.quantity, who.user_id, who.cart_id, refusal.reason
    )
    return refusal_response(refusal)


async def _plain_add_first(request: Request) -> Response | None:
    """The answer to a plain add, or None: the full route answers (and refuses what is not plain)."""
    if request.headers.get("content-type") != "application/json":
        return None
    body = _plain_add(await request.body())
    if body is None:
        return None
    ctx = ctx_of(request)
    principal = None
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or " " in token:
            return None
        await follow_revocations(ctx)
        try:
            principal = principal_from_token(ctx, token)
        except Refused:
            return None
    try:
        who = _cart_who(principal, request.headers.get("x-cart-id"))
    except Refused:
        return None
    return await _add_answer(ctx, who, body, api_buckets(request, principal))


_PLAIN_ADD_KEYS = ({"sku"}, {"sku", "quantity"})


def _plain_add(raw: bytes) -> AddItem | None:
    """The add a JSON body of `sku` (a string) and `quantity` (an integer, else 1) asks for, when it
    is plainly valid; None for anything else (the route's own validation answers it)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict or data.keys() not in _PLAIN_ADD_KEYS:
        return None
    sku, quantity = data["sku"], data.get("quantity", 1)
    if type(sku) is not str or not 1 <= len(sku) <= SKU_LEN_MAX:
        return None
    if type(quantity) is not int or not QUANTITY_MIN <= quantity <= QUANTITY_MAX:
        return None
    return AddItem.model_construct(sku=sku, quantity=quantity)


async def _cart_item(ctx: Context, cart_id: str, item_id: str) -> dict | None:
    """An item's SKU and quantity, read from Redis."""
    item = (await _carts(ctx).store.load(cart_id)).items.get(item_id)
    return None if item is None else {"sku": item.sku, "quantity": item.quantity}


@router.patch("/cart/items/{item_id}")
async def set_quantity(
    item_id: str,
    body: SetQuantity,
    who: CartWho = Depends(cart_of),
    ctx: Context = Depends(get_ctx),
) -> dict:
    if body.quantity == 0:
        return _out(await _carts(ctx).remove(who.cart_id, item_id))
    item = await _cart_item(ctx, who.cart_id, item_id)
    if (
        item is not None and body.quantity > item["quantity"]
    ):  # more units: the same checks as an add
        await _may_reserve(ctx, who, item["sku"])
    return _out(await _carts(ctx).set_quantity(who.cart_id, who.buyer_id, item_id, body.quantity))


@router.delete("/cart/items/{item_id}")
async def remove_item(
    item_id: str, who: CartWho = Depends(cart_of), ctx: Context = Depends(get_ctx)
) -> dict:
    return _out(await _carts(ctx).remove(who.cart_id, item_id))


@router.post("/cart/coupons")
async def apply_coupon(
    body: CouponBody, who: CartWho = Depends(cart_of), ctx: Context = Depends(get_ctx)
) -> dict:
    # a guest's per-user limits are checked at checkout, where their email is known (orders.checkout)
    return _out(
        await _carts(ctx).apply_coupon(who.cart_id, body.code, coupon_buyer(who.user_id, None))
    )


@router.delete("/cart/coupons/{code}")
async def remove_coupon(
    code: str, who: CartWho = Depends(cart_of), ctx: Context = Depends(get_ctx)
) -> dict:
    return _out(await _carts(ctx).remove_coupon(who.cart_id, code))


@router.post("/cart/items/{item_id}/save-for-later")
async def save_for_later(
    item_id: str, who: CartWho = Depends(cart_of), ctx: Context = Depends(get_ctx)
) -> dict:
    """Moves the item to your wishlist and gives its reserved units back."""
    return _out(await _carts(ctx).save_for_later(who.cart_id, item_id))


@router.get("/wishlist")
async def wishlist(who: CartWho = Depends(cart_of), ctx: Context = Depends(get_ctx)) -> dict:
    cart = await _carts(ctx).view(who.cart_id)
    return {"cart_id": cart["cart_id"], "items": cart["saved_for_later"]}


@router.post("/wishlist/{sku}/move-to-cart")
async def move_to_cart(
    sku: str, who: CartWho = Depends(cart_of), ctx: Context = Depends(get_ctx)
) -> dict:
    from flashmart.actors.carts.add import Tokens

    # this route's token was taken by the router's rate limit already
    out = await _add(ctx, who, sku, AddItem(sku=sku, quantity=1), Tokens(taken=True))
    return (
        _out(await _carts(ctx).unsave(who.cart_id, sku))
        if any(s["sku"] == sku for s in out["saved_for_later"])
        else out
    )


@router.delete("/wishlist/{sku}")
async def remove_saved(
    sku: str, who: CartWho = Depends(cart_of), ctx: Context = Depends(get_ctx)
) -> dict:
    return _out(await _carts(ctx).unsave(who.cart_id, sku))


@router.post("/cart/merge")
async def merge(
    body: MergeBody,
    principal: Principal = Depends(require("cart.use")),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """After login (which merges by itself when it is sent X-Cart-Id): the guest cart's items, saved items
    and coupons join yours. The guest's units are taken again as yours, within the sale's per-buyer
    limit; `merge` in the answer lists what moved and what was refused, with the reason."""
    result = await merge_guest_cart(ctx, body.guest_cart_id, principal.user_id)
    return {**_out(result), "merge": result["merge"]}


async def merge_guest_cart(ctx: Context, guest_cart_id: str, user_id: int) -> dict:
    """{"cart", "merge"} or a refusal (no such guest cart)."""
    from flashmart.actors.carts.actor import user_cart_id

    return await ctx.services["carts"].merge(guest_cart_id, user_cart_id(user_id), user_id)


@router.get("/cart/shipping-options")
async def shipping_options(
    country: str = Query(..., pattern=r"^[A-Za-z]{2}$"),
    state: str | None = Query(None, max_length=100),
    who: CartWho = Depends(cart_of),
    ctx: Context = Depends(get_ctx),
) -> dict:
    """The carriers' quotes for the cart's parcel (its weight, from the nearest warehouse that
    stocks it, to this country and state), cheapest first. Send an option's `option` as the
    checkout's `shipping_option`: that is the price charged (`cost`, in the cart's currency at the
    operator's exchange rate: free when the buyer's member plan or a coupon ships its method free,
    or standard shipping is free from the order's value)."""
    from decimal import Decimal

    from flashmart.actors.checkout import pricing, shipping
    from flashmart.actors.membership.benefits import member_ships_free

    cart = await _carts(ctx).store.load(who.cart_id)
    if not cart.items:
        raise Refused("invalid", "the cart is empty: there is nothing to ship")
    from flashmart.actors.payments.types import minor_quantum

    today = dt.date.today()
    currency = cart.currency or "USD"
    # the quotes are US dollars: shown in the cart's currency at the rate checkout charges them at
    rate = (
        pricing.exchange_rate(ctx.settings.currency_rates, currency)
        if cart.needs_shipping()
        else Decimal(1)
    )
    unit = minor_quantum(currency)
    disc = cart.discount(dt.datetime.now().timestamp(), rate, unit)
    goods = Decimal(cart.subtotal() - disc.amount)
    address = {"country": country.upper(), "state": state}
    offered = []
    quotes = []
    if cart.needs_shipping():  # digital items only: nothing ships, every method costs nothing
        parcel = await shipping.parcel_of_cart(
            ctx.db, [i.sku for i in cart.items.values()], cart.weight_g(), address
        )
        quotes = shipping.quotes_for(parcel)
    for q in quotes:
        free = disc.free_shipping or await member_ships_free(ctx.db, who.user_id, q.method)
        cost = pricing.shipping_cost(
            q.method, cart.weight_g(), country, goods, free, q.price, rate, unit
        )
        offered.append(
            {
                "option": shipping.option_of(q),
                "carrier": q.carrier,
                "service": q.service,
                "method": q.method,
                "price": float(q.price),
                "cost": float(cost),
                "transit_days": q.transit_days,
                "estimated_delivery": pricing.add_business_days(today, q.transit_days).isoformat(),
            }
        )
    if not cart.needs_shipping():
        offered = [
            {"method": m, "cost": 0.0, "estimated_delivery": today.isoformat()}
            for m in pricing.METHODS
        ]
    return {
        "country": country.upper(),
        "weight_g": cart.weight_g(),
        "needs_shipping": cart.needs_shipping(),
        "currency": currency,  # of `cost`; an option's `price` is the carrier's, in US dollars
        "exchange_rate": float(rate) if currency != "USD" and cart.needs_shipping() else None,
        "options": offered,
    }

"""The checkout saga (DESIGN.md): reserve -> fraud score -> authorise -> order written -> holds
committed + order confirmed (with its outbox row) -> capture -> 201.

Every step is recorded in `checkout_sagas` before its effect can matter, so a crash at any point
leaves a row the sweeper can finish or undo (see steps.recovery). A repeated Idempotency-Key finds
the same row and gets the first answer back: one order, one charge.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from flashmart.actors.carts import repricing
from flashmart.actors.carts.state import Cart
from flashmart.actors.checkout import pricing
from flashmart.actors.checkout.shipping import option_of as shipping_option_of
from flashmart.actors.orders import lifecycle
from flashmart.actors.orders.ports import OrderStore, OrderTx, SagaTakenOver
from flashmart.actors.payments.types import Authorised, Captured, Voided, minor_quantum, to_minor
from flashmart.obs import counter, logger
from flashmart.refusals import Refusal, Refused

log = logger("checkout")


def _is_refusal(r) -> bool:
    return r.__class__ is Refusal


# FAULT INJECTION (tests only): when the environment of the actor process running the saga names
# a step here, the process exits right after that step is recorded: a real crash, resolved by the
# sweeper. Armed per actor through CheckoutActor.arm_fault_for_tests; never set in production.
FAULT_ENV = "FLASHMART_FAULT_CRASH_AFTER_STEP"


def _maybe_crash(step: str) -> None:
    if os.environ.get(FAULT_ENV) == step:
        log.error("FAULT INJECTION: crashing after step %s", step)
        os._exit(17)


class Saga:
    def __init__(
        self, settings, db, carts, inventory, payments, fraud, store: OrderStore | None = None
    ):
        self.settings, self.db, self.carts, self.inv, self.payments, self.fraud = (
            settings,
            db,
            carts,
            inventory,
            payments,
            fraud,
        )
        if store is None:  # the PostgreSQL store on the saga's own pool
            from flashmart.storage.orders_postgres import PostgresOrderStore

            store = PostgresOrderStore(db)
        self.store: OrderStore = store

    # --- bookkeeping ---
    async def _step(self, order_id: str, step: str, **cols) -> None:
        if not await self.store.record_step(order_id, step, **cols):
            raise SagaTakenOver(order_id)
        _maybe_crash(step)

    async def _finish(
        self,
        order_id: str,
        state: str,
        body: dict,
        error: str | None = None,
    ) -> dict:
        await self.store.finish_saga(order_id, state, body, error)
        try:
            counter("checkouts", "checkout sagas finished", ("outcome",)).inc(
                tags={"outcome": body.get("error", "ok")}
            )
        except Exception:
            pass
        return body

    async def _fail(
        self, order_id: str, reason: str, message: str, details: dict | None = None
    ) -> Refusal:
        refusal = Refusal(reason, message, {**(details or {}), "order_id": order_id})
        await self._finish(order_id, "failed", refusal.body(), message)
        return refusal

    # --- entry ---
    async def run(self, req: dict) -> dict | Refusal:
        """The placed order's answer, or why the checkout was refused."""
        scope = f"u:{req['user_id']}" if req.get("user_id") is not None else f"g:{req['cart_id']}"
        order_id = uuid.uuid4().hex
        # a card-only checkout whose holds are all fresh is reserved, priced and scored with reads only, so
        # all of it may come before the saga row exists (a replayed key has then only read): the row is
        # written once, at 'authorising' with its holds, instead of 'started' then 'authorising'
        ready = await self._prepare_by_reading(order_id, req)
        step, holds = "started", []
        if ready is not None and ready.verdict["action"] != "decline" and ready.card_amount > 0:
            step, holds = "authorising", ready.holds
        first = await self.store.begin_saga(
            order_id, scope, req["idempotency_key"], req.get("user_id"), step, req, holds
        )
        if first is not None:
            return self._replay(first, req)
        _maybe_crash(step)
        try:
            return await self._run(
                order_id, scope, req, ready, authorising_recorded=(step == "authorising")
            )
        except Refused as exc:
            return await self._fail(order_id, exc.reason, exc.message, exc.details)
        except SagaTakenOver:
            # the sweeper voids what this saga authorised and records the outcome; the buyer retries
            return Refusal(
                "checkout_interrupted",
                "the checkout took too long and was cancelled; nothing was charged, please retry",
                {"order_id": order_id},
            )

    def _replay(self, first: dict, req: dict) -> dict | Refusal:
        """A retry with the same key answers the first result; the same key for another body is
        refused (invalid)."""
        if _comparable(first["request"]) != _comparable(req):
            return Refusal(
                "invalid", "this Idempotency-Key was used for a different checkout request"
            )
        if first["result"] is None:
            return Refusal(
                "conflict",
                "a checkout with this Idempotency-Key is still in progress",
                {"order_id": first["order_id"]},
            )
        return _replayed(first["result"])

    async def _prepare_by_reading(self, order_id: str, req: dict) -> Prepared | None:
        """Reserve (every hold fresh: nothing to renew), price and score with reads only; None when that
        is not possible (a hold to renew, an empty cart, store credit or a gift card to look up): the
        saga then records 'started' first and prepares with writes (_prepare)."""
        if req.get("gift_card") or req.get("use_store_credit"):
            return None
        snap = await self.carts.fresh_snapshot(req["cart_id"])
        if snap is None or _address_missing(snap, req):  # _prepare refuses it
            return None
        try:
            current, shipping, sales = await self._prices_now(snap, req)
        except Refused:  # refused by _prepare, with the saga row written (a retry gets the answer)
            return None
        if current is not None:  # a price moved: refused by _prepare, with the saga row written
            return None
        cart, p = self._price(snap, req, shipping)
        verdict = await self.fraud.score(self._fraud_order(order_id, req, p))
        return Prepared(cart, _holds_of(cart), p, verdict, None, Decimal(0), sales)

    async def _prepare(self, order_id: str, req: dict) -> Prepared:
        # 1. reserve: every cart line is backed by a live hold (expired ones are taken again)
        snap = await self.carts.checkout_snapshot(req["cart_id"], req["buyer_id"])
        if "refused" in snap:
            raise Refused(snap["refused"], snap["message"])
        if _address_missing(snap, req):
            raise Refused(
                "invalid", "a shipping_address is needed: the cart has physical items to ship"
            )
        # 'reserved' and 'scored' are not written on their own: a crash there is resolved exactly like
        # one at 'started' (abandon: the holds end with their TTL), so the holds travel with the next write
        current, shipping, sales = await self._prices_now(snap, req)
        if current is not None:
            await self._refuse_moved_prices(req, current, shipping)
        cart, p = self._price(snap, req, shipping)
        # 2. fraud score, with the gift card / store credit look-up alongside (both only read)
        scoring = asyncio.ensure_future(self.fraud.score(self._fraud_order(order_id, req, p)))
        try:
            credit_account, credit_amount = await self._credit_for(req, p.grand_total)
        finally:
            verdict = await scoring
        return Prepared(cart, _holds_of(cart), p, verdict, credit_account, credit_amount, sales)

    async def _prices_now(self, snap: dict, req: dict) -> tuple[dict | None, tuple, dict]:
        """The lines' current prices when one of them moved (None: the cart's prices hold), the
        shipping chosen (the carrier's quote, whether the buyer's plan ships it free), and the lines'
        flash sales (sku -> (sale id, limit)); read at once."""
        from flashmart.actors.checkout.current_prices import current_prices

        cart = Cart.from_dict(snap["cart"])
        (current, sales), shipping = await asyncio.gather(
            current_prices(
                self.db,
                [i.sku for i in cart.items.values()],
                req.get("user_id"),
                _now(),
                _currency(cart),
                {i.sku: i.unit_price for i in cart.items.values()},
            ),
            self._shipping(cart, req),
        )
        return (current if repricing.changes(cart, current) else None), shipping, sales

    async def _person_limits(self, req: dict, cart: Cart, sales: dict, pi_id) -> tuple | None:
        """The flash-sale lines with the buyer's email and card fingerprint, counted against each
        sale's limit per person in the order's transaction; None when no line is in a sale."""
        lines = [
            (item.sku, *sales[item.sku], item.quantity)
            for item in cart.items.values()
            if item.sku in sales
        ]
        if not lines:
            return None
        email = (req.get("email") or req.get("guest_email") or "").strip().lower()
        card = await self.payments.card_fingerprint(req["payment_token"]) if pi_id else None
        return lines, email, card

    async def _refuse_moved_prices(self, req: dict, current: dict, shipping: tuple) -> None:
        """The cart takes the current prices (lines no longer for sale leave it) and the checkout
        stops before any charge, answering the new lines and totals: the buyer confirms again."""
        out = await self.carts.reprice(req["cart_id"], current)
        totals = None
        if out["snapshot"]["items"]:
            p = self._price({"cart": out["snapshot"]}, req, shipping)[1]
            totals = {
                k: float(getattr(p, k))
                for k in ("subtotal", "discount", "shipping", "tax", "grand_total")
            }
        raise Refused(
            "price_changed",
            "prices in your cart changed since you added them; nothing was charged: "
            "check the new prices and place the order again",
            {"changes": out["changes"], "cart": out["cart"], "totals": totals},
        )

    async def _shipping(self, cart: Cart, req: dict) -> tuple:
        """(the carrier quote chosen for the cart's parcel, whether the buyer's plan ships its method
        free); a stale or unknown option is refused (actors/checkout/shipping.py). Digital items
        only: nothing ships, no quote."""
        from flashmart.actors.checkout import shipping
        from flashmart.actors.membership.benefits import member_ships_free

        rate = self._exchange_rate(cart)
        if not cart.needs_shipping():
            return None, False, rate
        parcel = await shipping.parcel_of_cart(
            self.db, [i.sku for i in cart.items.values()], cart.weight_g(), req["shipping_address"]
        )
        quote = shipping.choose(
            shipping.quotes_for(parcel), req.get("shipping_option"), req["shipping_method"]
        )
        return quote, await member_ships_free(self.db, req.get("user_id"), quote.method), rate

    def _exchange_rate(self, cart: Cart) -> Decimal | None:
        """Units of the cart's currency per US dollar (None for a dollar cart). A cart that ships or
        holds a coupon with a dollar amount is refused without a rate; another (digital items only)
        needs none."""
        currency = _currency(cart)
        if currency == "USD":
            return None
        rates = self.settings.currency_rates
        dollars = cart.needs_shipping() or any(
            c.kind == "fixed" or c.min_spend > 0 for c in cart.coupon_objects()
        )
        if dollars or currency in rates:
            return pricing.exchange_rate(rates, currency)
        return None

    @staticmethod
    def _price(snap: dict, req: dict, shipping: tuple) -> tuple[Cart, pricing.Price]:
        """The cart priced now (coupons re-checked against the clock; limits are enforced in the order
        transaction), shipping at the carrier's quote chosen (`shipping`: from _shipping). A member
        whose plan ships the quote's method free pays no shipping; digital lines weigh nothing and a
        cart of digital items only pays no shipping at all."""
        quote, member_free_shipping, rate = shipping
        cart = Cart.from_dict(snap["cart"])
        now = _now()
        unit = minor_quantum(_currency(cart))
        disc = cart.discount(now.timestamp(), Decimal(1) if rate is None else rate, unit)
        return cart, pricing.price(
            cart.subtotal(),
            disc.amount,
            disc.free_shipping or member_free_shipping,
            cart.weight_g(),
            quote.method if quote is not None else req["shipping_method"],
            pricing.tax_country(req.get("shipping_address"), req.get("billing_address")),
            now.date(),
            ships=cart.needs_shipping(),
            quote=quote,
            unit=unit,
            rate=rate,
        )

    @staticmethod
    def _fraud_order(order_id: str, req: dict, p: pricing.Price) -> dict:
        return {
            "order_id": order_id,
            "user_id": req.get("user_id"),
            "guest_email": req.get("guest_email"),
            # the scorer's amounts are US dollars
            "total": float(p.grand_total / (p.exchange_rate or 1)),
            "payment_token": req["payment_token"],
            # nothing shipped (digital items only): the billing address stands for both
            "shipping_address": req.get("shipping_address") or req.get("billing_address") or {},
            "billing_address": req.get("billing_address"),
        }

    async def _run(
        self,
        order_id: str,
        scope: str,
        req: dict,
        ready: Prepared | None = None,
        authorising_recorded: bool = False,
    ) -> dict | Refusal:
        ready = ready or await self._prepare(order_id, req)
        cart, holds, p, verdict, credit_amount = (
            ready.cart,
            ready.holds,
            ready.p,
            ready.verdict,
            ready.credit_amount,
        )
        card_amount = ready.card_amount
        if verdict["action"] == "decline":
            await self._release_and_drop(req["cart_id"], holds)
            raise Refused(
                "fraud_declined",
                "this order cannot be accepted; contact support if you think this is a mistake",
            )

        # 3. authorise (manual capture; idempotency key = order id). 'authorising' is durable before the
        # gateway is called, so a crash from here on is voided by the sweeper
        pi_id = None
        if card_amount > 0:
            if not authorising_recorded:
                await self._step(order_id, "authorising", holds=holds)
            auth = await self.payments.authorise(
                order_id,
                to_minor(card_amount, _currency(cart)),
                _currency(cart),
                req["payment_token"],
                scope,
            )
            if isinstance(auth, Refusal):
                if auth.reason == "unavailable":  # unanswered attempts may have reached the gateway
                    await self.void_unanswered(order_id)
                raise Refused(
                    auth.reason, auth.message
                )  # the cart keeps its holds: try another card
            assert isinstance(auth, Authorised)
            pi_id = auth.payment_intent_id
            try:
                await self._step(order_id, "authorised", payment_intent_id=pi_id)
            except SagaTakenOver:
                await self.payments.void(order_id, pi_id)  # the sweeper may not have found it yet
                raise

        # 4a. the order row (pending) and its payment, with the saga's step, in one transaction: every
        # later crash has an order to settle
        status = lifecycle.placed_status(verdict["action"])
        try:
            person = await self._person_limits(req, cart, ready.sales, pi_id)
            await self._write_order(
                order_id,
                scope,
                req,
                cart,
                p,
                verdict,
                pi_id,
                card_amount,
                credit_amount,
                holds,
                person,
            )
        except (SagaTakenOver, Refused):  # taken over, or one person over a sale's limit
            if pi_id:
                await self.payments.void(order_id, pi_id)
            raise
        _maybe_crash("order_written")

        # 4b. holds committed durably, then the order confirmed with its outbox row
        saga = {"order_id": order_id, "holds": holds, "request": req, "payment_intent_id": pi_id}
        return await self.settle(
            order_id, status, capture=(status == lifecycle.CONFIRMED), saga=saga
        )

    async def _credit_for(self, req: dict, grand_total: Decimal) -> tuple[str | None, Decimal]:
        """Split payment: store credit or a gift card pays first, the card the rest."""
        account = None
        if req.get("gift_card"):
            account = f"gc:{req['gift_card']}"
        elif req.get("use_store_credit") and req.get("user_id") is not None:
            account = f"sc:{req['user_id']}"
        if account is None:
            return None, Decimal(0)
        row = await self.store.usable_credit(account)
        if row is None or row["balance"] <= 0:
            raise Refused(
                "insufficient_credit", "no usable balance on that gift card or store credit"
            )
        req["_credit_account"] = account
        return account, min(Decimal(row["balance"]), grand_total)

    async def _write_order(
        self,
        order_id,
        scope,
        req,
        cart: Cart,
        p,
        verdict,
        pi_id,
        card_amount,
        credit_amount,
        holds: list[dict],
        person: tuple | None = None,
    ):
        order = {
            "id": order_id,
            "user_id": req.get("user_id"),
            "guest_email": req.get("guest_email"),
            "subtotal": p.subtotal,
            "discount": p.discount,
            "tax": p.tax,
            "shipping": p.shipping,
            "grand_total": p.grand_total,
            "currency": _currency(cart),
            "exchange_rate": p.exchange_rate,
            "shipping_address": req["shipping_address"],
            "billing_address": req.get("billing_address"),
            "shipping_method": p.quote.method if p.quote is not None else req["shipping_method"],
            "shipping_option": shipping_option_of(p.quote) if p.quote is not None else None,
            "estimated_delivery": p.estimated_delivery,
            "fraud_score": verdict["risk_score"],
            "fraud_action": verdict["action"],
            "fraud_flags": verdict["flags"],
            "coupon_code": ",".join(c["code"] for c in cart.coupons) or None,
            "idempotency_key": req["idempotency_key"],
            "idempotency_scope": scope,
        }
        items = [
            (
                order_id,
                item.sku,
                item.product_id,
                item.name,
                h.quantity,
                Decimal(item.unit_price),
                h.hold_id,
            )
            for item in cart.items.values()
            for h in item.holds
        ]
        payments = []
        if pi_id:
            payments.append(
                {
                    "kind": "card",
                    "payment_intent_id": pi_id,
                    "payment_method": req["payment_token"],
                    "amount": card_amount,
                }
            )
        if credit_amount > 0:
            account = req["_credit_account"]
            payments.append(
                {
                    "kind": "gift_card" if account.startswith("gc:") else "store_credit",
                    "payment_method": account,
                    "amount": credit_amount,
                }
            )
        # all or nothing: every later crash has an order to settle
        if person is None:  # one statement, atomic on its own: no transaction block around it
            await self.store.insert_order(order, items, payments, holds, pi_id)
            return
        # a flash sale's limit per person is counted under a lock held until the order is in
        async with self.store.transaction(pipelined=True) as tx:
            over = await tx.person_over_limit(*person)
            if over is not None:
                raise Refused(
                    "limit_reached",
                    f"the flash sale of {over['sku']} allows {over['limit']} per person and "
                    f"this {'card' if over['by'] == 'card' else 'email'} has bought "
                    f"{over['bought']} already; nothing was charged",
                    {"sku": over["sku"], "counted_by": over["by"]},
                )
            await tx.insert_order(order, items, payments, holds, pi_id)
            await tx.record_sale_purchases(order_id, *person)

    # --- settle: commit holds, confirm the order (+ outbox), capture. Also the sweeper's roll-forward.
    async def settle(
        self, order_id: str, status: str, capture: bool, saga: dict | None = None
    ) -> dict | Refusal:
        """`saga`: what the running saga already knows (holds, request, payment_intent_id); the sweeper
        passes nothing and the row is read."""
        if saga is None:
            saga = await self.store.saga(order_id)
        holds = saga["holds"]
        results = await asyncio.gather(
            *(self.inv.commit(h["sku"], h["hold_id"], order_id) for h in holds)
        )
        failed = [(h, r) for h, r in zip(holds, results) if _is_refusal(r)]
        if failed:
            h, r = failed[0]
            committed = [(h2, r2) for h2, r2 in zip(holds, results) if not _is_refusal(r2)]
            await self.undo_order(order_id, saga, committed, [x for x, _ in failed])
            reason = "hold_expired" if r.reason in ("hold_expired", "unknown_hold") else r.reason
            return await self._fail(
                order_id,
                reason,
                f"your reservation of {h['sku']} ended before the order was placed; nothing was charged",
            )
        try:
            async with self.store.transaction(pipelined=True) as tx:
                body = await self._confirm(tx, order_id, saga, holds, results, status)
        except Refused as exc:
            await self.undo_order(order_id, saga, list(zip(holds, results)), [])
            return await self._fail(order_id, exc.reason, exc.message)
        _maybe_crash("committed")
        # the cart forgets the bought lines while the card is captured: independent, both before the 201
        checked_out = self.carts.checked_out(
            saga["request"]["cart_id"], [h["hold_id"] for h in holds]
        )
        if capture:
            await asyncio.gather(checked_out, self.capture(order_id, saga["payment_intent_id"]))
        else:
            await asyncio.gather(checked_out, self._finish(order_id, "done", body))
        return body

    async def _confirm(self, tx: OrderTx, order_id, saga, holds, results, status) -> dict:
        """Runs in pipeline mode: only the statements whose rows are read wait for an answer. Ends
        with the saga's step 'committed' (and the 201 body as its result)."""
        req = saga["request"]
        buyer = (
            f"u:{req['user_id']}"
            if req.get("user_id") is not None
            else f"g:{req.get('guest_email')}"
        )
        await tx.set_allocations(
            order_id, [(h["hold_id"], r.allocations) for h, r in zip(holds, results)]
        )
        order = await tx.order_for_update(order_id)
        if order["status"] != lifecycle.PENDING:
            # confirmed already by the other settler (the running saga and the sweeper can both roll a
            # slow saga forward): coupons, credit and the outbox must be taken exactly once
            body = _answer(order)
            await tx.saga_committed(order_id, body)
            return body
        for code in filter(None, (order["coupon_code"] or "").split(",")):
            await self._redeem(tx, code, buyer, order_id, order["discount"])
        credits = []
        if req.get("gift_card") or req.get("use_store_credit"):
            credits = await tx.credit_payments(order_id)
        for credit in credits:
            if not await tx.take_credit(credit["payment_method"], credit["amount"]):
                raise Refused(
                    "insufficient_credit",
                    "the gift card or store credit balance changed; nothing was charged",
                )
            await tx.credit_ledger(credit["payment_method"], order_id, -credit["amount"], "order")
            await tx.payment_status_only(credit["id"], "captured")
        assert lifecycle.can_move(order["status"], status), (order["status"], status)
        body = _answer({**order, "status": status})
        # the status with its event, the outbox row, the card remembered, the saga's step: one statement
        await tx.confirm_order(
            order_id,
            status,
            "held for a fraud review" if status == lifecycle.REVIEW else None,
            f"order.{status}",
            {
                "order_id": order_id,
                "user_id": req.get("user_id"),
                "email": req.get("email") or req.get("guest_email"),
                "grand_total": str(order["grand_total"]),
            },
            body,
            (req["user_id"], req["payment_token"])
            if req.get("user_id") is not None and saga["payment_intent_id"]
            else None,
        )
        return body

    async def _redeem(self, tx: OrderTx, code, buyer, order_id, amount) -> None:
        c = await tx.coupon_for_update(code)
        uses = await tx.coupon_uses(code, buyer)
        if (
            c is None
            or (c["total_limit"] is not None and c["used_count"] >= c["total_limit"])
            or (c["per_user_limit"] is not None and uses >= c["per_user_limit"])
        ):
            raise Refused(
                "coupon_exhausted",
                f"coupon {code} was used up before your order; nothing was charged",
            )
        await tx.coupon_redeemed(code, buyer, order_id, amount)

    async def capture(self, order_id: str, pi_id: str | None) -> bool:
        if pi_id:
            r = await self.payments.capture(order_id, pi_id)
            if not isinstance(r, Captured):
                log.warning("capture of %s deferred to the sweeper: %s", order_id, r)
                return False  # saga stays running at 'committed': the sweeper captures
        await self.store.captured(order_id, pi_id)
        return True

    # --- compensation ---
    async def _release_and_drop(self, cart_id: str, holds: list[dict]) -> None:
        await asyncio.gather(*(self.inv.release(h["sku"], h["hold_id"]) for h in holds))
        await self.carts.checked_out(cart_id, [h["hold_id"] for h in holds])

    async def undo_order(
        self, order_id: str, saga: dict, committed: list, uncommitted: list[dict]
    ) -> None:
        """Return committed units, release the other holds, void the card, mark the order failed."""
        for h, r in committed:
            for wh, qty in (r.allocations or {}).items():
                # keyed: an undo repeated after a crash (the sweeper) restocks once
                await self.inv.return_units(
                    h["sku"], order_id, qty, wh, return_key=f"undo:{order_id}:{h['hold_id']}:{wh}"
                )
        await asyncio.gather(*(self.inv.release(h["sku"], h["hold_id"]) for h in uncommitted))
        await self.carts.checked_out(
            saga["request"]["cart_id"], [h["hold_id"] for h in saga["holds"]]
        )
        voided = True
        if saga["payment_intent_id"]:
            r = await self.payments.void(order_id, saga["payment_intent_id"])
            voided = isinstance(r, Voided)
            if not voided:  # still open at the gateway: the late void check tries again
                await self.store.mark_void_due(order_id)
        await self.store.order_failed(order_id, voided=voided)

    async def void_unanswered(self, order_id: str) -> None:
        """Every authorise attempt went unanswered, yet one may have authorised at the gateway: search
        it by the order id (as the sweeper does) and void it. The saga is also marked for the late
        void check, which searches once more later (the gateway's search index may lag) and retries a
        void that failed here."""
        await self.store.mark_void_due(order_id)
        try:
            for pi in await self.payments.find_by_order(order_id):
                r = await self.payments.void(order_id, pi)
                if not isinstance(r, Voided):
                    log.warning("void of unanswered authorisation %s failed: %s", pi, r)
        except Exception as exc:  # the gateway is failing: the late void check retries
            log.warning("search for unanswered authorisations of %s failed: %s", order_id, exc)


@dataclass(frozen=True)
class Prepared:
    """What the saga knows before it may authorise: the cart, its holds, the price, the fraud verdict and
    the part paid by store credit or a gift card."""

    cart: Cart
    holds: list[dict]
    p: pricing.Price
    verdict: dict
    credit_account: str | None
    credit_amount: Decimal
    sales: dict = field(default_factory=dict)  # sku -> (flash sale id, per-buyer limit)

    @property
    def card_amount(self) -> Decimal:
        return self.p.grand_total - self.credit_amount


def _currency(cart: Cart) -> str:
    """The cart's currency (a cart written before carts kept one is in US dollars)."""
    return cart.currency or "USD"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _address_missing(snap: dict, req: dict) -> bool:
    """No shipping address for a cart with physical items (digital items need none)."""
    return not req.get("shipping_address") and Cart.from_dict(snap["cart"]).needs_shipping()


def _holds_of(cart: Cart) -> list[dict]:
    return [
        {"sku": sku, "hold_id": h.hold_id, "quantity": h.quantity} for sku, h in cart.all_holds()
    ]


def _answer(o: dict) -> dict:
    """The 201 body, from the order row as the confirming transaction leaves it."""
    return {
        "order_id": o["id"],
        "status": o["status"],
        "total": float(o["subtotal"] - o["discount"]),
        "subtotal": float(o["subtotal"]),
        "discount": float(o["discount"]),
        "tax": float(o["tax"]),
        "shipping": float(o["shipping"]),
        "grand_total": float(o["grand_total"]),
        "currency": o["currency"],
        "exchange_rate": _rate(o),
        "estimated_delivery": o["estimated_delivery"].isoformat(),
        "tracking_url": f"/api/v1/orders/{o['id']}",
    }


def _rate(o: dict) -> float | None:
    """The rate (units per US dollar) the order's dollar amounts were taken at; None in dollars."""
    rate = o.get("exchange_rate")
    return float(rate) if rate is not None else None


def _replayed(result: dict) -> dict | Refusal:
    """The first answer again, marked as a replay: the placed order, or the refusal as it was told."""
    if "error" not in result:
        return {**result, "replayed": True}
    details = {k: v for k, v in result.items() if k not in ("error", "message")}
    return Refusal(result["error"], result.get("message", ""), {**details, "replayed": True})


def _comparable(req: dict) -> dict:
    """What makes two checkout requests the same: everything but the per-attempt request id."""
    return {k: v for k, v in req.items() if k != "request_id"}

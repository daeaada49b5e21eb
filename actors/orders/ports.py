"""The orders/payments store port: what the checkout saga, its sweeper, after-sales and the order and
payment routes need from storage. The PostgreSQL implementation is storage/orders_postgres.py;
orchestration is handed one (nothing here imports it)."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from typing import Protocol


class SagaTakenOver(Exception):
    """The sweeper claimed this saga (it looked abandoned: a step took longer than saga_stale_s) and
    resolves it; the request that started it must stop writing."""


class OrderTx(Protocol):
    """The statements of one transaction on the orders tables. What a statement locks (an order,
    a payment, a return) stays locked until the transaction ends, gateway calls included."""

    async def order_for_update(self, order_id: str) -> dict | None: ...

    async def set_order_status(self, order_id: str, status: str) -> None: ...

    async def order_event(
        self, order_id: str, status: str, note: str | None = None, location: str | None = None
    ) -> None: ...

    async def outbox(self, topic: str, payload: dict) -> None: ...

    async def shipped(self, order_id: str) -> bool:
        """A parcel of the order left the warehouse."""

    async def money_back(self, order_id: str) -> dict:
        """paid and back (refunded) over the order's taken payments."""

    async def units_back(self, order_id: str) -> dict:
        """bought and back (returned) units of the order."""

    async def order_items(self, order_id: str) -> list[dict]: ...

    async def order_items_of_sku_for_update(self, order_id: str, sku: str) -> list[dict]: ...

    async def units_left_by_sku(self, order_id: str) -> dict[str, int]: ...

    async def item_returned(self, item_id: int, quantity: int, allocations: dict) -> None: ...

    async def card_payment_for_update(self, order_id: str) -> dict | None: ...

    async def refundable(self, order_id: str) -> Decimal: ...

    async def credit_payments_for_update(self, order_id: str) -> list[dict]:
        """The gift card / store credit payments of the order with money left to give back."""

    async def payment_refunded(self, payment_id: int, refunded_amount: Decimal, status: str): ...

    async def payment_refunded_in_full(self, payment_id: int) -> None: ...

    async def payment_status(self, payment_id: int, status: str) -> None: ...

    async def payment_status_only(self, payment_id: int, status: str) -> None:
        """The status alone (a credit payment taken by the order's confirmation)."""

    async def refund_recorded(
        self,
        order_id: str,
        payment_id: int,
        gateway_refund_id: str,
        amount: Decimal,
        return_id: int | None = None,
        actor_id: int | None = None,
    ) -> None:
        """`actor_id`: the staff account that made the refund (None: the platform itself)."""

    async def credit_given_back(
        self, account_id: str, order_id: str, amount: Decimal, actor_id: int | None = None
    ) -> None: ...

    async def credit_ledger(
        self,
        account_id: str,
        order_id: str,
        amount: Decimal,
        reason: str,
        actor_id: int | None = None,
    ) -> None: ...

    async def audit(
        self,
        actor_id: int | None,
        action: str,
        object_type: str,
        object_id,
        details: dict | None = None,
    ) -> None:
        """An audit record in this transaction: it commits with the change it records."""

    async def return_for_update(self, return_id: int) -> dict | None: ...

    async def order_of_return(self, return_id: int) -> str | None: ...

    async def units_claimed_by_open_returns(self, order_id: str) -> list[list[dict]]: ...

    async def new_return(self, order_id: str, reason: str, items: list[dict]) -> int: ...

    async def return_window_start(self, order_id: str):
        """When the order's return window opened: its latest delivery, else its latest shipping,
        else its placing (a datetime)."""

    async def return_rejected(self, return_id: int, reason: str, actor_id: int | None) -> None: ...

    async def return_approved(self, return_id: int, refund_amount: Decimal) -> dict: ...

    async def return_refunded(self, return_id: int, refund_amount: Decimal) -> None: ...

    async def new_shipment(
        self, order_id: str, carrier: str, tracking_number: str, courier_id: int | None
    ) -> dict: ...

    async def shipment_for_update(self, shipment_id: int) -> dict | None: ...

    async def shipment_progress(
        self, shipment_id: int, status: str, location: str | None, actor_user_id: int
    ) -> None: ...

    async def shipment_event(
        self, shipment_id: int, status: str, location: str | None, actor_user_id: int | None
    ) -> None:
        """An entry of the shipment's own history (its status unchanged)."""

    async def order_follows_shipment(
        self, order_id: str, status: str, from_statuses: Sequence[str]
    ) -> None:
        """The order takes the shipment's status only from `from_statuses` (checked in the statement)."""

    async def insert_order(
        self, order: dict, items: list[tuple], payments: list[dict], holds: list[dict], pi_id
    ) -> None:
        """The pending order, its items and payments, its 'placed' event and the saga's step
        'order_written', all or nothing (in the caller's transaction). Raises SagaTakenOver, having
        written nothing, when the sweeper claimed the saga meanwhile."""

    async def person_over_limit(
        self, lines: list[tuple[str, int, int, int]], email: str, card_fingerprint: str | None
    ) -> dict | None:
        """Which flash-sale line (sku, sale id, per-buyer limit, units) would take this email or
        this card over the sale's limit, counting the orders not failed or cancelled; None: none.
        Serialised per (sale, email) and (sale, card) for the rest of the transaction."""

    async def record_sale_purchases(
        self,
        order_id: str,
        lines: list[tuple[str, int, int, int]],
        email: str,
        card_fingerprint: str | None,
    ) -> None:
        """The order's flash-sale units, by email and card, for the next person_over_limit."""

    async def set_allocations(self, order_id: str, allocations: list[tuple[str, dict]]) -> None:
        """(hold_id, {warehouse: units}) per committed hold; the first-named warehouse of the most
        units is the item's warehouse."""

    async def coupon_for_update(self, code: str) -> dict | None: ...

    async def coupon_uses(self, code: str, buyer: str) -> int: ...

    async def coupon_redeemed(self, code: str, buyer: str, order_id: str, amount: Decimal): ...

    async def credit_payments(self, order_id: str) -> list[dict]: ...

    async def take_credit(self, account_id: str, amount: Decimal) -> bool:
        """Spend `amount` of a gift card / store credit; False when its balance is short."""

    async def confirm_order(
        self,
        order_id: str,
        status: str,
        note: str | None,
        topic: str,
        payload: dict,
        result: dict,
        payment_method: tuple[int, str] | None,
    ) -> None:
        """The order takes `status` (its event with `note`), its outbox row (`topic`, `payload`), the
        buyer's card remembered (`payment_method`: (user id, token)) and the saga's step
        'committed' with its `result`."""

    async def saga_committed(self, order_id: str, result: dict) -> None: ...

    async def gateway_event_is_new(self, event_id: str, event_type: str) -> bool: ...

    async def order_of_intent_for_update(self, payment_intent_id: str) -> dict | None: ...

    async def payment_of_intent_for_update(self, payment_intent_id: str) -> dict | None: ...

    async def authorised_payment_becomes(self, payment_id: int, status: str) -> bool:
        """An authorised payment moves to `status` (voided, captured, failed); False if it was not
        authorised any more."""

    async def gateway_refund_recorded(
        self, order_id: str, payment_id: int, gateway_refund_id: str, amount: Decimal
    ) -> Decimal:
        """A refund the gateway reports, once: its amount when new, else 0."""

    async def payment_refunded_at_gateway(self, payment_id: int, refunded: Decimal) -> None: ...

    async def payment_alert(
        self, order_id: str, payment_id: int | None, kind: str, event_id: str, details: dict
    ) -> bool:
        """Something a person must look at (amount_mismatch, dispute), once per gateway event:
        False when this event's alert exists."""


class OrderStore(Protocol):
    """The orders/payments store: each method is one transaction of its own; `transaction()` opens
    one for several statements (and `pipelined`, sends them together)."""

    def transaction(self, pipelined: bool = False) -> AbstractAsyncContextManager[OrderTx]:
        """One transaction; `pipelined`: the statements go out together, one round trip to
        PostgreSQL instead of one each (only a statement whose rows are read waits)."""

    async def insert_order(
        self, order: dict, items: list[tuple], payments: list[dict], holds: list[dict], pi_id
    ) -> None:
        """OrderTx.insert_order without a transaction of the caller's: atomic on its own."""

    async def begin_saga(
        self, order_id: str, scope: str, key: str, user_id, step: str, request: dict, holds: list
    ) -> dict | None:
        """Record a new saga; None when recorded, else the saga that has this Idempotency-Key."""

    async def record_step(self, order_id: str, step: str, **cols) -> bool:
        """The saga's step (with `cols`), only while the sweeper has not claimed it (claiming
        increments attempts); False when it has."""

    async def finish_saga(self, order_id: str, state: str, result: dict, error: str | None): ...

    async def saga(self, order_id: str) -> dict | None: ...

    async def saga_of_key(self, scope: str, key: str) -> bool:
        """A checkout with this Idempotency-Key exists."""

    async def usable_credit(self, account_id: str) -> dict | None: ...

    async def captured(self, order_id: str, payment_intent_id: str | None) -> None:
        """The card payment captured (if any) and the saga done, in one transaction."""

    async def order_failed(self, order_id: str, voided: bool = True) -> None:
        """An undone checkout: the order failed, the timeline told; its authorised payments are
        recorded voided only when the gateway confirmed the void (`voided`)."""

    async def mark_void_due(self, order_id: str) -> None:
        """An authorisation of this checkout may be open: the late void check looks for it."""

    async def claim_stale_sagas(self, older_than_s: float, limit: int) -> list[dict]: ...

    async def order_fraud_action(self, order_id: str) -> str | None: ...

    async def order_status(self, order_id: str) -> str | None: ...

    async def returns_due_for_refund(self, older_than_s: float, limit: int) -> list[int]: ...

    async def postpone_return_refund(self, return_id: int) -> None: ...

    async def late_authorisations(
        self, after_s: float, window_s: float, limit: int
    ) -> list[dict]: ...

    async def postpone_void_check(self, order_id: str) -> None: ...

    async def void_checked(self, order_id: str) -> None: ...

    async def order(self, order_id: str) -> dict | None: ...

    async def order_details(self, order_id: str) -> tuple[list[dict], dict | None, list, list]:
        """The tracking view's parts: items, the latest shipment, the timeline, the payments."""

    async def order_history(self, user_id: int, limit: int, offset: int) -> tuple[int, list]:
        """A buyer's orders past checkout, newest first: (how many in all, this page)."""

    async def review_queue(self, limit: int) -> list[dict]: ...

    async def user_role(self, user_id: int) -> str | None: ...

    async def shipments(
        self, courier_id: int | None, limit: int, offset: int, *, mine: bool
    ) -> list[dict]:
        """Shipments newest first; with `mine`, only those assigned to `courier_id`."""

    async def coupon_uses_unless_replayed(
        self, scope: str, key: str, codes: Sequence[str], buyer: str
    ) -> dict[str, int] | None:
        """How often `buyer` redeemed each coupon; None when a checkout with this Idempotency-Key
        exists (a retried checkout answers its first outcome)."""

    async def order_in_review_with_voided_intent(self, payment_intent_id: str) -> str | None: ...

    async def payment_methods(self, user_id: int) -> list[dict]: ...

    async def issue_gift_card(
        self, account_id: str, amount: Decimal, expires_at, actor_id: int | None
    ) -> bool:
        """A new gift card with its ledger row and the audit record of `actor_id`; False when the
        code exists (nothing written)."""

    async def usable_gift_card(self, account_id: str) -> dict | None: ...

    async def grant_store_credit(
        self, account_id: str, user_id: int, amount: Decimal, reason: str, actor_id: int | None
    ) -> Decimal:
        """Store credit added (the account opened if new) with its ledger row and the audit record
        of `actor_id`: the new balance."""

    async def credit_balance(self, account_id: str) -> Decimal | None: ...

    async def payment_alerts(self, limit: int) -> list[dict]:
        """The newest payment alerts first."""

    async def new_coupon(self, coupon: dict, actor_id: int | None) -> bool:
        """The coupon with the audit record of `actor_id`; False when the code exists."""

"""The order lifecycle, pure: every status an order can have, the moves between them, and the rules
that pick the next status. Checkout, after-sales, the gateway's webhook, fraud scoring and reviews all
read the statuses from here; nothing here does I/O.

    pending --> confirmed | review | failed                      (the checkout saga)
    review --> confirmed | rejected | cancelled                  (a fraud review; the gateway ended it)
    confirmed, shipped, delivered --> shipped | delivered        (shipment progress)
    paid --> partially_refunded | returned | refunded            (money or goods came back)
    confirmed, review, partially_refunded, refunded --> cancelled (before anything shipped)
    paid --> disputed --> partially_refunded | returned | refunded  (the buyer's bank disputes it)

`cancelled`, `rejected` and `failed` are final: the units are back on sale and no money is held.
"""

from __future__ import annotations

import datetime as dt

PENDING = "pending"  # written by the checkout, its holds not yet committed: never shown to a buyer
REVIEW = "review"  # held for a person by the fraud check: authorised, not captured
CONFIRMED = "confirmed"
SHIPPED = "shipped"
DELIVERED = "delivered"
PARTIALLY_REFUNDED = "partially_refunded"
RETURNED = "returned"
REFUNDED = "refunded"
CANCELLED = "cancelled"
REJECTED = "rejected"  # a support user rejected an order held for review
# the buyer's bank disputes the charge: nothing ships, is refunded or returned while support answers
# the dispute at the gateway (a refund now would pay the buyer twice if the bank rules for them)
DISPUTED = "disputed"
FAILED = "failed"  # the checkout was undone: nothing charged, nothing sold

STATUSES = (
    PENDING,
    REVIEW,
    CONFIRMED,
    SHIPPED,
    DELIVERED,
    PARTIALLY_REFUNDED,
    RETURNED,
    REFUNDED,
    CANCELLED,
    REJECTED,
    FAILED,
    DISPUTED,
)
FINAL = (CANCELLED, REJECTED, FAILED)

# An order whose money was taken, whatever came back since: a refund or a return does not undo the sale
# (the payment stays captured at the gateway).
PAID = (CONFIRMED, SHIPPED, DELIVERED, PARTIALLY_REFUNDED, RETURNED, REFUNDED, DISPUTED)
# the last two only while nothing has shipped; a refunded one has nothing left to pay back, but its
# units are still sold until it is cancelled
CANCELLABLE = (CONFIRMED, REVIEW, PARTIALLY_REFUNDED, REFUNDED)
REFUNDABLE = (CONFIRMED, SHIPPED, DELIVERED, RETURNED, PARTIALLY_REFUNDED)
RETURNABLE = (
    SHIPPED,
    DELIVERED,
    PARTIALLY_REFUNDED,
)  # the last one only once something has shipped
SHIPPABLE = (CONFIRMED, PARTIALLY_REFUNDED)  # a goodwill refund does not stop a delivery
# the statuses a shipment's progress moves an order between; one that says money or goods came back
# stays (the shipment keeps its own status)
FOLLOWS_SHIPMENT = (CONFIRMED, SHIPPED, DELIVERED)
MONEY_BACK = (PARTIALLY_REFUNDED, RETURNED, REFUNDED)

# A shipment's progress, in order; it never goes back (label_created comes before all of them).
LABEL_CREATED = "label_created"
TRACKING = (SHIPPED, "in_transit", "out_for_delivery", DELIVERED)

TRANSITIONS: dict[str, frozenset[str]] = {
    PENDING: frozenset({CONFIRMED, REVIEW, FAILED}),
    REVIEW: frozenset({CONFIRMED, REJECTED, CANCELLED}),
    **{
        s: frozenset(
            ({SHIPPED, DELIVERED} if s in FOLLOWS_SHIPMENT else set())
            | set(MONEY_BACK)
            | ({CANCELLED} if s in CANCELLABLE else set())
            | {DISPUTED}
        )
        - {s}
        for s in PAID
    },
    **{s: frozenset() for s in FINAL},
}


def can_move(current: str, new: str) -> bool:
    """Whether an order may go from `current` to `new` (staying where it is always may)."""
    assert current in STATUSES and new in STATUSES, (current, new)
    return new == current or new in TRANSITIONS[current]


def placed_status(fraud_action: str) -> str:
    """What a checkout's order becomes once its holds are committed: held for review, or confirmed."""
    return REVIEW if fraud_action == "review" else CONFIRMED


def may_cancel(status: str, shipped: bool) -> bool:
    """Before shipment only: an order refunded (partly or fully) may still be cancelled while nothing
    has left the warehouse."""
    return status in CANCELLABLE and not (status in (PARTIALLY_REFUNDED, REFUNDED) and shipped)


def cancelled_status(rejected: bool) -> str:
    return REJECTED if rejected else CANCELLED


def may_ship(status: str, shipped: bool) -> bool:
    """A confirmed order ships; one partly refunded ships too, unless a parcel already left."""
    return status in SHIPPABLE and (status == CONFIRMED or not shipped)


def must_cancel_instead_of_return(status: str, shipped: bool) -> bool:
    """An order not shipped yet is cancelled, not returned (one path for its units back to stock)."""
    return status in CANCELLABLE and not shipped


def may_return(status: str, shipped: bool) -> bool:
    return status in RETURNABLE and shipped


def return_window_open(window_start: dt.datetime, now: dt.datetime, window_days: int) -> bool:
    """A return is asked for within `window_days` of the delivery (of the shipping when no delivery
    was reported, so a parcel never scanned at the door does not stay returnable for ever)."""
    return now <= window_start + dt.timedelta(days=window_days)


def after_shipment(status: str, shipment_status: str) -> str:
    """The order's status once one of its shipments reports `shipment_status`."""
    if shipment_status in (SHIPPED, DELIVERED) and status in FOLLOWS_SHIPMENT:
        return shipment_status
    return status


def shipment_may_move(current: str, new: str) -> bool:
    """A shipment's progress goes forward (or repeats), never back; a delivered one is finished."""
    if current == DELIVERED:
        return False
    if current not in TRACKING:
        return True
    return TRACKING.index(new) >= TRACKING.index(current)


def settled_status(status: str, paid: object, money_back: object, bought: int, units_back: int):
    """The status once money or goods came back: everything paid refunded -> refunded (nothing is left
    to do), else every unit returned -> returned, else some money back -> partially_refunded. An order
    that is not paid (cancelled, rejected, failed, in review) keeps its status: money that came back
    while ending it is part of that ending, not a refund of a sale. `paid`/`money_back` are amounts
    (Decimal), `bought`/`units_back` unit counts."""
    if status not in PAID:
        return status
    new = status
    if paid > 0 and money_back >= paid:
        new = REFUNDED
    elif bought > 0 and units_back >= bought:
        new = RETURNED
    elif money_back > 0:
        new = PARTIALLY_REFUNDED
    assert can_move(status, new), (status, new)
    return new

"""Stripe Billing parts that localstripe lacks or gets wrong, patched into the embedded emulator.

flashmart's memberships use Stripe Billing the way live Stripe answers it; these patches make the
emulator answer the same, so the same code runs against both:

- Subscription items name a Price (`items[0][price]`): localstripe knows only Plans (a Plan is a
  Price at Stripe: the ids are interchangeable), so `price` is read as `plan`.
- A plan change with `proration_behavior` (`create_prorations`, `always_invoice`, `none`): Stripe
  credits the unused time of the old price and charges the rest of the period at the new one;
  localstripe refused the parameter and, without it, credited the whole last invoice. Here the
  proration is by time left in the period, and `always_invoice` invoices and charges it at once.
- Events Stripe sends that localstripe does not: `invoice.paid` (beside the legacy
  `invoice.payment_succeeded`) and `customer.subscription.updated` after every change of a
  subscription (plan, cancel at period end, resume, renewal, past due).
- Renewal: Stripe renews a subscription by itself when its period ends; the emulator has no clock
  of its own, so `POST /_config/flashmart/subscriptions/{id}/renew` ends the current period now:
  it invoices the next one and charges the customer's default payment method (a card that is
  declined when charged makes the invoice fail and the subscription past due, as at Stripe). Only
  tests and simulations call it, as they would advance a Stripe test clock.
"""

from __future__ import annotations

import time

from aiohttp import web
from localstripe import resources
from localstripe.resources import (
    Event,
    Invoice,
    InvoiceItem,
    Plan,
    Subscription,
    SubscriptionItem,
    UserError,
)
from localstripe.webhooks import schedule_webhook

RENEW_PATH = "/_config/flashmart/subscriptions/{id}/renew"


def _prices_as_plans(items):
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and "price" in item:
                item.setdefault("plan", item.pop("price"))
    return items


def _period_of(sub) -> tuple[int, int]:
    return int(sub.current_period_start), int(sub.current_period_end)


def _prorate(sub, old_plan, new_plan, now: int) -> None:
    """Unused time of the old price credited, the rest of the period at the new one charged."""
    start, end = _period_of(sub)
    if end <= start or now >= end:
        return
    left = (end - max(now, start)) / (end - start)
    credit = round(old_plan.amount * sub.quantity * left)
    charge = round(new_plan.amount * sub.quantity * left)
    for amount, plan, what in (
        (-credit, old_plan, f"Unused time on {old_plan.name or old_plan.id}"),
        (charge, new_plan, f"Remaining time on {new_plan.name or new_plan.id}"),
    ):
        if amount:
            InvoiceItem(
                amount=amount,
                currency=new_plan.currency,
                proration=True,
                description=what,
                subscription=sub.id,
                plan=plan.id,
                customer=sub.customer,
                period_start=max(now, start),
                period_end=end,
            )


def _invoice_now(sub) -> Invoice:
    """Invoice what is pending for the customer (prorations) and charge it at once."""
    invoice = Invoice(customer=sub.customer, subscription=sub.id, items=[])
    invoice._finalize()
    if invoice.status != "paid":
        Invoice._api_pay_invoice(invoice.id)
    return invoice


def install(app: web.Application) -> None:
    original_init = Subscription.__init__
    original_update = Subscription._update
    original_success = Invoice._on_payment_success
    original_failure = Subscription._on_recurring_payment_failure

    def init(self, *args, items=None, **kwargs):
        original_init(self, *args, items=_prices_as_plans(items), **kwargs)
        if self.status == "incomplete" and (self.trial_end or self.trial_period_days):
            # localstripe leaves a trial 'incomplete' with no end: Stripe starts it trialing
            now = int(time.time())
            self.trial_start = now
            self.trial_end = self.trial_end or now + int(self.trial_period_days) * 86400
            self.status = "trialing"

    def period_end(self):
        if self.status == "trialing" and self.trial_end:
            return int(self.trial_end)  # at Stripe a trial is the first period
        return self.items._list[0]._current_period()["end"]

    def update(self, *args, items=None, proration_behavior=None, **kwargs):
        items = _prices_as_plans(items)
        if proration_behavior not in (None, "create_prorations", "always_invoice", "none"):
            raise UserError(400, f"Invalid proration_behavior: {proration_behavior}")
        old_plan, old_item = self.plan, self.items._list[0]
        new_plan_id = (items or [{}])[0].get("plan") if items else None
        changing = bool(new_plan_id) and new_plan_id != old_plan.id
        if changing:
            new_plan = Plan._api_retrieve(new_plan_id)  # 404 before anything changes
            if proration_behavior != "none":
                _prorate(self, old_plan, new_plan, int(time.time()))
            # swap the item here: localstripe's own swap credits the whole last invoice
            self.items = resources.List("/v1/subscription_items?subscription=" + self.id)
            self.items._list.append(
                SubscriptionItem(
                    subscription=self.id,
                    plan=new_plan.id,
                    quantity=old_item.quantity,
                    metadata=old_item.metadata,
                    tax_rates=old_item.tax_rates,
                )
            )
            items = None
        original_update(self, *args, items=items, **kwargs)
        if changing and proration_behavior == "always_invoice":
            _invoice_now(self)
        schedule_webhook(Event("customer.subscription.updated", self))

    def on_success(self):
        original_success(self)
        schedule_webhook(Event("invoice.paid", self))

    def on_failure(self, invoice):
        result = original_failure(self, invoice)
        # a renewal charged from the subscription's own invoice path reports no invoice failure in
        # localstripe; Stripe sends one (a second one from the other path is the same invoice)
        schedule_webhook(Event("invoice.payment_failed", invoice))
        if self.status == "past_due":
            schedule_webhook(Event("customer.subscription.updated", self))
        return result

    Subscription.__init__ = init
    Subscription.current_period_end = property(period_end)
    Subscription._update = update
    Invoice._on_payment_success = on_success
    Subscription._on_recurring_payment_failure = on_failure
    app.router.add_post(RENEW_PATH, renew)


async def renew(request: web.Request) -> web.Response:
    """End the subscription's current period now: invoice the next period and charge it."""
    sub = Subscription._api_retrieve(request.match_info["id"])
    if sub.status in ("canceled", "incomplete_expired"):
        raise UserError(400, f"subscription {sub.id} has ended")
    if sub.cancel_at_period_end:
        Subscription._api_delete(sub.id)  # the period ended: Stripe ends it and says so
        return web.json_response(sub._export())
    _, end = _period_of(sub)
    now = int(time.time())
    # the next period starts where the last one ended (or now, if the emulator's clock is behind)
    sub.start_date = min(end, now)
    sub.trial_end = None
    sub.trial_period_days = None
    sub._create_invoice()  # charges the default payment method; past_due when declined
    if sub.status == "trialing":
        sub.status = "active"
    schedule_webhook(Event("customer.subscription.updated", sub))
    return web.json_response(sub._export())

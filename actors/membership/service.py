"""Membership orchestration: the member's commands, the gateway's webhooks and the clock's sweep,
over the store port and the billing gateway. Every decision goes through the pure state machine
(state.py) inside the store's per-member lock; gateway calls happen before the lock is taken, with
idempotency keys derived from the member's request, so a retried request does the same thing once.
Time comes from an injected clock (`clock()`, seconds since the epoch).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from flashmart.actors.membership import state as sm
from flashmart.actors.membership.billing import GatewaySubscription, StripeBilling
from flashmart.actors.membership.plans import Plan
from flashmart.actors.membership.ports import Change, Loaded, MemberBenefits, MembershipStore
from flashmart.actors.membership.state import Membership
from flashmart.refusals import Refusal

REMINDER_TOPIC = "membership.payment_reminder"
ENDED_TOPIC = "membership.ended"
SWEEP_BATCH = 500


@dataclass(frozen=True)
class DunningPolicy:
    grace_s: float
    reminder_every_s: float
    reminders_max: int


class Memberships:
    def __init__(
        self,
        store: MembershipStore,
        billing: StripeBilling,
        policy: DunningPolicy,
        clock: Callable[[], float] = time.time,
    ):
        self.store, self.billing, self.policy, self.clock = store, billing, policy, clock

    # --- reads ------------------------------------------------------------------------------------

    async def benefits(self, user_id: int) -> MemberBenefits:
        return await self.store.benefits_of(user_id, self.clock())

    async def view(self, user_id: int) -> dict | Refusal:
        loaded = await self.store.load(user_id)
        if loaded is None:
            return Refusal("not_found", "you have no membership; see GET /api/v1/memberships/plans")
        return await self._view(loaded.membership)

    async def _view(self, m: Membership) -> dict:
        now = self.clock()
        plan = await self.store.plan(m.plan_id)
        return {
            "plan": plan.as_json() if plan else None,
            "status": m.status,
            "has_benefits": m.has_benefits(now),
            "benefits": (plan.benefits.as_json() if plan and m.has_benefits(now) else None),
            "started_at": m.started_at,
            "trial_end": m.trial_end,
            "period_end": m.period_end,
            "cancel_at_period_end": m.cancel_at_period_end,
            "grace_until": m.grace_until,
            "ended_at": m.ended_at,
            "ended_reason": m.ended_reason or None,
        }

    # --- the member's commands --------------------------------------------------------------------

    async def subscribe(
        self, user_id: int, email: str, plan_id: str, payment_method: str, request_key: str
    ) -> dict | Refusal:
        loaded = await self.store.load(user_id)
        if refusal := sm.can_subscribe(loaded.membership if loaded else None):
            return refusal
        plan = await self.store.plan(plan_id)
        if plan is None or not plan.active:
            return Refusal("not_found", f"no plan {plan_id!r} is offered")
        price_id = await self._price_of(plan)
        customer = await self._customer(user_id, email, payment_method)
        if isinstance(customer, Refusal):
            return customer
        sub = await self.billing.subscribe(
            customer, price_id, plan.trial_days, f"{user_id}:{request_key}", user_id
        )
        if isinstance(sub, Refusal):
            return sub
        if sub.status not in ("active", "trialing"):
            # the first payment failed: nothing to keep at the gateway, the member tries another card
            await self.billing.cancel_now(sub.id)
            return Refusal("payment_declined", "the card was declined for the first payment")
        now = self.clock()
        events: list[sm.Event] = [
            sm.Subscribed(
                f"subscribe:{sub.id}",
                plan.id,
                now,
                float(sub.trial_end) if sub.status == "trialing" and sub.trial_end else None,
                float(sub.period_end),
            )
        ]
        if sub.status == "active" and sub.latest_invoice and sub.latest_invoice["status"] == "paid":
            events.append(self._paid(sub.latest_invoice, now))
            await self.store.record_invoice(user_id, plan.id, sub.latest_invoice)
        change = await self._apply(user_id, events, subscription_id=sub.id)
        return await self._view(change.membership)

    async def change_plan(self, user_id: int, plan_id: str, request_key: str) -> dict | Refusal:
        loaded = await self.store.load(user_id)
        if refusal := sm.can_change_plan(loaded.membership if loaded else None, plan_id):
            return refusal
        plan = await self.store.plan(plan_id)
        if plan is None or not plan.active:
            return Refusal("not_found", f"no plan {plan_id!r} is offered")
        sub = await self.billing.change_price(
            loaded.subscription_id, await self._price_of(plan), f"{user_id}:{request_key}"
        )
        if isinstance(sub, Refusal):
            return sub
        now = self.clock()
        events: list[sm.Event] = [sm.PlanChanged(f"change:{request_key}", now, plan.id)]
        if sub.latest_invoice:
            await self.store.record_invoice(user_id, plan.id, sub.latest_invoice)
        change = await self._apply(user_id, events)
        view = await self._view(change.membership)
        return {**view, "proration_invoice": sub.latest_invoice}

    async def cancel(self, user_id: int, request_key: str) -> dict | Refusal:
        return await self._cancel_or_resume(user_id, request_key, cancel=True)

    async def resume(self, user_id: int, request_key: str) -> dict | Refusal:
        return await self._cancel_or_resume(user_id, request_key, cancel=False)

    async def _cancel_or_resume(
        self, user_id: int, request_key: str, cancel: bool
    ) -> dict | Refusal:
        loaded = await self.store.load(user_id)
        m = loaded.membership if loaded else None
        if refusal := (sm.can_cancel(m) if cancel else sm.can_resume(m)):
            return refusal
        sub = await self.billing.set_cancel_at_period_end(
            loaded.subscription_id, cancel, f"{user_id}:{request_key}"
        )
        if isinstance(sub, Refusal):
            return sub
        now = self.clock()
        event = (
            sm.CancellationScheduled(f"cancel:{request_key}", now)
            if cancel
            else sm.Resumed(f"resume:{request_key}", now)
        )
        change = await self._apply(user_id, [event])
        return await self._view(change.membership)

    async def card_setup(self, user_id: int, request_key: str) -> dict | Refusal:
        """The secret the card form confirms with Stripe.js to save a card for renewals."""
        return await self.billing.card_setup(user_id, request_key)

    async def update_card(self, user_id: int, email: str, payment_method: str) -> dict | Refusal:
        """The card renewals charge from now on (a member in grace fixes a declined card here)."""
        customer = await self._customer(user_id, email, payment_method, replace=True)
        if isinstance(customer, Refusal):
            return customer
        return {"payment_method": payment_method}

    async def billing_history(self, user_id: int, limit: int = 50) -> list[dict]:
        return await self.store.invoices(user_id, limit)

    # --- the gateway's webhooks -------------------------------------------------------------------

    async def on_gateway_event(self, event_id: str, event_type: str, obj: dict) -> str:
        """Apply one webhook; the answer says what it did (for the log and the sender)."""
        from flashmart.actors.membership.billing import invoice_summary

        now = self.clock()
        if event_type in ("invoice.paid", "invoice.payment_failed"):
            inv = invoice_summary(obj)
            user_id = await self._member(inv["subscription"])
            if user_id is None:
                return "ignored: not a membership invoice"
            loaded = await self.store.load(user_id)
            await self.store.record_invoice(
                user_id,
                loaded.membership.plan_id if loaded else None,
                {**inv, "status": "paid" if event_type == "invoice.paid" else "open"},
            )
            if event_type == "invoice.paid":
                event = self._paid(inv, now)
            else:
                event = sm.PaymentFailed(inv["id"], now, self.policy.grace_s, inv["total"])
            return await self._applied(user_id, [event])
        if event_type in ("customer.subscription.updated", "customer.subscription.deleted"):
            user_id = await self._member(obj.get("id"))
            if user_id is None:
                return "ignored: not a membership subscription"
            sub = GatewaySubscription.of(obj)
            if event_type == "customer.subscription.updated":
                # events may arrive out of order (a 'cancelled' after the 'resumed' that followed
                # it): sync to the subscription as it is now, not to the event's snapshot
                sub = await self.billing.subscription(sub.id)
            loaded = await self.store.load(user_id)
            if loaded is None:
                return "ignored: no membership"
            events = await self._sync(loaded.membership, sub, event_id, event_type, now)
            return await self._applied(user_id, events)
        return f"ignored: {event_type}"

    async def _sync(
        self, m: Membership, sub: GatewaySubscription, event_id: str, event_type: str, now: float
    ) -> list[sm.Event]:
        """What the gateway's current view of the subscription says happened that we have not
        applied (a change made at the gateway: the dashboard, or Stripe's own schedule)."""
        if event_type == "customer.subscription.deleted" or sub.status == "canceled":
            reason = "canceled_at_period_end" if m.cancel_at_period_end else "canceled_at_gateway"
            return [sm.Ended(f"deleted:{sub.id}", now, reason)]
        events: list[sm.Event] = []
        if sub.cancel_at_period_end and not m.cancel_at_period_end:
            events.append(sm.CancellationScheduled(event_id, now))
        elif not sub.cancel_at_period_end and m.cancel_at_period_end:
            events.append(sm.Resumed(event_id, now))
        plan = await self._plan_of_price(sub.price_id)
        if plan is not None and plan.id != m.plan_id:
            events.append(sm.PlanChanged(event_id, now, plan.id))
        return events

    # --- the clock --------------------------------------------------------------------------------

    async def sweep(self) -> dict:
        """Reminders during grace, the end of grace, the end of cancelled periods, reward points.
        Safe to run from several places at once: each decision is idempotent and made under the
        member's lock."""
        counts = {"reminders": 0, "expired": 0, "period_ended": 0}
        after = 0
        while True:
            members = await self.store.live_members(after, SWEEP_BATCH)
            for user_id in members:
                change = await self.store.change(user_id, self._due)
                for e in change.events:
                    if isinstance(e, sm.ReminderSent):
                        counts["reminders"] += 1
                    elif isinstance(e, sm.GraceEnded):
                        counts["expired"] += 1
                        await self._end_at_gateway(user_id)
                    elif isinstance(e, sm.PeriodEnded):
                        counts["period_ended"] += 1
            if len(members) < SWEEP_BATCH:
                break
            after = members[-1]
        counts.update(await self.store.credit_rewards())
        return counts

    def _due(self, loaded: Loaded | None) -> Change:
        if loaded is None:
            return Change(None)
        m, now = loaded.membership, self.clock()
        events = sm.due(m, now, self.policy.reminder_every_s, self.policy.reminders_max)
        outbox = []
        for e in events:
            m = sm.apply(m, e)
            if isinstance(e, sm.ReminderSent):
                outbox.append((REMINDER_TOPIC, self._mail(loaded, m, reminder=e.number)))
            elif isinstance(e, sm.GraceEnded | sm.PeriodEnded):
                outbox.append((ENDED_TOPIC, self._mail(loaded, m)))
        return Change(m, events, outbox)

    @staticmethod
    def _mail(loaded: Loaded, m: Membership, reminder: int | None = None) -> dict:
        return {
            "email": loaded.email,
            "user_id": m.user_id,
            "plan_id": m.plan_id,
            "grace_until": m.grace_until,
            "reminder": reminder,
            "link": "/api/v1/memberships/me",
        }

    async def _end_at_gateway(self, user_id: int) -> None:
        loaded = await self.store.load(user_id)
        if loaded and loaded.subscription_id:
            await self.billing.cancel_now(loaded.subscription_id)  # refusal: already ended there

    # --- helpers ----------------------------------------------------------------------------------

    async def _apply(
        self,
        user_id: int,
        events: list[sm.Event],
        subscription_id: str | None = None,
    ) -> Change:
        def decide(loaded: Loaded | None) -> Change:
            m = loaded.membership if loaded else Membership(user_id=user_id)
            for e in events:
                m = sm.apply(m, e)
            return Change(m, events, (), subscription_id)

        return await self.store.change(user_id, decide)

    async def _applied(self, user_id: int, events: list[sm.Event]) -> str:
        if not events:
            return "nothing to apply"
        change = await self._apply(user_id, events)
        return (
            f"applied {', '.join(type(e).__name__ for e in events)} -> {change.membership.status}"
        )

    @staticmethod
    def _paid(inv: dict, now: float) -> sm.PaymentSucceeded:
        return sm.PaymentSucceeded(inv["id"], now, float(inv["period_end"] or now), inv["total"])

    async def _member(self, subscription_id: str | None) -> int | None:
        if not subscription_id:
            return None
        return await self.store.member_of_subscription(subscription_id)

    async def _price_of(self, plan: Plan) -> str:
        if plan.gateway_price_id:
            return plan.gateway_price_id
        price_id = await self.billing.ensure_price(
            plan.id, plan.name, plan.price_minor, plan.currency, plan.billing_interval
        )
        await self.store.set_gateway_price(plan.id, price_id)
        return price_id

    async def _plan_of_price(self, price_id: str) -> Plan | None:
        for plan in await self.store.plans(active_only=False):
            if plan.gateway_price_id == price_id:
                return plan
        return None

    async def _customer(
        self, user_id: int, email: str, payment_method: str, replace: bool = False
    ) -> str | Refusal:
        known = await self.store.customer(user_id)
        customer = known[0] if known else await self.billing.ensure_customer(user_id, email)
        if known is None or replace or known[1] != payment_method:
            refusal = await self.billing.save_card(customer, payment_method)
            if refusal is not None:
                return refusal
            await self.store.save_customer(user_id, customer, payment_method)
        return customer

"""What the membership orchestration needs from storage. The PostgreSQL implementation lives in
storage/membership_postgres.py; the orchestration is handed one and never imports it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flashmart.actors.membership.plans import Benefits, Plan
from flashmart.actors.membership.state import Event, Membership


@dataclass
class Change:
    """What one decision writes, in one transaction: the new state, the events that made it (the
    timeline), messages for the outbox (reminders), and the gateway subscription it follows."""

    membership: Membership | None
    events: Sequence[Event] = ()
    outbox: Sequence[tuple[str, dict]] = ()
    subscription_id: str | None = None


@dataclass(frozen=True)
class Loaded:
    membership: Membership
    subscription_id: str | None
    email: str = ""


@dataclass
class MemberBenefits:
    """A member's benefits now (none for a non-member), with the plan they come from."""

    benefits: Benefits = field(default_factory=Benefits)
    plan_id: str | None = None
    tier: int = 0
    status: str | None = None


Decide = Callable[[Loaded | None], Awaitable[Change] | Change]


class MembershipStore(Protocol):
    # plans
    async def plans(self, active_only: bool = True) -> list[Plan]: ...

    async def plan(self, plan_id: str) -> Plan | None: ...

    async def save_plan(self, plan: Plan, actor_id: int, ip: str | None) -> Plan: ...

    async def set_gateway_price(self, plan_id: str, price_id: str) -> None: ...

    # the gateway customer
    async def customer(self, user_id: int) -> tuple[str, str | None] | None: ...

    async def save_customer(self, user_id: int, customer_id: str, payment_method: str) -> None: ...

    # memberships
    async def load(self, user_id: int) -> Loaded | None: ...

    async def member_of_subscription(self, subscription_id: str) -> int | None: ...

    async def change(self, user_id: int, decide: Decide) -> Change:
        """Lock the member's membership, call `decide` with it, write what it returns; one
        transaction. `decide` must not call the gateway (it runs inside the lock)."""
        ...

    async def record_invoice(self, user_id: int, plan_id: str | None, invoice: dict) -> None: ...

    async def invoices(self, user_id: int, limit: int) -> list[dict]: ...

    async def timeline(self, user_id: int, limit: int) -> list[dict]: ...

    async def live_members(self, after_user_id: int, limit: int) -> list[int]: ...

    async def benefits_of(self, user_id: int, now: float) -> MemberBenefits: ...

    async def members(
        self, status: str | None, plan_id: str | None, limit: int, offset: int
    ) -> list[dict]: ...

    async def metrics(self, since: float, now: float) -> dict: ...

    async def credit_rewards(self) -> dict: ...

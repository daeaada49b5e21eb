"""Builds the membership service from settings and a PostgreSQL pool (the one place that names the
adapters: PostgreSQL for the store, Stripe for billing)."""

from __future__ import annotations

import time
from collections.abc import Callable

from flashmart.actors.membership.billing import StripeBilling
from flashmart.actors.membership.service import DunningPolicy, Memberships
from flashmart.settings import Settings


def dunning_policy(settings: Settings) -> DunningPolicy:
    return DunningPolicy(
        grace_s=settings.membership_grace_s,
        reminder_every_s=settings.membership_reminder_every_s,
        reminders_max=settings.membership_reminders_max,
    )


def memberships_for(
    settings: Settings, pool, clock: Callable[[], float] = time.time
) -> Memberships:
    from flashmart.storage.membership_postgres import PostgresMembershipStore

    return Memberships(
        PostgresMembershipStore(pool),
        StripeBilling(settings.stripe_secret_key, settings.stripe_api_base),
        dunning_policy(settings),
        clock,
    )

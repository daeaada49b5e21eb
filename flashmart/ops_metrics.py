"""Operational metrics the alert rules in ops/ watch, set by one-line calls where they happen.
Exported through Ray's metrics agent as ray_flashmart_<name> (counters with a _total suffix)."""

from __future__ import annotations

import time

from flashmart import obs


def flush_failed(shard: str) -> None:
    """A shard's group commit to PostgreSQL failed (it keeps its journal and retries)."""
    obs.counter("inventory_flush_failures", "journal flushes that failed", ("shard",)).inc(
        tags={"shard": shard}
    )


def stock_feed_applied(entries: list) -> None:
    """The sold-out board applied a batch of the stock feed: how late its newest entry arrived
    (stream ids are the milliseconds they were added at)."""
    if entries:
        added_ms = int(str(entries[-1][0]).split("-")[0])
        obs.gauge("sold_out_board_lag_ms", "stock feed entry age when applied").set(
            max(0.0, time.time() * 1000 - added_ms)
        )


def backoffice_gauges(values: dict[str, float]) -> None:
    """What the back office measures each period (see actors/backoffice/actor.py: ops_job)."""
    for name, value in values.items():
        obs.gauge(name, OPS_GAUGES[name]).set(value)


OPS_GAUGES = {
    "notifications_dead_lettered": "events whose email was given up (dead-letter streams)",
    "payments_authorised_oldest_age_s": "age of the oldest card authorisation not captured or voided",
    "outbox_unrelayed_oldest_age_s": "age of the oldest outbox row not yet relayed",
    "analytics_stream_backlog": "analytics events waiting to be stored",
    "tickets_sla_breached": "open tickets past a first-response or resolution target",
}

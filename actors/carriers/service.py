"""Carriers over their port: the simulator's tracking pushed to the webhook on its schedule (the
clock is the caller's), webhook signatures, and a registry of the carriers flashmart knows."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

from flashmart.actors.carriers.ports import Carrier, event_json
from flashmart.actors.carriers.simulator import CarrierSimulator

PUSH_BATCH_MAX = 200


def carriers() -> dict[str, Carrier]:
    """The carriers by name (a real carrier's adapter is registered here)."""
    sim = CarrierSimulator()
    return {sim.name: sim}


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_ok(secret: str, body: bytes, signature: str | None) -> bool:
    return bool(signature) and hmac.compare_digest(sign(secret, body), signature)


async def push_due_events(store, carrier: Carrier, post, secret: str, now: dt.datetime) -> int:
    """Deliver each label's tracking events due by `now` that were not delivered yet, in order,
    through `post(body, signature) -> bool` (the webhook); stops a label at its first failure."""
    pushed = 0
    for label, parcel, done_seq in await store.unfinished_labels(carrier.name, PUSH_BATCH_MAX):
        for event in carrier.events_due(label, parcel, now):
            if event.seq <= done_seq:
                continue
            body = json.dumps(event_json(event)).encode()
            if not await post(body, sign(secret, body)):
                break
            await store.mark_pushed(carrier.name, label.tracking_number, event.seq)
            pushed += 1
    return pushed

"""Helpers for the inventory engine's tests."""

from __future__ import annotations

from flashmart.actors.inventory.state import SkuState


def full_state(s: SkuState) -> dict:
    """Every field of a SKU's state (sales in their snapshot form: restored sales have no expiry), so that
    a field that recovery forgets fails the comparison even if snapshot() forgot it too."""
    fields = {
        name: getattr(s, name) for name in SkuState.__slots__ if name not in ("committed", "orders")
    }
    fields["committed"] = s.snapshot()[0]["committed"]
    fields["orders"] = sorted(s.orders)
    return fields

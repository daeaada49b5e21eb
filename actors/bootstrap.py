"""Create the platform's long-lived named actors (detached, idempotent)."""
from __future__ import annotations

from flashmart.settings import Settings


def ensure_actors(settings: Settings) -> None:
    """Each actor kind adds one line here."""
    from actors.inventory.directory import ensure_inventory_actors; ensure_inventory_actors(settings)  # noqa: E702 - inventory engine (issue 3)
    from actors.search.actor import ensure_search_actors; ensure_search_actors(settings)  # noqa: E702 - catalog search (issue 4)
    from actors.purchase import ensure_purchase_actors; ensure_purchase_actors(settings)  # noqa: E702 - purchase path (issue 5)

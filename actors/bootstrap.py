"""Create the platform's long-lived named actors (detached, idempotent)."""
from __future__ import annotations

from flashmart.settings import Settings


def ensure_actors(settings: Settings) -> None:
    """Each actor kind adds one line here."""

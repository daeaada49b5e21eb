"""Create the platform's long-lived named actors (detached, idempotent: a second call finds them)."""

from __future__ import annotations

from flashmart.settings import Settings


def ensure_actors(settings: Settings) -> None:
    from flashmart.actors.inventory.directory import ensure_inventory_actors
    from flashmart.actors.purchase import ensure_purchase_actors
    from flashmart.actors.recommendations.actor import ensure_recommendation_actor
    from flashmart.actors.search.actor import ensure_search_actors

    ensure_inventory_actors(
        settings
    )  # directory + cold shards (hot shards appear with flash sales)
    ensure_search_actors(settings)  # Tantivy index owner + readers
    ensure_recommendation_actor(settings)  # also bought, trending, popularity from views and sales
    ensure_purchase_actors(settings)  # carts, payments, checkout + sweeper, notifications
    from flashmart.actors.membership.actor import ensure_membership_sweeper

    ensure_membership_sweeper(settings)  # dunning, period ends, reward points
    from flashmart.actors.content.encoder import ensure_content_encoder

    ensure_content_encoder(settings)  # video renditions, off the request path
    from flashmart.actors.backoffice.actor import ensure_backoffice_actor

    ensure_backoffice_actor(settings)  # invoices, mail, reports, reorders, carrier tracking

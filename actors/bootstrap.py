"""Create the platform's long-lived named actors (detached, idempotent: a second call finds them)."""

from __future__ import annotations

from flashmart.actors import NAMESPACE
from flashmart.actors.placement import settle_on_worker_node
from flashmart.settings import Settings


def worker_node_actors(settings: Settings) -> list[str]:
    """The actors a worker node takes when the cluster has one (actors/placement.py): the purchase
    path (carts, checkout, payments) and search's first reader."""
    from flashmart.actors.carts.actor import actor_name as cart
    from flashmart.actors.checkout.actor import actor_name as checkout
    from flashmart.actors.payments.actor import actor_name as payments
    from flashmart.actors.search.actor import NAME as SEARCH

    return [
        *(cart(i) for i in range(settings.cart_shard_count)),
        *(checkout(i) for i in range(settings.checkout_pool_size)),
        *(payments(i) for i in range(settings.payments_pool_size)),
        *([SEARCH.format(1)] if settings.search_replicas > 1 else []),
    ]


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
    settle_on_worker_node(  # no-op on a single node
        worker_node_actors(settings), NAMESPACE, lambda: _purchase_and_search(settings)
    )
    from flashmart.actors.membership.actor import ensure_membership_sweeper

    ensure_membership_sweeper(settings)  # dunning, period ends, reward points
    from flashmart.actors.content.encoder import ensure_content_encoder

    ensure_content_encoder(settings)  # video renditions, off the request path
    from flashmart.actors.backoffice.actor import ensure_backoffice_actor

    ensure_backoffice_actor(settings)  # invoices, mail, reports, reorders, carrier tracking


def _purchase_and_search(settings: Settings) -> None:
    from flashmart.actors.purchase import ensure_purchase_actors
    from flashmart.actors.search.actor import ensure_search_actors

    ensure_purchase_actors(settings)
    ensure_search_actors(settings)

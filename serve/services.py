"""The actor clients each Serve replica opens once, by name (routes find them in ctx.services)."""

from __future__ import annotations

from typing import Any

from flashmart.settings import Settings


async def open_services(settings: Settings) -> dict[str, Any]:
    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.actors.purchase import open_purchase_services
    from flashmart.actors.recommendations.client import RecommendationClient
    from flashmart.actors.search.actor import SearchClient
    from flashmart.serve.sold_out import SoldOutBoard
    from flashmart.storage.redis import async_redis, redis_timeouts

    services: dict[str, Any] = {
        "inventory": await InventoryClient.connect(settings),
        "search": await SearchClient.connect(settings),
        "recommendations": await RecommendationClient.connect(settings),
        # its own connection: it holds one in a blocking stream read
        "sold_out": SoldOutBoard.start(
            async_redis(settings.redis_url, max_connections=2, **redis_timeouts(settings))
        ),
    }
    services.update(await open_purchase_services(settings))  # carts, payments, checkout
    return services

"""Actor clients each replica opens. Each service module registers itself here in one line."""
from __future__ import annotations

from typing import Any

from flashmart.settings import Settings


async def open_services(settings: Settings) -> dict[str, Any]:
    services: dict[str, Any] = {}
    from actors.inventory.client import InventoryClient; services["inventory"] = await InventoryClient.connect(settings)  # noqa: E702 - issue 3
    from actors.search.actor import SearchClient; services["search"] = await SearchClient.connect(settings)  # noqa: E702 - issue 4
    from actors.purchase import open_purchase_services; services.update(await open_purchase_services(settings))  # noqa: E702 - issue 5
    return services

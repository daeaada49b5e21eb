"""The cart store's add script is pipelined (storage/cart_redis.py): the adds of one turn of the event
loop share one round trip to Redis, and each caller still gets its own answer, as if it had gone
alone. Real Redis."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from flashmart.actors.carts.state import Hold
from flashmart.storage.cart_redis import CartStore
from flashmart.storage.embedded import free_port
from flashmart.storage.redis import async_redis


class _Variant:  # a product no other test touches: its catalog version stays unset
    def __init__(self, sku: str) -> None:
        self.sku, self.name, self.price, self.weight_g, self.currency = sku, sku, "4.00", 100, "USD"
        self.product_id = 2_100_000_000 + uuid.uuid4().int % 10_000_000


def _add(store: CartStore, cart_id: str, variant, hold_id: str, quantity: int = 1):
    return store.add_hold(
        cart_id,
        None,
        variant,
        Hold(hold_id, quantity, 2e9),
        new_item_id=uuid.uuid4().hex[:12],
        items_max=10,
        catalog_version=None,
        check_room=False,
        units_max=5,
    )


def _counting_pipelines(redis) -> list:
    made = []
    pipeline = redis.pipeline

    def counted(*args, **kwargs):
        made.append(1)
        return pipeline(*args, **kwargs)

    redis.pipeline = counted
    return made


def test_the_adds_of_one_turn_share_one_round_trip_and_each_gets_its_own_answer(backing):
    async def scenario():
        redis = async_redis(backing.redis_url)
        store = CartStore(redis, 3600)
        pipelines = _counting_pipelines(redis)
        variant = _Variant(f"PIPE-{uuid.uuid4().hex[:8]}")
        carts = ["g" + uuid.uuid4().hex for _ in range(20)]
        shared = "g" + uuid.uuid4().hex
        outs = await asyncio.gather(
            *(_add(store, c, variant, f"h-{c}") for c in carts),
            *(_add(store, shared, variant, f"h-shared-{i}", 2) for i in range(3)),
        )
        assert len(pipelines) == 1  # 23 scripts, one round trip
        for cart_id, out in zip(carts, outs):
            assert out.status == "ok" and out.cart.cart_id == cart_id
            assert out.cart.item_by_sku(variant.sku).quantity == 1
        # the same cart three times in one pipeline: each script saw the one before it
        assert [o.status for o in outs[20:]] == ["ok", "ok", "too_many_units"]
        assert outs[21].cart.item_by_sku(variant.sku).quantity == 4
        stored = await store.load(shared)
        assert stored.item_by_sku(variant.sku).quantity == 4

        # Redis forgot the script (restart, SCRIPT FLUSH): it is loaded again and the adds still land
        await redis.script_flush()
        again = await asyncio.gather(*(_add(store, c, variant, f"h2-{c}") for c in carts[:5]))
        assert all(o.status == "ok" for o in again)
        assert (await store.load(carts[0])).item_by_sku(variant.sku).quantity == 2
        await redis.aclose()

    asyncio.run(scenario())


def test_a_failed_round_trip_reaches_every_add_of_the_pipeline(backing):
    """Negative: when the round trip fails, no add is answered ok (each caller gets the error)."""

    async def scenario():
        redis = async_redis(f"redis://127.0.0.1:{free_port()}/0", connect_timeout_s=1.0)
        store = CartStore(redis, 3600)
        variant = _Variant("PIPE-NOWHERE")
        outs = await asyncio.gather(
            *(_add(store, "g" + uuid.uuid4().hex, variant, f"h{i}") for i in range(4)),
            return_exceptions=True,
        )
        assert len(outs) == 4
        for out in outs:
            assert isinstance(out, (RedisConnectionError, OSError)), out
        await redis.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("calls", [1, 300])
def test_one_or_more_than_a_pipeline_holds_are_all_answered(backing, calls):
    async def scenario():
        redis = async_redis(backing.redis_url)
        store = CartStore(redis, 3600)
        variant = _Variant(f"PIPE-{uuid.uuid4().hex[:8]}")
        outs = await asyncio.gather(
            *(_add(store, "g" + uuid.uuid4().hex, variant, f"h{i}") for i in range(calls))
        )
        assert [o.status for o in outs] == ["ok"] * calls
        await redis.aclose()

    asyncio.run(scenario())

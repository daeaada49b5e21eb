"""Automatic reordering end to end: a burst of sales below the reorder point makes exactly one
purchase order, the supplier and the seller are emailed, and receiving it adds the units through
the inventory engine."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from tests.backoffice_helpers import mails_to, parts, run_backoffice, seller, seller_product
from tests.helpers import make_user
from tests.shop import add, inventory


def test_a_burst_below_the_reorder_point_makes_exactly_one_purchase_order(
    platform, api, db, warehouse
):
    owner, sid = seller(api, db, "reorder seller")
    owner_email = owner.email
    sku = seller_product(db, api, warehouse, sid, price="3.00", stock=12)
    supplier_email = f"supplier-{uuid.uuid4().hex[:8]}@example.com"
    sup = api.post(
        "/api/v1/suppliers", json={"name": "Acme", "email": supplier_email}, headers=owner.headers
    )
    assert sup.status_code == 201, sup.text
    rule = {
        "reorder_point": 5,
        "reorder_quantity": 20,
        "supplier_id": sup.json()["id"],
        "lead_time_days": 2,
    }
    r = api.put(f"/api/v1/reorder-rules/{sku}/{warehouse}", json=rule, headers=owner.headers)
    assert r.status_code == 200, r.text
    stranger, _ = seller(api, db, "someone else")
    assert (
        api.put(
            f"/api/v1/reorder-rules/{sku}/{warehouse}", json=rule, headers=stranger.headers
        ).status_code
        == 404
    )
    run_backoffice(["reorder"])
    assert not db.execute("SELECT 1 FROM purchase_orders WHERE sku = %s", (sku,)).fetchall()

    # the burst: ten buyers take a unit each (available 12 -> 2) while sweeps run at the same time
    buyers = [make_user(api, "customer") for _ in range(10)]

    def take_one(buyer):
        # a buyer's client retries an answer that says "try again" (503/429 on a loaded machine)
        for _ in range(5):
            r = add(api, buyer, sku, 1)
            if r.status_code not in (429, 503):
                return r
            time.sleep(float(r.headers.get("Retry-After", "1")))
        return r

    with ThreadPoolExecutor(max_workers=12) as pool:
        adds = [pool.submit(take_one, b) for b in buyers]
        sweeps = [pool.submit(run_backoffice, ["reorder"]) for _ in range(6)]
        codes = [f.result().status_code for f in adds]
        assert codes == [200] * len(buyers), [f.result().text[:200] for f in adds]
        [f.result() for f in sweeps]
    for _ in range(3):
        run_backoffice(["reorder"])
    pos = db.execute("SELECT * FROM purchase_orders WHERE sku = %s", (sku,)).fetchall()
    assert len(pos) == 1, pos
    po = pos[0]
    assert po["status"] == "open" and po["quantity"] == 20 and po["warehouse_id"] == warehouse

    # the supplier gets the order, the seller a low-stock alert
    (order_mail,) = mails_to(platform, supplier_email, subject_has=f"PO-{po['id']}")
    assert "20 unit(s)" in parts(order_mail)["text/plain"].decode()
    assert mails_to(platform, owner_email, subject_has=f"Low stock: {sku}")

    # received: the engine holds 20 more units in that warehouse
    before = inventory(platform, "stock", sku).warehouses[warehouse]
    got = api.post(f"/api/v1/purchase-orders/{po['id']}/receive", json={}, headers=owner.headers)
    assert got.status_code == 200, got.text
    assert got.json()["status"] == "received"
    after = inventory(platform, "stock", sku).warehouses[warehouse]
    assert after["on_hand"] == before["on_hand"] + 20
    assert after["available"] == before["available"] + 20
    again = api.post(f"/api/v1/purchase-orders/{po['id']}/receive", json={}, headers=owner.headers)
    assert again.status_code == 409
    audit = db.execute(
        "SELECT actor_id FROM audit_log WHERE action = 'purchase_order.receive' AND object_id = %s",
        (str(po["id"]),),
    ).fetchone()
    assert audit["actor_id"] == owner.id
    # stock is back above the point: the next sweep orders nothing more
    run_backoffice(["reorder"])
    assert len(db.execute("SELECT 1 FROM purchase_orders WHERE sku = %s", (sku,)).fetchall()) == 1


class AdminCountsStockMidReceipt:
    """The receipt's engine client, with a stock count an admin makes at the worst moment: the admin's
    set_stock lands after the receipt read the stock (if it reads) and before the receipt writes.
    Every call goes to the real inventory engine; only the order of the calls is chosen here."""

    def __init__(self, inventory, sku: str, warehouse: str, counted: int) -> None:
        self.inventory, self.sku, self.warehouse, self.counted = inventory, sku, warehouse, counted
        self.counted_done = False

    async def _admin_counts(self) -> None:
        if not self.counted_done:
            self.counted_done = True
            view = await self.inventory.set_stock(self.sku, self.warehouse, self.counted)
            assert view.on_hand == self.counted, view

    async def stock(self, sku):
        view = await self.inventory.stock(sku)
        await self._admin_counts()
        return view

    async def set_stock(self, *args):
        await self._admin_counts()
        return await self.inventory.set_stock(*args)

    async def add_stock(self, *args):
        await self._admin_counts()
        return await self.inventory.add_stock(*args)


def test_receiving_adds_to_a_stock_count_an_admin_sets_meanwhile(platform, api, db, warehouse):
    """An admin counts 50 units while a purchase order of 5 is being received: the warehouse ends
    with 55 in PostgreSQL (the receipt is a relative add), not the receipt's 10 + 5 that would have
    undone the count. The same receipt again adds nothing."""
    import asyncio
    import datetime as dt

    from flashmart.actors.inventory.client import InventoryClient
    from flashmart.actors.reordering.service import engine_receiver
    from flashmart.storage.postgres import open_async_pool
    from flashmart.storage.reordering_postgres import PostgresReorderStore

    owner, sid = seller(api, db, "counting seller")
    sku = seller_product(db, api, warehouse, sid, stock=10)
    sup = api.post(
        "/api/v1/suppliers",
        json={"name": "Acme", "email": f"s-{uuid.uuid4().hex[:8]}@example.com"},
        headers=owner.headers,
    )
    assert sup.status_code == 201, sup.text
    po_id = db.execute(
        "INSERT INTO purchase_orders (sku, warehouse_id, supplier_id, quantity, "
        "available_when_ordered, created_at, expected_at) VALUES (%s, %s, %s, 5, 10, now(), now()) "
        "RETURNING id",
        (sku, warehouse, sup.json()["id"]),
    ).fetchone()["id"]

    async def receive_while_the_admin_counts():
        pool = await open_async_pool(platform.database_url, max_size=2)
        try:
            inv = await InventoryClient.connect(platform)
            racing = AdminCountsStockMidReceipt(inv, sku, warehouse, 50)
            store = PostgresReorderStore(pool)
            now = dt.datetime.now(dt.UTC)
            out = await store.receive(po_id, 5, engine_receiver(racing), owner.id, now)
            assert racing.counted_done
            assert isinstance(out, dict) and out["status"] == "received", out
        finally:
            await pool.close()

    def on_hand_in_postgres() -> int:
        return db.execute(
            "SELECT on_hand FROM inventory_stock WHERE sku = %s AND warehouse_id = %s",
            (sku, warehouse),
        ).fetchone()["on_hand"]

    asyncio.run(receive_while_the_admin_counts())
    assert on_hand_in_postgres() == 55
    # the same receipt delivered again (a retry after a lost reply) adds nothing
    inventory(platform, "add_stock", sku, warehouse, 5, f"purchase-order:{po_id}")
    assert on_hand_in_postgres() == 55
    assert inventory(platform, "stock", sku).warehouses[warehouse]["on_hand"] == 55

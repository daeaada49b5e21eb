"""PostgresInventoryStore: the inventory engine's journal, snapshots and placements in PostgreSQL.

A group commit is one transaction: the journal rows go in with one COPY (the cheapest way to land
thousands of rows), the stock projection and snapshots ride along. Recovery reads the latest
snapshot of a SKU and the journal after it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from flashmart.actors.inventory.messages import (
    HoldCommitted,
    HoldExpired,
    HoldReleased,
    HoldTransferCancelled,
    HoldTransferExpected,
    HoldTransferred,
    HoldTransferredIn,
    HoldTransferredOut,
    SaleLimitSet,
    SalesArchived,
    SplitIntoBucketsDone,
    StockReserved,
    StockSet,
    StockTransferredIn,
    StockTransferredOut,
    UnitsReturned,
)
from flashmart.actors.inventory.ports import (
    JournalConflict,
    LoadedSku,
    Snapshot,
    StockRow,
    check_stored,
    missing_events,
)
from flashmart.actors.inventory.state import Hold
from flashmart.actors.inventory.warehouses import Location
from flashmart.storage.postgres import PgTimeouts, open_async_pool

JOURNAL_COLUMNS = (
    "sku, seq, kind, hold_id, buyer_id, order_id, quantity, warehouse_id, allocations, expires_at, "
    "upto_seq, ref"
)
NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _text(value: str) -> str:
    """A value for COPY's text format (ids are normally plain; escape only when needed)."""
    if (
        value.isprintable() and "\\" not in value
    ):  # no tab, newline, CR (not printable) nor backslash
        return value
    return value.translate(_ESCAPES)


_ALLOCATION_TEXT: dict[tuple, str] = {}


def _allocations_text(allocations: dict[str, int]) -> str:
    """COPY text of a reservation's allocations; the few distinct shapes are cached."""
    key = tuple(allocations.items())
    text = _ALLOCATION_TEXT.get(key)
    if text is None:
        text = _text(json.dumps(allocations))
        if len(_ALLOCATION_TEXT) < 10_000:
            _ALLOCATION_TEXT[key] = text
    return text


_SKU_TEXT: dict[str, str] = {}


def _sku_text(sku: str) -> str:
    text = _SKU_TEXT.get(sku)
    if text is None:
        text = _text(sku)
        if len(_SKU_TEXT) < 100_000:
            _SKU_TEXT[sku] = text
    return text


def journal_line(e: Any) -> str:
    """One COPY text line for an event. Hand-formatted: this runs for every reservation."""
    t = e.__class__
    if t is StockReserved:
        return (
            f"{_sku_text(e.sku)}\t{e.seq}\tStockReserved\t{_text(e.hold_id)}\t{e.buyer_id}\t\\N\t{e.quantity}\t"
            f"\\N\t{_allocations_text(e.allocations)}\t{e.expires_at!r}\t\\N\t\\N\n"
        )
    if t is HoldCommitted:
        return (
            f"{_sku_text(e.sku)}\t{e.seq}\tHoldCommitted\t{_text(e.hold_id)}\t\\N\t{_text(e.order_id)}"
            "\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n"
        )
    sku = _sku_text(e.sku)
    if t is HoldReleased or t is HoldExpired:
        return (
            f"{sku}\t{e.seq}\t{t.__name__}\t{_text(e.hold_id)}\t{NULL}\t{NULL}\t{NULL}\t{NULL}\t"
            f"{NULL}\t{NULL}\t{NULL}\t{NULL}\n"
        )
    if t is StockSet:
        return (
            f"{sku}\t{e.seq}\tStockSet\t{NULL}\t{NULL}\t{NULL}\t{e.on_hand}\t{_text(e.warehouse_id)}\t{NULL}\t"
            f"{NULL}\t{NULL}\t{NULL}\n"
        )
    if t is SaleLimitSet:  # the sale window's end rides in expires_at
        limit = NULL if e.per_buyer_limit is None else e.per_buyer_limit
        ends = NULL if e.window_ends_at is None else repr(e.window_ends_at)
        return (
            f"{sku}\t{e.seq}\tSaleLimitSet\t{NULL}\t{NULL}\t{NULL}\t{limit}\t{NULL}\t{NULL}\t"
            f"{ends}\t{NULL}\t{NULL}\n"
        )
    if t is UnitsReturned:
        ref = NULL if e.return_key is None else _text(e.return_key)
        return (
            f"{sku}\t{e.seq}\tUnitsReturned\t{NULL}\t{NULL}\t{_text(e.order_id)}\t{e.quantity}\t"
            f"{_text(e.warehouse_id)}\t{NULL}\t{NULL}\t{NULL}\t{ref}\n"
        )
    if t is SalesArchived:
        return (
            f"{sku}\t{e.seq}\tSalesArchived\t{NULL}\t{NULL}\t{NULL}\t{NULL}\t{NULL}\t{NULL}\t"
            f"{NULL}\t{e.upto_seq}\t{NULL}\n"
        )
    if t is StockTransferredOut or t is StockTransferredIn:  # the transfer id rides in hold_id
        return (
            f"{sku}\t{e.seq}\t{t.__name__}\t{_text(e.transfer_id)}\t{NULL}\t{NULL}\t{e.quantity}\t"
            f"{_text(e.warehouse_id)}\t{NULL}\t{NULL}\t{NULL}\t{NULL}\n"
        )
    if t is SplitIntoBucketsDone:
        return (
            f"{sku}\t{e.seq}\tSplitIntoBucketsDone\t{NULL}\t{NULL}\t{NULL}\t{e.buckets}\t{NULL}\t"
            f"{NULL}\t{NULL}\t{NULL}\t{NULL}\n"
        )
    # holds changing buyer (rare): the transfer id in ref; a hold's new buyer, units, allocations and expiry
    # in the columns a reservation uses, so that "the hold's latest allocations" is one query
    if t is HoldTransferred:
        return _line(
            sku,
            e.seq,
            "HoldTransferred",
            hold_id=e.hold_id,
            buyer_id=e.buyer_id,
            quantity=e.quantity,
            allocations=e.allocations,
            expires_at=e.expires_at,
        )
    if t is HoldTransferExpected:
        return _line(
            sku,
            e.seq,
            "HoldTransferExpected",
            hold_id=e.hold_id,
            buyer_id=e.buyer_id,
            quantity=e.quantity,
            ref=e.transfer_id,
        )
    if t is HoldTransferredOut:
        return _line(
            sku,
            e.seq,
            "HoldTransferredOut",
            hold_id=e.hold_id,
            quantity=sum(e.allocations.values()),
            allocations=e.allocations,
            expires_at=e.expires_at,
            ref=e.transfer_id,
        )
    if t is HoldTransferredIn:
        return _line(
            sku,
            e.seq,
            "HoldTransferredIn",
            hold_id=e.hold_id,
            buyer_id=e.buyer_id,
            quantity=e.quantity,
            allocations=e.allocations,
            expires_at=e.expires_at,
            ref=e.transfer_id,
        )
    if t is HoldTransferCancelled:
        return _line(sku, e.seq, "HoldTransferCancelled", ref=e.transfer_id)
    raise AssertionError(f"unknown event {e!r}")


def _line(
    sku: str,
    seq: int,
    kind: str,
    *,
    hold_id: str | None = None,
    buyer_id: int | None = None,
    quantity: int | None = None,
    allocations: dict | None = None,
    expires_at: float | None = None,
    ref: str | None = None,
) -> str:
    """A COPY line for the rarer events (order_id, warehouse_id and upto_seq NULL), column by column."""
    values = (
        sku,
        str(seq),
        kind,
        NULL if hold_id is None else _text(hold_id),
        NULL if buyer_id is None else str(buyer_id),
        NULL,
        NULL if quantity is None else str(quantity),
        NULL,
        NULL if allocations is None else _text(json.dumps(allocations)),
        NULL if expires_at is None else repr(float(expires_at)),
        NULL,
        NULL if ref is None else _text(ref),
    )
    return "\t".join(values) + "\n"


def event_from_row(r: dict) -> Any:
    kind, sku, seq = r["kind"], r["sku"], r["seq"]
    if kind == "StockReserved":
        return StockReserved(
            sku, seq, r["hold_id"], r["buyer_id"], r["quantity"], r["allocations"], r["expires_at"]
        )
    if kind == "HoldCommitted":
        return HoldCommitted(sku, seq, r["hold_id"], r["order_id"])
    if kind == "HoldReleased":
        return HoldReleased(sku, seq, r["hold_id"])
    if kind == "HoldExpired":
        return HoldExpired(sku, seq, r["hold_id"])
    if kind == "StockSet":
        return StockSet(sku, seq, r["warehouse_id"], r["quantity"])
    if kind == "SaleLimitSet":
        return SaleLimitSet(sku, seq, r["quantity"], r["expires_at"])
    if kind == "UnitsReturned":
        return UnitsReturned(sku, seq, r["order_id"], r["warehouse_id"], r["quantity"], r["ref"])
    if kind == "SalesArchived":
        return SalesArchived(sku, seq, r["upto_seq"])
    if kind == "StockTransferredOut":
        return StockTransferredOut(sku, seq, r["hold_id"], r["warehouse_id"], r["quantity"])
    if kind == "StockTransferredIn":
        return StockTransferredIn(sku, seq, r["hold_id"], r["warehouse_id"], r["quantity"])
    if kind == "SplitIntoBucketsDone":
        return SplitIntoBucketsDone(sku, seq, r["quantity"])
    if kind == "HoldTransferred":
        return HoldTransferred(
            sku, seq, r["hold_id"], r["buyer_id"], r["quantity"], r["allocations"], r["expires_at"]
        )
    if kind == "HoldTransferExpected":
        return HoldTransferExpected(sku, seq, r["ref"], r["hold_id"], r["buyer_id"], r["quantity"])
    if kind == "HoldTransferredOut":
        return HoldTransferredOut(
            sku, seq, r["ref"], r["hold_id"], r["allocations"], r["expires_at"]
        )
    if kind == "HoldTransferredIn":
        return HoldTransferredIn(
            sku,
            seq,
            r["ref"],
            r["hold_id"],
            r["buyer_id"],
            r["quantity"],
            r["allocations"],
            r["expires_at"],
        )
    if kind == "HoldTransferCancelled":
        return HoldTransferCancelled(sku, seq, r["ref"])
    raise AssertionError(f"unknown journal kind {kind!r}")


class PostgresInventoryStore:
    def __init__(
        self, database_url: str, *, pool_size_max: int = 3, timeouts: PgTimeouts | None = None
    ) -> None:
        self._url = database_url
        self._pool_size_max = pool_size_max
        self._timeouts = timeouts or PgTimeouts()
        self._pool = None

    async def open(self) -> None:
        if self._pool is None:
            self._pool = await open_async_pool(
                self._url, min_size=1, max_size=self._pool_size_max, timeouts=self._timeouts
            )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def append(
        self,
        events: Sequence[Any],
        stock: Sequence[StockRow],
        snapshots: Sequence[Snapshot],
        writer: str = "",
        epochs: Mapping[str, int] | None = None,
    ) -> None:
        skus = sorted({e.sku for e in events})
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            if epochs is not None:
                await self._fence(cur, writer, epochs)
            tails = await self._tails(cur, skus) if skus else {}
            # a retry after a lost COMMIT reply: write exactly what is missing, after checking that
            # what is stored at our seqs is ours (never "a duplicate, so all of it is durable")
            suffix, stored = missing_events(events, tails)
            if stored:
                check_stored(events, await self._stored_keys(cur, stored))
            payload = "".join(map(journal_line, suffix))
            if payload:
                async with cur.copy(
                    f"COPY inventory_journal ({JOURNAL_COLUMNS}) FROM STDIN"
                ) as copy:
                    await copy.write(payload)
            if stock:
                await cur.executemany(
                    "INSERT INTO inventory_stock (sku, warehouse_id, on_hand, held, sold, seq, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, now()) ON CONFLICT (sku, warehouse_id) DO UPDATE SET "
                    "on_hand = EXCLUDED.on_hand, held = EXCLUDED.held, sold = EXCLUDED.sold, seq = EXCLUDED.seq, "
                    "updated_at = now() WHERE inventory_stock.seq <= EXCLUDED.seq",
                    [(r.sku, r.warehouse_id, r.on_hand, r.held, r.sold, r.seq) for r in stock],
                )
            for snap in snapshots:
                await self._write_snapshot(cur, snap)

    @staticmethod
    async def _fence(cur, writer: str, epochs: Mapping[str, int]) -> None:
        """The writer's claims must still stand; FOR SHARE holds off a new claim until we commit."""
        rows = await (
            await cur.execute(
                "SELECT sku, writer, epoch FROM inventory_writers WHERE sku = ANY(%s) FOR SHARE",
                (sorted(epochs),),
            )
        ).fetchall()
        held = {r["sku"]: (r["writer"], r["epoch"]) for r in rows}
        for sku, epoch in epochs.items():
            if held.get(sku) != (writer, epoch):
                raise JournalConflict(
                    f"{sku}: {writer} (epoch {epoch}) is fenced out by {held.get(sku)}"
                )

    @staticmethod
    async def _tails(cur, skus: list[str]) -> dict[str, int]:
        # one index probe per SKU (a hot SKU has millions of rows: never aggregate over them)
        rows = await (
            await cur.execute(
                "SELECT s.sku, (SELECT max(j.seq) FROM inventory_journal j WHERE j.sku = s.sku) AS tail "
                "FROM unnest(%s::text[]) AS s(sku)",
                (skus,),
            )
        ).fetchall()
        return {r["sku"]: r["tail"] or 0 for r in rows}

    @staticmethod
    async def _stored_keys(cur, ranges: Mapping[str, tuple[int, int]]) -> dict[str, list]:
        keys: dict[str, list] = {}
        for sku, (first, last) in ranges.items():
            rows = await (
                await cur.execute(
                    "SELECT seq, kind, hold_id FROM inventory_journal WHERE sku = %s "
                    "AND seq BETWEEN %s AND %s",
                    (sku, first, last),
                )
            ).fetchall()
            keys[sku] = [(r["seq"], r["kind"], r["hold_id"]) for r in rows]
        return keys

    async def claim(self, sku: str, writer: str, *, moving: bool = False) -> int | None:
        async with self._pool.connection() as conn, conn.transaction():
            if not moving:
                being_moved = await (
                    await conn.execute(
                        "SELECT 1 FROM inventory_moves WHERE sku = %s FOR SHARE", (sku,)
                    )
                ).fetchone()
                if being_moved is not None:
                    return None
            row = await (
                await conn.execute(
                    "INSERT INTO inventory_writers (sku, writer, epoch) VALUES (%s, %s, 1) "
                    "ON CONFLICT (sku) DO UPDATE SET writer = EXCLUDED.writer, "
                    "epoch = inventory_writers.epoch + 1, claimed_at = now() RETURNING epoch",
                    (sku, writer),
                )
            ).fetchone()
        return row["epoch"]

    @staticmethod
    async def _write_snapshot(cur, snap: Snapshot) -> None:
        seq = snap.state["seq"]
        await cur.execute(
            "INSERT INTO inventory_snapshots (sku, seq, state, taken_at) VALUES (%s, %s, %s, now()) "
            "ON CONFLICT (sku) DO UPDATE SET seq = EXCLUDED.seq, state = EXCLUDED.state, taken_at = now()",
            (snap.sku, seq, Jsonb(snap.state)),
        )
        await cur.execute("DELETE FROM inventory_holds WHERE sku = %s", (snap.sku,))
        if snap.holds:
            async with cur.copy(
                "COPY inventory_holds (hold_id, sku, buyer_id, quantity, allocations, expires_at, "
                "snapshot_seq) FROM STDIN"
            ) as copy:
                for h in snap.holds:
                    await copy.write_row(
                        (
                            h.hold_id,
                            snap.sku,
                            h.buyer_id,
                            h.quantity,
                            json.dumps(h.allocations),
                            datetime.fromtimestamp(h.expires_at, UTC),
                            seq,
                        )
                    )

    async def held_skus(self, writer: str) -> list[str]:
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT w.sku FROM inventory_writers w WHERE w.writer = %s AND EXISTS "
                    "(SELECT 1 FROM inventory_stock s WHERE s.sku = w.sku AND s.held > 0) ORDER BY w.sku",
                    (writer,),
                )
            ).fetchall()
        return [r["sku"] for r in rows]

    async def latest_snapshot(self, sku: str) -> Snapshot | None:
        async with self._pool.connection() as conn:
            cur = conn.cursor()
            await cur.execute("SELECT seq, state FROM inventory_snapshots WHERE sku = %s", (sku,))
            row = await cur.fetchone()
            if row is None:
                return None
            await cur.execute(
                "SELECT hold_id, buyer_id, quantity, allocations, expires_at FROM inventory_holds "
                "WHERE sku = %s",
                (sku,),
            )
            holds = [
                Hold(
                    h["hold_id"],
                    h["buyer_id"],
                    h["quantity"],
                    h["allocations"],
                    h["expires_at"].timestamp(),
                )
                for h in await cur.fetchall()
            ]
        return Snapshot(sku, row["state"], holds)

    async def journal_after(self, sku: str, seq: int) -> AsyncIterator[Any]:
        async with self._pool.connection() as conn:
            cur = conn.cursor()
            async for r in cur.stream(
                f"SELECT {JOURNAL_COLUMNS} FROM inventory_journal WHERE sku = %s AND seq > %s ORDER BY seq",
                (sku, seq),
            ):
                yield event_from_row(r)

    async def load(self, sku: str) -> LoadedSku:
        snapshot = await self.latest_snapshot(sku)
        after = snapshot.state["seq"] if snapshot is not None else 0
        return LoadedSku(snapshot, [e async for e in self.journal_after(sku, after)])

    async def owner(self, sku: str) -> str | None:
        async with self._pool.connection() as conn:
            row = await (
                await conn.execute("SELECT shard FROM inventory_placement WHERE sku = %s", (sku,))
            ).fetchone()
        return row["shard"] if row else None

    async def set_owner(self, sku: str, shard: str, per_buyer_limit: int | None) -> None:
        """The new placement, and the end of the move that led to it, in one transaction."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO inventory_placement (sku, shard, per_buyer_limit) VALUES (%s, %s, %s) "
                "ON CONFLICT (sku) DO UPDATE SET shard = EXCLUDED.shard, per_buyer_limit = EXCLUDED.per_buyer_limit, "
                "moved_at = now()",
                (sku, shard, per_buyer_limit),
            )
            await conn.execute("DELETE FROM inventory_moves WHERE sku = %s", (sku,))

    async def begin_move(
        self, sku: str, source: str, target: str, per_buyer_limit: int | None
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO inventory_moves (sku, source, target, per_buyer_limit) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (sku) DO UPDATE SET target = EXCLUDED.target, per_buyer_limit = EXCLUDED.per_buyer_limit",
                (sku, source, target, per_buyer_limit),
            )

    async def unfinished_moves(self) -> list[dict]:
        async with self._pool.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT sku, source, target, per_buyer_limit FROM inventory_moves ORDER BY started_at"
                )
            ).fetchall()

    async def placements(self) -> dict[str, str]:
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT sku, shard FROM inventory_placement")
            ).fetchall()
        return {r["sku"]: r["shard"] for r in rows}

    async def order_units(self, sku: str, order_id: str) -> dict[str, int] | None:
        # a hold's allocations at its commit: those of its reservation, or of its last transfer (which may
        # have kept only part of its units, or brought it to this bucket)
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT r.allocations FROM inventory_journal c CROSS JOIN LATERAL ("
                    "  SELECT allocations FROM inventory_journal r WHERE r.hold_id = c.hold_id AND r.sku = c.sku "
                    "  AND r.seq < c.seq AND r.kind IN ('StockReserved', 'HoldTransferred', 'HoldTransferredIn') "
                    "  ORDER BY r.seq DESC LIMIT 1) r "
                    "WHERE c.order_id = %s AND c.kind = 'HoldCommitted' AND c.sku = %s",
                    (order_id, sku),
                )
            ).fetchall()
        if not rows:
            return None
        units: dict[str, int] = {}
        for r in rows:
            for wh, q in r["allocations"].items():
                units[wh] = units.get(wh, 0) + q
        return units

    async def order_returns(self, sku: str, order_id: str) -> list[list]:
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT seq, warehouse_id, quantity FROM inventory_journal "
                    "WHERE order_id = %s AND kind = 'UnitsReturned' AND sku = %s ORDER BY seq",
                    (order_id, sku),
                )
            ).fetchall()
        return [[r["seq"], r["warehouse_id"], r["quantity"]] for r in rows]

    async def bucket_counts(self) -> dict[str, int]:
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT sku, buckets FROM inventory_buckets")
            ).fetchall()
        return {r["sku"]: r["buckets"] for r in rows}

    async def set_buckets(self, sku: str, buckets: int) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO inventory_buckets (sku, buckets) VALUES (%s, %s) ON CONFLICT (sku) DO NOTHING",
                (sku, buckets),
            )

    async def begin_transfer(
        self,
        transfer_id: str,
        sku: str,
        from_key: str,
        to_key: str,
        warehouse_id: str,
        quantity: int,
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO inventory_transfers (transfer_id, sku, from_key, to_key, warehouse_id, quantity, state) "
                "VALUES (%s, %s, %s, %s, %s, %s, 'started')",
                (transfer_id, sku, from_key, to_key, warehouse_id, quantity),
            )

    async def transfer_state(self, transfer_id: str, state: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE inventory_transfers SET state = %s WHERE transfer_id = %s",
                (state, transfer_id),
            )

    async def unfinished_transfers(self) -> list[dict]:
        async with self._pool.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT transfer_id, sku, from_key, to_key, warehouse_id, quantity, state FROM inventory_transfers "
                    "WHERE state IN ('started', 'out') ORDER BY created_at"
                )
            ).fetchall()

    # --- holds moving between stock buckets (the directory's record, inventory_hold_transfers) ---------

    async def begin_hold_transfer(self, row: dict) -> dict:
        """Record a new attempt, or answer the live one of the same hold and buyer (a retried call)."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "INSERT INTO inventory_hold_transfers (transfer_id, sku, from_key, to_key, hold_id, "
                "new_hold_id, to_buyer, quantity, partial, ttl_s, state) "
                "VALUES (%(transfer_id)s, %(sku)s, %(from_key)s, %(to_key)s, %(hold_id)s, "
                "%(new_hold_id)s, %(to_buyer)s, %(quantity)s, %(partial)s, %(ttl_s)s, 'started') "
                "ON CONFLICT (hold_id, to_buyer) WHERE state <> 'failed' DO NOTHING RETURNING *",
                row,
            )
            new = await cur.fetchone()
            if new is not None:
                return new
            return await (
                await conn.execute(
                    "SELECT * FROM inventory_hold_transfers WHERE hold_id = %s AND to_buyer = %s AND state <> 'failed'",
                    (row["hold_id"], row["to_buyer"]),
                )
            ).fetchone()

    async def hold_transfer(self, transfer_id: str) -> dict:
        async with self._pool.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT * FROM inventory_hold_transfers WHERE transfer_id = %s", (transfer_id,)
                )
            ).fetchone()

    async def hold_transfer_state(self, transfer_id: str, state: str, **values: Any) -> None:
        sets = "".join(
            f", {column} = %({column})s" for column in values
        )  # column names are ours, not input
        async with self._pool.connection() as conn:
            await conn.execute(
                f"UPDATE inventory_hold_transfers SET state = %(state)s{sets} WHERE transfer_id = %(tid)s",
                {
                    "state": state,
                    "tid": transfer_id,
                    **{k: Jsonb(v) if isinstance(v, dict) else v for k, v in values.items()},
                },
            )

    async def unfinished_hold_transfers(self) -> list[dict]:
        async with self._pool.connection() as conn:
            return await (
                await conn.execute(
                    "SELECT * FROM inventory_hold_transfers WHERE state IN ('started', 'claimed', 'out') "
                    "ORDER BY created_at"
                )
            ).fetchall()

    async def locations(self) -> dict[str, Location]:
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT id, lat, lon FROM warehouses WHERE active")
            ).fetchall()
        return {r["id"]: (r["lat"], r["lon"]) for r in rows}

-- Inventory engine. The shard actors own the live state in memory; PostgreSQL holds the
-- append-only journal they write behind with group commit, plus snapshots for fast recovery.
-- Recovery of a SKU = latest snapshot (+ its holds) + journal entries with a higher seq.

-- Warehouses: the location feeds the seed's time/cost score (best warehouse for the buyer).
CREATE TABLE IF NOT EXISTS warehouses (
    id         text PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    name       text NOT NULL DEFAULT '',
    lat        double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lon        double precision NOT NULL CHECK (lon BETWEEN -180 AND 180),
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Stock per (sku, warehouse): a projection of the journal, refreshed at each group commit.
-- on_hand = available + held + sold; available is derived.
CREATE TABLE IF NOT EXISTS inventory_stock (
    sku          text NOT NULL,
    warehouse_id text NOT NULL,
    on_hand      integer NOT NULL CHECK (on_hand >= 0),
    held         integer NOT NULL DEFAULT 0 CHECK (held >= 0),
    sold         integer NOT NULL DEFAULT 0 CHECK (sold >= 0),
    seq          bigint NOT NULL DEFAULT 0,           -- journal seq this row reflects
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, warehouse_id),
    CHECK (held + sold <= on_hand)
);

-- Append-only journal: one row per event, seq increasing per SKU (the SKU's state follows it
-- from shard to shard when it becomes hot, so the order is per SKU, not per shard).
CREATE TABLE IF NOT EXISTS inventory_journal (
    sku          text NOT NULL,
    seq          bigint NOT NULL,
    kind         text NOT NULL,        -- event class: StockReserved, HoldCommitted, ...
    hold_id      text,
    buyer_id     bigint,
    order_id     text,
    quantity     integer,
    warehouse_id text,
    allocations  jsonb,                -- {warehouse_id: qty} of a reservation
    expires_at   double precision,     -- epoch seconds (a hold's exact expiry)
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, seq)
);
CREATE INDEX IF NOT EXISTS inventory_journal_hold ON inventory_journal (hold_id) WHERE hold_id IS NOT NULL;

-- Snapshot of a SKU's state (everything except live holds) at a journal seq.
CREATE TABLE IF NOT EXISTS inventory_snapshots (
    sku        text PRIMARY KEY,
    seq        bigint NOT NULL,
    state      jsonb NOT NULL,
    taken_at   timestamptz NOT NULL DEFAULT now()
);

-- Live holds (reservations) of a SKU as of its snapshot: owner, quantity, allocation, expiry.
CREATE TABLE IF NOT EXISTS inventory_holds (
    hold_id      text PRIMARY KEY,
    sku          text NOT NULL,
    buyer_id     bigint NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    allocations  jsonb NOT NULL,
    expires_at   timestamptz NOT NULL,
    snapshot_seq bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS inventory_holds_sku ON inventory_holds (sku);

-- Which shard owns a SKU when it is not the default cold shard (hot SKUs, flash sales).
CREATE TABLE IF NOT EXISTS inventory_placement (
    sku             text PRIMARY KEY,
    shard           text NOT NULL,
    per_buyer_limit integer CHECK (per_buyer_limit IS NULL OR per_buyer_limit > 0),
    moved_at        timestamptz NOT NULL DEFAULT now()
);

-- Inventory: a very hot SKU split into stock buckets on several shards (docs/inventory-buckets.md).
-- The buckets' keys are "{sku}#{i}" with their own journal and placement rows; the SKU itself is their pool.
CREATE TABLE IF NOT EXISTS inventory_buckets (
    sku        text PRIMARY KEY,
    buckets    integer NOT NULL CHECK (buckets >= 2),
    split_at   timestamptz NOT NULL DEFAULT now()
);

-- Units moving between the pool and buckets: started -> out (left the source, durable) -> done (arrived).
-- A coordinator that restarts finishes every transfer not done (both steps are idempotent by transfer_id).
CREATE TABLE IF NOT EXISTS inventory_transfers (
    transfer_id  text PRIMARY KEY,
    sku          text NOT NULL,
    from_key     text NOT NULL,
    to_key       text NOT NULL,
    warehouse_id text NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),
    state        text NOT NULL CHECK (state IN ('started', 'out', 'done', 'failed')),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS inventory_transfers_open ON inventory_transfers (created_at) WHERE state IN ('started', 'out');

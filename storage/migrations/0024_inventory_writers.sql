-- Inventory: the one writer of each SKU. A shard claims a SKU (a new epoch) before it serves it, and
-- every group commit checks its epochs inside its transaction (FOR SHARE), so a zombie incarnation
-- (a partition, or a restart during a move) can never write a SKU another shard has claimed since.
CREATE TABLE IF NOT EXISTS inventory_writers (
    sku        text PRIMARY KEY,
    writer     text NOT NULL,
    epoch      bigint NOT NULL CHECK (epoch > 0),
    claimed_at timestamptz NOT NULL DEFAULT now()
);

-- Inventory: a hot-SKU move in progress. Written before the old shard exports the SKU and
-- deleted in the transaction that writes the new placement, so a directory that dies mid-move finds
-- the move here on restart and finishes it (otherwise the old shard answers "moved" while the
-- placement still names it, until someone retries declare_hot).
CREATE TABLE IF NOT EXISTS inventory_moves (
    sku             text PRIMARY KEY,
    source          text NOT NULL,
    target          text NOT NULL,
    per_buyer_limit integer CHECK (per_buyer_limit IS NULL OR per_buyer_limit > 0),
    started_at      timestamptz NOT NULL DEFAULT now()
);

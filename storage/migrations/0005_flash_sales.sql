-- Flash sales: a SKU on sale at a price for a window, with a per-buyer limit. Declaring one makes
-- the SKU hot (a shard of its own in the inventory engine).
CREATE TABLE IF NOT EXISTS flash_sales (
    id              bigserial PRIMARY KEY,
    sku             text NOT NULL,
    sale_price      numeric(12,2) NOT NULL CHECK (sale_price >= 0),
    currency        text NOT NULL DEFAULT 'USD',
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    per_buyer_limit integer NOT NULL CHECK (per_buyer_limit > 0),
    created_by      bigint NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX IF NOT EXISTS flash_sales_sku_idx ON flash_sales (sku, starts_at);

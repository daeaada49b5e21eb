-- Recommendations: co-purchase counts from paid orders, per-product decaying signals (views, sales,
-- trend) that products.popularity is computed from, and the paid orders already counted (each order
-- is counted once: it is marked in the transaction that adds its counts).
CREATE TABLE IF NOT EXISTS co_purchases (
    product_id  bigint NOT NULL,
    other_id    bigint NOT NULL,
    count       integer NOT NULL CHECK (count > 0),
    PRIMARY KEY (product_id, other_id),
    CHECK (product_id < other_id)          -- one row per pair; both directions are read from it
);

CREATE TABLE IF NOT EXISTS product_signals (
    product_id  bigint PRIMARY KEY,
    category    text NOT NULL DEFAULT '',
    views       real NOT NULL DEFAULT 0,   -- decayed counts as of their *_at time
    views_at    double precision NOT NULL DEFAULT 0,
    sales       real NOT NULL DEFAULT 0,
    sales_at    double precision NOT NULL DEFAULT 0,
    trend       real NOT NULL DEFAULT 0,
    trend_at    double precision NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS recommendation_orders (
    order_id    text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

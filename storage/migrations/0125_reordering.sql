-- Automatic reordering: suppliers, a reorder rule per SKU and warehouse, purchase orders.
CREATE TABLE IF NOT EXISTS suppliers (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email      text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS reorder_rules (
    sku              text    NOT NULL,
    warehouse_id     text    NOT NULL,
    reorder_point    integer NOT NULL CHECK (reorder_point >= 0),
    reorder_quantity integer NOT NULL CHECK (reorder_quantity > 0),
    supplier_id      bigint  NOT NULL REFERENCES suppliers(id),
    lead_time_days   integer NOT NULL CHECK (lead_time_days BETWEEN 0 AND 365),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, warehouse_id)
);

CREATE TABLE IF NOT EXISTS purchase_orders (
    id                bigserial PRIMARY KEY,
    sku               text    NOT NULL,
    warehouse_id      text    NOT NULL,
    supplier_id       bigint  NOT NULL REFERENCES suppliers(id),
    quantity          integer NOT NULL CHECK (quantity > 0),
    status            text    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'received', 'cancelled')),
    available_when_ordered integer NOT NULL,
    created_at        timestamptz NOT NULL,
    expected_at       timestamptz NOT NULL,
    received_at       timestamptz,
    received_quantity integer CHECK (received_quantity IS NULL OR received_quantity > 0)
);
-- the rule "one open order per SKU and warehouse", kept by the database under any concurrency
CREATE UNIQUE INDEX IF NOT EXISTS purchase_orders_one_open ON purchase_orders (sku, warehouse_id)
    WHERE status = 'open';
CREATE INDEX IF NOT EXISTS purchase_orders_status ON purchase_orders (status, id);

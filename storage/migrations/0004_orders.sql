-- Orders, payments, checkout sagas, shipments, returns, coupons, store credit, outbox.
-- No foreign keys into other domains' tables (users, products): those are checked by the code that
-- writes here, so the migrations of each domain stay independent.
-- Money is numeric(12,2) in the order's currency; the gateway sees integer minor units.

CREATE TABLE IF NOT EXISTS orders (
    id                 text PRIMARY KEY,             -- uuid4 hex, also the payment idempotency key
    user_id            bigint,                       -- NULL for a guest checkout
    guest_email        text,
    status             text NOT NULL,                -- pending | review | confirmed | shipped | delivered | cancelled | failed | returned
    subtotal           numeric(12,2) NOT NULL,
    discount           numeric(12,2) NOT NULL DEFAULT 0,
    tax                numeric(12,2) NOT NULL DEFAULT 0,
    shipping           numeric(12,2) NOT NULL DEFAULT 0,
    grand_total        numeric(12,2) NOT NULL,
    currency           text NOT NULL DEFAULT 'USD',
    shipping_address   jsonb NOT NULL,
    billing_address    jsonb,
    shipping_method    text NOT NULL,
    estimated_delivery date,
    fraud_score        numeric(6,2),
    fraud_action       text,
    fraud_flags        jsonb NOT NULL DEFAULT '[]'::jsonb,
    coupon_code        text,
    idempotency_key    text NOT NULL,
    idempotency_scope  text NOT NULL,                -- 'u:<user_id>' or 'g:<guest cart id>'
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_buyer CHECK (user_id IS NOT NULL OR guest_email IS NOT NULL),
    CONSTRAINT orders_idempotency UNIQUE (idempotency_scope, idempotency_key)
);
CREATE INDEX IF NOT EXISTS orders_user_created ON orders (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS orders_status ON orders (status);

CREATE TABLE IF NOT EXISTS order_items (
    id           bigserial PRIMARY KEY,
    order_id     text NOT NULL REFERENCES orders(id),
    sku          text NOT NULL,
    product_id   text,
    name         text,
    quantity     integer NOT NULL CHECK (quantity > 0),
    unit_price   numeric(12,2) NOT NULL CHECK (unit_price >= 0),
    warehouse_id text,                               -- where the units come from (first allocation)
    allocations  jsonb NOT NULL DEFAULT '{}'::jsonb, -- {warehouse_id: qty} from the hold
    hold_id      text NOT NULL,
    returned_quantity integer NOT NULL DEFAULT 0 CHECK (returned_quantity >= 0 AND returned_quantity <= quantity)
);
CREATE INDEX IF NOT EXISTS order_items_order ON order_items (order_id);

CREATE TABLE IF NOT EXISTS payments (
    id                bigserial PRIMARY KEY,
    order_id          text NOT NULL REFERENCES orders(id),
    kind              text NOT NULL DEFAULT 'card',  -- card | store_credit | gift_card
    payment_intent_id text UNIQUE,                   -- gateway id (card payments only)
    payment_method    text,                          -- gateway token, never card data
    amount            numeric(12,2) NOT NULL CHECK (amount >= 0),
    currency          text NOT NULL DEFAULT 'USD',
    status            text NOT NULL,                 -- authorised | captured | voided | refunded | partially_refunded | failed
    refunded_amount   numeric(12,2) NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_refund_bound CHECK (refunded_amount >= 0 AND refunded_amount <= amount)
);
CREATE INDEX IF NOT EXISTS payments_order ON payments (order_id);

-- Gateway tokens only (pm_..., tok_...). PCI: a card number never reaches flashmart.
CREATE TABLE IF NOT EXISTS payment_methods (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL,
    token       text NOT NULL,
    brand       text,
    last_four   text CHECK (last_four IS NULL OR last_four ~ '^[0-9]{4}$'),
    first_used_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, token)
);

-- The saga's progress: the sweeper reads this to finish or undo a checkout left in doubt.
CREATE TABLE IF NOT EXISTS checkout_sagas (
    order_id          text PRIMARY KEY,
    idempotency_scope text NOT NULL,
    idempotency_key   text NOT NULL,
    user_id           bigint,
    step              text NOT NULL,     -- started | reserved | scored | authorising | authorised | order_written | committed | captured
    state             text NOT NULL,     -- running | done | failed | compensating
    payment_intent_id text,
    holds             jsonb NOT NULL DEFAULT '[]'::jsonb,
    request           jsonb NOT NULL,
    result            jsonb,             -- the first answer, replayed for a repeated Idempotency-Key
    result_status     integer,
    error             text,
    attempts          integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT checkout_sagas_idempotency UNIQUE (idempotency_scope, idempotency_key)
);
CREATE INDEX IF NOT EXISTS checkout_sagas_in_doubt ON checkout_sagas (updated_at) WHERE state IN ('running', 'compensating');

CREATE TABLE IF NOT EXISTS shipments (
    id               bigserial PRIMARY KEY,
    order_id         text NOT NULL REFERENCES orders(id),
    carrier          text NOT NULL DEFAULT 'flashmart-post',
    tracking_number  text NOT NULL UNIQUE,
    status           text NOT NULL DEFAULT 'label_created',  -- label_created | shipped | in_transit | out_for_delivery | delivered
    current_location text,
    shipped_at       timestamptz,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS shipments_order ON shipments (order_id);

-- The order timeline (placed, confirmed, shipped, in_transit, delivered, cancelled, refunded ...).
CREATE TABLE IF NOT EXISTS order_events (
    id         bigserial PRIMARY KEY,
    order_id   text NOT NULL REFERENCES orders(id),
    status     text NOT NULL,
    location   text,
    note       text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS order_events_order ON order_events (order_id, id);

CREATE TABLE IF NOT EXISTS shipment_events (
    id          bigserial PRIMARY KEY,
    shipment_id bigint NOT NULL REFERENCES shipments(id),
    status      text NOT NULL,
    location    text,
    actor_user_id bigint,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS shipment_events_shipment ON shipment_events (shipment_id, id);

CREATE TABLE IF NOT EXISTS returns (
    id           bigserial PRIMARY KEY,
    order_id     text NOT NULL REFERENCES orders(id),
    status       text NOT NULL DEFAULT 'refunded',   -- requested | refunded | rejected
    reason       text,
    items        jsonb NOT NULL,                      -- [{sku, quantity, warehouse_id}]
    refund_amount numeric(12,2) NOT NULL CHECK (refund_amount >= 0),
    restocked    boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS returns_order ON returns (order_id);

CREATE TABLE IF NOT EXISTS refunds (
    id             bigserial PRIMARY KEY,
    order_id       text NOT NULL REFERENCES orders(id),
    return_id      bigint REFERENCES returns(id),
    payment_id     bigint NOT NULL REFERENCES payments(id),
    gateway_refund_id text UNIQUE,
    amount         numeric(12,2) NOT NULL CHECK (amount > 0),
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS coupons (
    code            text PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('percentage', 'fixed', 'free_shipping')),
    value           numeric(12,2) NOT NULL DEFAULT 0 CHECK (value >= 0),
    min_spend       numeric(12,2) NOT NULL DEFAULT 0,
    expires_at      timestamptz,
    per_user_limit  integer CHECK (per_user_limit IS NULL OR per_user_limit > 0),
    total_limit     integer CHECK (total_limit IS NULL OR total_limit > 0),
    used_count      integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT coupons_percentage CHECK (kind <> 'percentage' OR value <= 100),
    CONSTRAINT coupons_total_limit CHECK (total_limit IS NULL OR used_count <= total_limit)
);

CREATE TABLE IF NOT EXISTS coupon_redemptions (
    id         bigserial PRIMARY KEY,
    code       text NOT NULL REFERENCES coupons(code),
    buyer      text NOT NULL,                          -- 'u:<id>' or 'g:<email>'
    order_id   text NOT NULL REFERENCES orders(id),
    discount   numeric(12,2) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (code, order_id)
);
CREATE INDEX IF NOT EXISTS coupon_redemptions_buyer ON coupon_redemptions (code, buyer);

-- Store credit and gift cards: one balance row each; every movement is a ledger row.
CREATE TABLE IF NOT EXISTS credit_accounts (
    id         text PRIMARY KEY,                       -- 'sc:<user_id>' store credit, 'gc:<code>' gift card
    kind       text NOT NULL CHECK (kind IN ('store_credit', 'gift_card')),
    user_id    bigint,
    balance    numeric(12,2) NOT NULL DEFAULT 0 CHECK (balance >= 0),
    currency   text NOT NULL DEFAULT 'USD',
    expires_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS credit_ledger (
    id         bigserial PRIMARY KEY,
    account_id text NOT NULL REFERENCES credit_accounts(id),
    order_id   text,
    amount     numeric(12,2) NOT NULL,                 -- negative = spent, positive = loaded / refunded
    reason     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS credit_ledger_account ON credit_ledger (account_id);

-- Transactional outbox: written in the same transaction as the order change, relayed to Redis.
CREATE TABLE IF NOT EXISTS outbox (
    id         bigserial PRIMARY KEY,
    topic      text NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    relayed_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unrelayed ON outbox (id) WHERE relayed_at IS NULL;

-- Stripe webhook events already applied (Stripe delivers at least once).
CREATE TABLE IF NOT EXISTS gateway_events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

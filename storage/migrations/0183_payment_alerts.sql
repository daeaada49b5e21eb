-- What the payment gateway told us that a person must look at: money received that is not what the
-- order's payment recorded (amount or currency), a charge the buyer's bank disputes. Written in the
-- transaction that applies the gateway's event (once per event), read by support.
CREATE TABLE IF NOT EXISTS payment_alerts (
    id               bigserial PRIMARY KEY,
    order_id         text   NOT NULL REFERENCES orders(id),
    payment_id       bigint REFERENCES payments(id),
    kind             text   NOT NULL CHECK (kind IN ('amount_mismatch', 'dispute')),
    gateway_event_id text   NOT NULL UNIQUE,
    details          jsonb  NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS payment_alerts_recent ON payment_alerts (id DESC);

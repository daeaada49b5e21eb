-- Carrier labels of shipments, and the tracking events carriers delivered (at least once: the
-- primary key recognises a redelivery).
CREATE TABLE IF NOT EXISTS carrier_labels (
    shipment_id     bigint PRIMARY KEY REFERENCES shipments(id),
    carrier         text   NOT NULL,
    service         text   NOT NULL,
    tracking_number text   NOT NULL,
    created_at      timestamptz NOT NULL,
    transit_days    integer NOT NULL,
    price           numeric(12,2) NOT NULL,
    parcel          jsonb  NOT NULL,                  -- origin, destination, weight_g
    pushed_seq      integer NOT NULL DEFAULT 0,       -- simulator: events delivered to the webhook
    UNIQUE (carrier, tracking_number)
);
CREATE INDEX IF NOT EXISTS carrier_labels_unfinished ON carrier_labels (carrier) WHERE pushed_seq < 4;

CREATE TABLE IF NOT EXISTS carrier_events (
    carrier         text    NOT NULL,
    tracking_number text    NOT NULL,
    seq             integer NOT NULL,
    status          text    NOT NULL,
    location        text,
    at              timestamptz NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    outcome         text,                             -- applied, or why the shipment did not move
    PRIMARY KEY (carrier, tracking_number, seq)
);

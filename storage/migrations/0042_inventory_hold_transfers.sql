-- Inventory: an operation's own id, recorded with its event so that a retry answers the first
-- result: a return's key (UnitsReturned) and a hold transfer's id (HoldTransferExpected, HoldTransferredOut,
-- HoldTransferredIn, HoldTransferCancelled). NULL for every other event.
ALTER TABLE inventory_journal ADD COLUMN IF NOT EXISTS ref text;

-- A hold given to a buyer whose home stock bucket is another one (docs/inventory-buckets.md): the
-- directory claims the new buyer's limit in the target (claimed), takes the hold's units out of the source
-- (out: the units are in transit, their allocations and expiry here), adds them and the hold in the target
-- (done), or gives the claim back when the source refused (failed: nothing changed). A directory that
-- restarts finishes every transfer not done or failed. One live attempt per (hold, buyer).
CREATE TABLE IF NOT EXISTS inventory_hold_transfers (
    transfer_id  text PRIMARY KEY,
    sku          text NOT NULL,
    from_key     text NOT NULL,
    to_key       text NOT NULL,
    hold_id      text NOT NULL,
    new_hold_id  text NOT NULL,
    to_buyer     bigint NOT NULL,
    quantity     integer NOT NULL CHECK (quantity > 0),            -- the hold's units
    partial      boolean NOT NULL,
    ttl_s        double precision,
    claimed      integer CHECK (claimed IS NULL OR claimed > 0),  -- units the target's limit took
    allocations  jsonb,                                           -- the units in transit (state out)
    expires_at   double precision,
    state        text NOT NULL CHECK (state IN ('started', 'claimed', 'out', 'done', 'failed')),
    refused      text,                                            -- the refusal's reason (state failed)
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS inventory_hold_transfers_live ON inventory_hold_transfers (hold_id, to_buyer)
    WHERE state <> 'failed';
CREATE INDEX IF NOT EXISTS inventory_hold_transfers_open ON inventory_hold_transfers (created_at)
    WHERE state IN ('started', 'claimed', 'out');

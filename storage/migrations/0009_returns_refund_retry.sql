-- A return left 'approved' (units back in stock) whose refund failed at the gateway is refunded by the
-- sweeper once refund_retry_at is older than saga_stale_s, so a buyer's money does not wait for support
-- to press "approve" again. Set at approval; a failed retry moves it to now(), to the back of the queue,
-- so returns the gateway keeps refusing cannot hold up the others.
ALTER TABLE returns ADD COLUMN IF NOT EXISTS refund_retry_at timestamptz;
UPDATE returns SET refund_retry_at = created_at WHERE status = 'approved' AND refund_retry_at IS NULL;
CREATE INDEX IF NOT EXISTS returns_refund_due ON returns (refund_retry_at) WHERE status = 'approved';

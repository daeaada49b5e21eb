-- When a return was approved (units back in stock, refund due): the sweeper finishes the refund of a
-- return left 'approved' by a gateway failure once it is older than saga_stale_s, so a buyer's money
-- does not wait for support to press "approve" again.
ALTER TABLE returns ADD COLUMN IF NOT EXISTS approved_at timestamptz;
UPDATE returns SET approved_at = created_at WHERE status = 'approved' AND approved_at IS NULL;

-- Sagas the sweeper failed while an authorisation may still have been on its way (steps authorising /
-- authorised) are looked at once more, later, for an authorisation that arrived or whose void failed
-- after the sweep. void_checked_at records that second look.
ALTER TABLE checkout_sagas ADD COLUMN IF NOT EXISTS void_checked_at timestamptz;
CREATE INDEX IF NOT EXISTS checkout_sagas_void_recheck ON checkout_sagas (updated_at)
    WHERE state = 'failed' AND attempts > 0 AND void_checked_at IS NULL;

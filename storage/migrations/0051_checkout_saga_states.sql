-- A checkout saga is running, done or failed (actors/checkout/steps.py): undoing one happens while it
-- is running, so no 'compensating' state was ever written. The sweeper's index and the table say so,
-- and a state nothing knows is refused.
DROP INDEX IF EXISTS checkout_sagas_in_doubt;
CREATE INDEX IF NOT EXISTS checkout_sagas_running ON checkout_sagas (updated_at) WHERE state = 'running';
ALTER TABLE checkout_sagas DROP CONSTRAINT IF EXISTS checkout_sagas_state;
ALTER TABLE checkout_sagas ADD CONSTRAINT checkout_sagas_state
    CHECK (state IN ('running', 'done', 'failed'));
COMMENT ON COLUMN checkout_sagas.state IS 'running | done | failed';

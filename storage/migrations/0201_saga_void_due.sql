-- A checkout that could not confirm the void of an authorisation that may exist (every authorise
-- attempt went unanswered, or the undo's void failed) is marked for the sweeper's late void check,
-- which searches the gateway by the order id again later and voids what it finds.
ALTER TABLE checkout_sagas ADD COLUMN IF NOT EXISTS void_due boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS checkout_sagas_void_due ON checkout_sagas (updated_at)
    WHERE void_due AND void_checked_at IS NULL;

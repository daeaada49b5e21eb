-- Refunds carry their currency, like the orders, payments and invoices they belong to: a refund is
-- in the currency of the payment it gives back (the gateway refunds in the charge's currency), so
-- the column is filled from the payment when a writer leaves it out.
ALTER TABLE refunds ADD COLUMN IF NOT EXISTS currency text;
UPDATE refunds r SET currency = p.currency FROM payments p WHERE p.id = r.payment_id AND r.currency IS NULL;

CREATE OR REPLACE FUNCTION refunds_currency_of_payment() RETURNS trigger AS $$
BEGIN
    IF NEW.currency IS NULL THEN
        SELECT currency INTO NEW.currency FROM payments WHERE id = NEW.payment_id;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS refunds_currency ON refunds;
CREATE TRIGGER refunds_currency BEFORE INSERT ON refunds
    FOR EACH ROW EXECUTE FUNCTION refunds_currency_of_payment();

ALTER TABLE refunds ALTER COLUMN currency SET NOT NULL;

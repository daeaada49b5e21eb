-- Invoices and credit notes: immutable documents with gap-free numbers per series and year.
-- A number is taken from invoice_counters with the counter row locked in the transaction that
-- inserts the document, so a rolled-back issue gives its number back and two issuers never share one.
-- Amounts are positive on both kinds; a credit note reduces what its invoice charged.

CREATE TABLE IF NOT EXISTS invoice_counters (
    series      text    NOT NULL,
    year        integer NOT NULL,
    last_number integer NOT NULL DEFAULT 0 CHECK (last_number >= 0),
    PRIMARY KEY (series, year)
);

CREATE TABLE IF NOT EXISTS invoices (
    id          bigserial PRIMARY KEY,
    kind        text    NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
    series      text    NOT NULL,
    year        integer NOT NULL,
    number      integer NOT NULL CHECK (number > 0),
    code        text    NOT NULL UNIQUE,              -- INV-2026-000042
    order_id    text    NOT NULL,
    refund_id   bigint  UNIQUE,                       -- the refund a credit note documents
    invoice_id  bigint  REFERENCES invoices(id),      -- the invoice a credit note corrects
    issued_at   timestamptz NOT NULL,
    currency    text    NOT NULL,
    issuer      jsonb   NOT NULL,                     -- name, address, tax id of who invoices
    buyer       jsonb   NOT NULL,                     -- name, email, address
    subtotal    numeric(12,2) NOT NULL,               -- goods before discount
    discount    numeric(12,2) NOT NULL,
    shipping    numeric(12,2) NOT NULL,
    tax         numeric(12,2) NOT NULL,
    total       numeric(12,2) NOT NULL,
    note        text,
    UNIQUE (series, year, number),
    CONSTRAINT invoices_credit_note_refers CHECK (kind = 'invoice' OR invoice_id IS NOT NULL)
);
CREATE UNIQUE INDEX IF NOT EXISTS invoices_one_per_order ON invoices (order_id) WHERE kind = 'invoice';
CREATE INDEX IF NOT EXISTS invoices_order ON invoices (order_id);

CREATE TABLE IF NOT EXISTS invoice_lines (
    invoice_id  bigint  NOT NULL REFERENCES invoices(id),
    position    integer NOT NULL,
    sku         text,
    description text    NOT NULL,
    seller_id   bigint,
    seller_name text,
    quantity    integer NOT NULL CHECK (quantity > 0),
    unit_price  numeric(12,2) NOT NULL,
    discount    numeric(12,2) NOT NULL,
    net         numeric(12,2) NOT NULL,              -- quantity * unit_price - discount
    tax_rate    numeric(7,4)  NOT NULL,
    tax         numeric(12,2) NOT NULL,
    total       numeric(12,2) NOT NULL,              -- net + tax
    PRIMARY KEY (invoice_id, position)
);
CREATE INDEX IF NOT EXISTS invoice_lines_seller ON invoice_lines (seller_id);

CREATE OR REPLACE FUNCTION invoices_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is immutable: issue a credit note instead (% refused)', TG_TABLE_NAME, TG_OP;
END;
$$;

DROP TRIGGER IF EXISTS invoices_no_change ON invoices;
CREATE TRIGGER invoices_no_change BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
DROP TRIGGER IF EXISTS invoices_no_truncate ON invoices;
CREATE TRIGGER invoices_no_truncate BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_immutable();
DROP TRIGGER IF EXISTS invoice_lines_no_change ON invoice_lines;
CREATE TRIGGER invoice_lines_no_change BEFORE UPDATE OR DELETE ON invoice_lines
    FOR EACH ROW EXECUTE FUNCTION invoices_immutable();
DROP TRIGGER IF EXISTS invoice_lines_no_truncate ON invoice_lines;
CREATE TRIGGER invoice_lines_no_truncate BEFORE TRUNCATE ON invoice_lines
    FOR EACH STATEMENT EXECUTE FUNCTION invoices_immutable();

-- Reports and the invoicing sweep read orders by time.
CREATE INDEX IF NOT EXISTS orders_created_at ON orders (created_at);

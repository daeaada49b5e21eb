-- A flash sale's per-buyer limit holds per person, not per cart:
-- - a sale is for signed-in buyers unless it says guests are allowed (a guest's buyer id is its
--   cart id, so a guest would buy the limit again with every new cart);
-- - every unit bought in a sale is recorded with the buyer's email and the card's fingerprint (the
--   gateway's), so the checkout counts the limit by email and by card too.
ALTER TABLE flash_sales ADD COLUMN IF NOT EXISTS guests_allowed boolean NOT NULL DEFAULT false;

CREATE TABLE IF NOT EXISTS flash_sale_purchases (
    order_id         text    NOT NULL REFERENCES orders(id),
    sale_id          bigint  NOT NULL REFERENCES flash_sales(id),
    sku              text    NOT NULL,
    email            text    NOT NULL,
    card_fingerprint text,
    quantity         integer NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (order_id, sku)
);
CREATE INDEX IF NOT EXISTS flash_sale_purchases_email_idx ON flash_sale_purchases (sale_id, email);
CREATE INDEX IF NOT EXISTS flash_sale_purchases_card_idx
    ON flash_sale_purchases (sale_id, card_fingerprint) WHERE card_fingerprint IS NOT NULL;

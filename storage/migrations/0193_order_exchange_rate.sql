-- The exchange rate an order's US-dollar amounts (the carrier's quote, the free-shipping threshold,
-- fixed-amount coupons) were converted at, in units of the order's currency per dollar: NULL for an
-- order in dollars, or one that converted nothing.
ALTER TABLE orders ADD COLUMN IF NOT EXISTS exchange_rate numeric(18, 6)
    CHECK (exchange_rate IS NULL OR exchange_rate > 0);

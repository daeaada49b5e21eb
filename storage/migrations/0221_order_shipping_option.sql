-- The carrier quote a buyer chose at checkout (carrier:service:price); orders.shipping is its price
-- as charged (zero when a coupon or a member plan ships it free).
ALTER TABLE orders ADD COLUMN IF NOT EXISTS shipping_option text;

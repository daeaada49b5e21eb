-- An order of digital items only (video, music, e-books sold once) ships nothing: it has no
-- shipping address. Orders with physical items still always have one (the checkout refuses
-- a cart with physical items and no address).
ALTER TABLE orders ALTER COLUMN shipping_address DROP NOT NULL;

-- Product images uploaded by sellers: resized renditions in the object store. url is the large
-- rendition (or an external URL given by the seller, which has no renditions); thumb_url and
-- medium_url are the smaller ones; object_keys lists what to delete from the store with the row.
ALTER TABLE product_images ADD COLUMN IF NOT EXISTS thumb_url text;
ALTER TABLE product_images ADD COLUMN IF NOT EXISTS medium_url text;
ALTER TABLE product_images ADD COLUMN IF NOT EXISTS object_keys text[] NOT NULL DEFAULT '{}';
ALTER TABLE product_images ADD COLUMN IF NOT EXISTS width integer;
ALTER TABLE product_images ADD COLUMN IF NOT EXISTS height integer;

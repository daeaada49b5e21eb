-- Every UPDATE of a product moves its updated_at, unless the statement sets updated_at itself.
-- The search writer re-indexes the products updated after its watermark when it (re)starts and every
-- few seconds (docs/search.md): a fix made in SQL reaches search too, not only the API's writes.
CREATE OR REPLACE FUNCTION products_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS products_touch ON products;
CREATE TRIGGER products_touch BEFORE UPDATE ON products
    FOR EACH ROW WHEN (NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at)
    EXECUTE FUNCTION products_touch();

-- Catalog: sellers, a category tree, products with variants and images.
-- PostgreSQL stays the source of truth; the Tantivy search actor indexes products from here.
-- The tsvector column + GIN index exist for PostgreSQL full-text search, which the search
-- benchmark runs side by side with Tantivy on the same queries.

CREATE TABLE IF NOT EXISTS sellers (
    id          bigserial PRIMARY KEY,
    user_id     bigint UNIQUE,                    -- the seller's login (users.id); NULL for generated sellers
    name        text NOT NULL,
    rating      numeric(3,2) NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- users comes from 0001 (identity). Reference it when it is there, so this migration applies
-- on its own as well.
DO $$
BEGIN
    IF to_regclass('users') IS NOT NULL THEN
        ALTER TABLE sellers ADD CONSTRAINT sellers_user_fk FOREIGN KEY (user_id) REFERENCES users(id);
    END IF;
END $$;

-- A tree. path is the materialised path of slugs ("electronics/computers/laptops"), so a
-- subtree is `path = X OR path LIKE X || '/%'` and the search index stores every ancestor path.
CREATE TABLE IF NOT EXISTS categories (
    id          bigserial PRIMARY KEY,
    parent_id   bigint REFERENCES categories(id),
    name        text NOT NULL,
    slug        text NOT NULL,
    path        text NOT NULL UNIQUE,
    depth       smallint NOT NULL DEFAULT 0,
    UNIQUE (parent_id, slug)
);
CREATE INDEX IF NOT EXISTS categories_parent_idx ON categories (parent_id);
CREATE INDEX IF NOT EXISTS categories_path_pattern_idx ON categories (path text_pattern_ops);

CREATE TABLE IF NOT EXISTS products (
    id            bigserial PRIMARY KEY,
    seller_id     bigint NOT NULL REFERENCES sellers(id),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 300),
    description   text NOT NULL DEFAULT '',
    brand         text NOT NULL DEFAULT '',
    category_id   bigint REFERENCES categories(id),
    price         numeric(12,2) NOT NULL CHECK (price >= 0),
    currency      char(3) NOT NULL DEFAULT 'USD',
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    rating        numeric(3,2) NOT NULL DEFAULT 0 CHECK (rating BETWEEN 0 AND 5),
    review_count  integer NOT NULL DEFAULT 0 CHECK (review_count >= 0),
    weight_g      integer CHECK (weight_g >= 0),
    attributes    jsonb NOT NULL DEFAULT '{}'::jsonb,   -- product-level specs, for compare
    -- denormalised stock status (any variant sellable); written by stock-status updates
    in_stock      boolean NOT NULL DEFAULT false,
    popularity    real NOT NULL DEFAULT 0,              -- 0..1, Zipf-shaped, boosts relevance a little
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    search_tsv    tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', name), 'A') ||
        setweight(to_tsvector('english', brand), 'B') ||
        setweight(to_tsvector('english', description), 'C')
    ) STORED
);
CREATE INDEX IF NOT EXISTS products_seller_idx ON products (seller_id);
CREATE INDEX IF NOT EXISTS products_category_idx ON products (category_id);
CREATE INDEX IF NOT EXISTS products_price_idx ON products (price);
CREATE INDEX IF NOT EXISTS products_updated_idx ON products (updated_at);
CREATE INDEX IF NOT EXISTS products_search_gin ON products USING gin (search_tsv);

CREATE TABLE IF NOT EXISTS product_variants (
    id                bigserial PRIMARY KEY,
    product_id        bigint NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    sku               text NOT NULL UNIQUE CHECK (length(sku) BETWEEN 1 AND 100),
    attributes        jsonb NOT NULL DEFAULT '{}'::jsonb,   -- {"color": "silver", "size": "M"}
    price_adjustment  numeric(12,2) NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS product_variants_product_idx ON product_variants (product_id);

CREATE TABLE IF NOT EXISTS product_images (
    id          bigserial PRIMARY KEY,
    product_id  bigint NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    url         text NOT NULL CHECK (length(url) BETWEEN 1 AND 2000),
    position    smallint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS product_images_product_idx ON product_images (product_id, position);

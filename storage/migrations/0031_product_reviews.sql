-- Product reviews: one review per buyer and product; products.rating / review_count and a
-- per-star histogram are kept exact in the same transaction as every review write
-- (storage/reviews_postgres.py). No foreign key to users (owned by identity, like 0004's orders):
-- the route checks the author is a signed-in buyer.

CREATE TABLE IF NOT EXISTS product_reviews (
    id          bigserial PRIMARY KEY,
    product_id  bigint NOT NULL REFERENCES products(id) ON DELETE CASCADE,
    user_id     bigint NOT NULL,
    rating      smallint NOT NULL CHECK (rating BETWEEN 1 AND 5),
    title       text CHECK (length(title) <= 120),
    body        text NOT NULL DEFAULT '' CHECK (length(body) <= 5000),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT product_reviews_once UNIQUE (product_id, user_id)
);
-- the public list per product: "newest" reads the first index in order, "lowest" the second; "highest"
-- reads the second backwards and sorts within each rating
CREATE INDEX IF NOT EXISTS product_reviews_newest ON product_reviews (product_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS product_reviews_by_rating ON product_reviews (product_id, rating, created_at DESC, id DESC);

-- The aggregate of a product's real reviews, rewritten from product_reviews under the product's row
-- lock at every review write. The CHECKs make a histogram that disagrees with its totals impossible.
-- seed_rating / seed_count keep what the catalog said before the first real review (the synthetic
-- generator writes products.rating / review_count without review rows), restored when the last
-- real review goes: see reviews_postgres.py for the rule.
CREATE TABLE IF NOT EXISTS product_rating_stats (
    product_id    bigint PRIMARY KEY REFERENCES products(id) ON DELETE CASCADE,
    review_count  integer NOT NULL DEFAULT 0,
    rating_sum    integer NOT NULL DEFAULT 0,
    stars_1       integer NOT NULL DEFAULT 0 CHECK (stars_1 >= 0),
    stars_2       integer NOT NULL DEFAULT 0 CHECK (stars_2 >= 0),
    stars_3       integer NOT NULL DEFAULT 0 CHECK (stars_3 >= 0),
    stars_4       integer NOT NULL DEFAULT 0 CHECK (stars_4 >= 0),
    stars_5       integer NOT NULL DEFAULT 0 CHECK (stars_5 >= 0),
    seed_rating   numeric(3,2) NOT NULL DEFAULT 0 CHECK (seed_rating BETWEEN 0 AND 5),
    seed_count    integer NOT NULL DEFAULT 0 CHECK (seed_count >= 0),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT product_rating_stats_count CHECK (review_count = stars_1 + stars_2 + stars_3 + stars_4 + stars_5),
    CONSTRAINT product_rating_stats_sum CHECK (rating_sum = stars_1 + 2 * stars_2 + 3 * stars_3 + 4 * stars_4 + 5 * stars_5)
);

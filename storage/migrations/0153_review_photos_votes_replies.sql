-- Reviews, richer: photos (renditions in the object store, keys here), "helpful" votes (one per
-- buyer, never on one's own review: the route checks the author), reports by buyers (one each), and
-- one reply by the product's seller. helpful_count / report_count are kept in the transaction of each
-- vote or report (the vote rows are the truth; the counts let "most helpful" read one index).
ALTER TABLE product_reviews ADD COLUMN IF NOT EXISTS helpful_count integer NOT NULL DEFAULT 0
    CHECK (helpful_count >= 0);
ALTER TABLE product_reviews ADD COLUMN IF NOT EXISTS report_count integer NOT NULL DEFAULT 0
    CHECK (report_count >= 0);
CREATE INDEX IF NOT EXISTS product_reviews_helpful
    ON product_reviews (product_id, helpful_count DESC, created_at DESC, id DESC);

CREATE TABLE IF NOT EXISTS review_photos (
    id          bigserial PRIMARY KEY,
    review_id   bigint NOT NULL REFERENCES product_reviews(id) ON DELETE CASCADE,
    thumb_key   text NOT NULL,
    large_key   text NOT NULL,
    width       integer NOT NULL CHECK (width > 0),
    height      integer NOT NULL CHECK (height > 0),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS review_photos_review ON review_photos (review_id, id);

CREATE TABLE IF NOT EXISTS review_votes (
    review_id   bigint NOT NULL REFERENCES product_reviews(id) ON DELETE CASCADE,
    user_id     bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (review_id, user_id)
);

CREATE TABLE IF NOT EXISTS review_reports (
    review_id   bigint NOT NULL REFERENCES product_reviews(id) ON DELETE CASCADE,
    user_id     bigint NOT NULL,
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (review_id, user_id)
);

CREATE TABLE IF NOT EXISTS review_replies (
    review_id   bigint PRIMARY KEY REFERENCES product_reviews(id) ON DELETE CASCADE,  -- once
    seller_id   bigint NOT NULL,
    user_id     bigint NOT NULL,
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 2000),
    created_at  timestamptz NOT NULL DEFAULT now()
);

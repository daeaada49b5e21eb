-- Search synonyms an operator edits (admin routes): each row is a group of equivalent words or short
-- phrases, lower-cased. Applied when queries are parsed (the search readers load the list); the index
-- is never rebuilt for them.
CREATE TABLE IF NOT EXISTS search_synonyms (
    id          bigserial PRIMARY KEY,
    members     text[] NOT NULL CHECK (cardinality(members) BETWEEN 2 AND 20),
    created_by  bigint,
    created_at  timestamptz NOT NULL DEFAULT now()
);

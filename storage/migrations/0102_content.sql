-- Digital content: items (video, music, e-book) whose files live in the object store, what members
-- and buyers may open (an item is in the library from a membership tier, or sold once by SKU, or
-- both), playback/reading positions, and engagement counters for the reports.

CREATE TABLE IF NOT EXISTS content_items (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('video', 'music', 'ebook')),
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 300),
    owner_id      bigint NOT NULL,                -- the uploader (a seller or an admin)
    min_tier      integer CHECK (min_tier IS NULL OR min_tier >= 0),  -- in the library from this tier
    sku           text UNIQUE,                    -- bought once through the checkout
    status        text NOT NULL DEFAULT 'uploading' CHECK (status IN ('uploading', 'processing', 'ready', 'failed')),
    object_key    text NOT NULL,
    content_type  text NOT NULL,
    size_bytes    bigint,
    duration_s    numeric(12,3),
    renditions    jsonb NOT NULL DEFAULT '[]'::jsonb,  -- HLS: [{name, height, bandwidth, playlist_key}]
    failure       text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS content_items_library ON content_items (kind, min_tier) WHERE status = 'ready';

CREATE TABLE IF NOT EXISTS content_positions (
    user_id    bigint NOT NULL,
    item_id    bigint NOT NULL REFERENCES content_items(id),
    position_s numeric(12,3) NOT NULL CHECK (position_s >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, item_id)
);

CREATE TABLE IF NOT EXISTS content_engagement (
    item_id     bigint NOT NULL REFERENCES content_items(id),
    user_id     bigint NOT NULL,
    plays       integer NOT NULL DEFAULT 0,
    seconds     numeric(14,3) NOT NULL DEFAULT 0,
    completions integer NOT NULL DEFAULT 0,
    last_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, user_id)
);

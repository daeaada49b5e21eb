-- Videos are encoded off the request path by the content encoder: the uploader follows the
-- item's progress while it is 'processing' (percent of its renditions made).
ALTER TABLE content_items
    ADD COLUMN IF NOT EXISTS progress_pct smallint NOT NULL DEFAULT 0
        CHECK (progress_pct BETWEEN 0 AND 100);
CREATE INDEX IF NOT EXISTS content_items_processing ON content_items (id) WHERE status = 'processing';

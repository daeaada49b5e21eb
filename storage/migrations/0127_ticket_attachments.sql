-- Files attached to a support ticket, kept in the object store (the row names the object).
CREATE TABLE IF NOT EXISTS ticket_attachments (
    id           bigserial PRIMARY KEY,
    ticket_id    bigint NOT NULL REFERENCES tickets(id),
    uploader_id  bigint NOT NULL REFERENCES users(id),
    filename     text   NOT NULL CHECK (length(filename) BETWEEN 1 AND 200),
    content_type text   NOT NULL,
    size_bytes   integer NOT NULL CHECK (size_bytes > 0),
    object_key   text   NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ticket_attachments_ticket ON ticket_attachments (ticket_id, id);

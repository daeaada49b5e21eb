-- Identity: users, refresh tokens (stored hashed, rotated per family), append-only audit log.

CREATE TABLE IF NOT EXISTS users (
    id            bigserial PRIMARY KEY,
    email         text        NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
    password_hash text        NOT NULL,
    name          text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    role          text        NOT NULL CHECK (role IN ('customer', 'seller', 'admin', 'support', 'courier')),
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- Opaque refresh tokens: only sha256(token) is stored. A login starts a family; every refresh
-- revokes the presented token and issues its successor in the same family. Presenting a revoked
-- token again means it was stolen (or replayed): the whole family is revoked.
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash  text        PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    family_id   uuid        NOT NULL,
    issued_at   timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX IF NOT EXISTS refresh_tokens_user ON refresh_tokens (user_id);

-- Who did what to which object. Append-only: a trigger refuses UPDATE, DELETE and TRUNCATE even
-- for the table's owner, so no code path (and no careless migration) can rewrite history.
CREATE TABLE IF NOT EXISTS audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor_id    bigint,
    action      text        NOT NULL CHECK (length(action) <= 100),
    object_type text        NOT NULL CHECK (length(object_type) <= 100),
    object_id   text        CHECK (length(object_id) <= 200),
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    ip          text
);
CREATE INDEX IF NOT EXISTS audit_log_actor ON audit_log (actor_id, at);
CREATE INDEX IF NOT EXISTS audit_log_object ON audit_log (object_type, object_id, at);

CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END;
$$;

DROP TRIGGER IF EXISTS audit_log_no_update ON audit_log;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log;
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

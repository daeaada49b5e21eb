-- Sessions that end before their access tokens expire. An access token carries its user's token
-- generation ("gen") and its session ("sid", the refresh-token family): a role change or a disabled
-- account raises the generation, so every older access token is refused within seconds (the API
-- replicas follow the revocations through Redis). A disabled account cannot log in or refresh.
ALTER TABLE users ADD COLUMN IF NOT EXISTS token_generation bigint NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN IF NOT EXISTS disabled_at timestamptz;

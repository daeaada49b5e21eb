"""Order notifications: outbox relay (PostgreSQL -> Redis stream) and the notifier (stream -> email)."""

"""Storage: embedded servers, migrations, and the PostgreSQL/Redis implementations of actor storage."""

-- The admin portal lists every order and every flash sale newest first (with a status filter):
-- without these, each page of the list reads the whole table.
CREATE INDEX IF NOT EXISTS orders_created ON orders (created_at DESC);
CREATE INDEX IF NOT EXISTS orders_status_created ON orders (status, created_at DESC);
CREATE INDEX IF NOT EXISTS flash_sales_created ON flash_sales (created_at DESC);
CREATE INDEX IF NOT EXISTS users_role_created ON users (role, created_at DESC);

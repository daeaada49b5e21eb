-- Inventory: an order's returns leave a shard's memory once archived; a later return of that order
-- reads them from the journal, by order id (return rows only).
CREATE INDEX IF NOT EXISTS inventory_journal_returns ON inventory_journal (order_id) WHERE kind = 'UnitsReturned';

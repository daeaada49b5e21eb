-- Inventory: shards archive the per-order detail of old sales (state.ArchiveSales); a return
-- of such an order reads what it bought from the journal, by order id (commit rows only).
CREATE INDEX IF NOT EXISTS inventory_journal_order ON inventory_journal (order_id) WHERE kind = 'HoldCommitted';
-- SalesArchived events: sales committed at seq <= upto_seq were folded into counters.
ALTER TABLE inventory_journal ADD COLUMN IF NOT EXISTS upto_seq bigint;

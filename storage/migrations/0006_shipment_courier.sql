-- A shipment is assigned to one courier, who alone (besides admins) reports its progress.
ALTER TABLE shipments ADD COLUMN IF NOT EXISTS courier_id bigint REFERENCES users(id);
CREATE INDEX IF NOT EXISTS shipments_courier ON shipments (courier_id) WHERE courier_id IS NOT NULL;

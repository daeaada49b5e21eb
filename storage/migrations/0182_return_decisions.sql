-- A return's decision: why it was rejected (told to the buyer) and the staff account that decided.
ALTER TABLE returns ADD COLUMN IF NOT EXISTS decision_note text CHECK (length(decision_note) <= 500);
ALTER TABLE returns ADD COLUMN IF NOT EXISTS decided_by bigint;

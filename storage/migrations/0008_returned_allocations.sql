-- After-sales: the units of an order item that came back per warehouse ({warehouse_id: qty}),
-- so a later cancel restocks exactly what is still sold in each warehouse (allocations minus this)
-- and never asks the inventory engine for units a return already put back.
-- returns.status gains 'approved' (units restocked, refund not yet through): requested | approved |
-- refunded | rejected.
ALTER TABLE order_items ADD COLUMN IF NOT EXISTS returned_allocations jsonb NOT NULL DEFAULT '{}'::jsonb;
-- Returns approved before this column restocked from the item's first warehouse only (jsonb keeps keys
-- in one order, the order the old code iterated), at most its allocation there: record that.
UPDATE order_items
   SET returned_allocations = (SELECT jsonb_build_object(a.key, LEAST(returned_quantity, a.value::int))
                                 FROM jsonb_each_text(allocations) AS a LIMIT 1)
 WHERE returned_quantity > 0 AND returned_allocations = '{}'::jsonb AND allocations <> '{}'::jsonb;

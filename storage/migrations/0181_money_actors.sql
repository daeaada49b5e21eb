-- Who moved the money: the staff account behind a refund, a credit ledger movement (a gift card
-- issued, store credit granted, credit given back by a refund) and a coupon. NULL is the platform
-- itself (a checkout, the gateway's webhook, the sweeper finishing a return's refund). The
-- account's id is kept even if the account goes, as in audit_log.
ALTER TABLE refunds ADD COLUMN IF NOT EXISTS actor_id bigint;
ALTER TABLE credit_ledger ADD COLUMN IF NOT EXISTS actor_id bigint;
ALTER TABLE coupons ADD COLUMN IF NOT EXISTS actor_id bigint;

"""Carts: pure cart state and coupon rules, cart actors sharded by cart id, persisted in Redis."""

-- Shop analytics events, drained in batches from the Redis stream the API replicas write to.
-- event_id is the stream entry id: a batch drained twice (a crash before its XACK) is stored once.
CREATE TABLE IF NOT EXISTS analytics_events (
    id         bigserial PRIMARY KEY,
    event_id   text NOT NULL UNIQUE,
    at         timestamptz NOT NULL,
    kind       text NOT NULL,                -- product_view | search | add_to_cart | checkout_started
    sku        text,
    product_id bigint,
    query      text,                         -- normalised search keywords
    results    integer,                      -- search results found
    outcome    text,                         -- add_to_cart: ok or the refusal's reason
    buyer      text,                         -- u:<user id> or g:<guest cart>
    quantity   integer
);
CREATE INDEX IF NOT EXISTS analytics_events_kind_at ON analytics_events (kind, at);
CREATE INDEX IF NOT EXISTS analytics_events_sku_at ON analytics_events (sku, at) WHERE sku IS NOT NULL;
CREATE INDEX IF NOT EXISTS analytics_events_product ON analytics_events (product_id, at) WHERE product_id IS NOT NULL;

-- Memberships: plans with their benefits as data, one membership per member (its state machine's
-- state, see actors/membership/state.py), the member's timeline, billing history, reward points.
-- No foreign keys into other domains' tables (users, orders): checked by the code that writes here.

CREATE TABLE IF NOT EXISTS membership_plans (
    id               text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{1,39}$'),
    name             text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    tier             integer NOT NULL DEFAULT 1 CHECK (tier BETWEEN 0 AND 100),
    price_minor      integer NOT NULL CHECK (price_minor >= 0),
    currency         text NOT NULL DEFAULT 'USD',
    billing_interval text NOT NULL CHECK (billing_interval IN ('month', 'year')),
    trial_days       integer NOT NULL DEFAULT 0 CHECK (trial_days BETWEEN 0 AND 90),
    benefits         jsonb NOT NULL DEFAULT '{}'::jsonb,
    gateway_price_id text,                       -- the Stripe Price (or Plan) billed
    active           boolean NOT NULL DEFAULT true,
    created_at       timestamptz NOT NULL DEFAULT now()
);

-- The gateway's customer of a member, and the saved card subscriptions charge.
CREATE TABLE IF NOT EXISTS membership_customers (
    user_id             bigint PRIMARY KEY,
    gateway_customer_id text NOT NULL UNIQUE,
    payment_method      text,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS memberships (
    user_id                 bigint PRIMARY KEY,
    plan_id                 text NOT NULL REFERENCES membership_plans(id),
    status                  text NOT NULL CHECK (status IN ('incomplete', 'trialing', 'active', 'past_due', 'canceled', 'expired')),
    state                   jsonb NOT NULL,  -- Membership.as_dict(): the state machine's whole state
    gateway_subscription_id text UNIQUE,
    period_end              timestamptz,
    grace_until             timestamptz,
    cancel_at_period_end    boolean NOT NULL DEFAULT false,
    started_at              timestamptz NOT NULL DEFAULT now(),
    ended_at                timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS memberships_live ON memberships (status) WHERE status IN ('trialing', 'active', 'past_due');
CREATE INDEX IF NOT EXISTS memberships_plan ON memberships (plan_id, status);

-- The member's timeline: every event applied, once (type + cause is the idempotency key).
CREATE TABLE IF NOT EXISTS membership_events (
    id       bigserial PRIMARY KEY,
    user_id  bigint NOT NULL,
    type     text NOT NULL,
    cause    text NOT NULL,
    payload  jsonb NOT NULL,
    at       timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, type, cause)
);
CREATE INDEX IF NOT EXISTS membership_events_at ON membership_events (type, at);

-- Billing history, as the gateway's invoices say.
CREATE TABLE IF NOT EXISTS membership_invoices (
    id              text PRIMARY KEY,            -- the gateway's invoice id
    user_id         bigint NOT NULL,
    subscription_id text,
    plan_id         text,
    amount_minor    integer NOT NULL,
    currency        text NOT NULL,
    status          text NOT NULL,               -- paid | open (failed, retried) | void
    period_end      timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS membership_invoices_user ON membership_invoices (user_id, created_at DESC);

-- Reward points: earned on a member's paid order, taken back for each refund of it (in proportion).
-- One row per (order, source) - 'paid' or 'refund:<id>' - so a sweep that runs twice credits once.
CREATE TABLE IF NOT EXISTS reward_points (
    id        bigserial PRIMARY KEY,
    user_id   bigint NOT NULL,
    order_id  text NOT NULL,
    source    text NOT NULL,
    points    integer NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (order_id, source)
);
CREATE INDEX IF NOT EXISTS reward_points_user ON reward_points (user_id);

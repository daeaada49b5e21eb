-- Support tickets: a customer's question (optionally about one of their orders), the conversation,
-- who handles it, and its SLA timers (due times fixed when opened or when the priority changes).
CREATE TABLE IF NOT EXISTS tickets (
    id                    bigserial PRIMARY KEY,
    customer_id           bigint NOT NULL REFERENCES users(id),
    order_id              text,
    subject               text NOT NULL CHECK (length(subject) BETWEEN 1 AND 200),
    status                text NOT NULL DEFAULT 'open'
                          CHECK (status IN ('open', 'pending', 'resolved', 'closed')),
    priority              text NOT NULL DEFAULT 'normal'
                          CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    assignee_id           bigint REFERENCES users(id),
    opened_at             timestamptz NOT NULL,
    first_response_due_at timestamptz NOT NULL,
    resolution_due_at     timestamptz NOT NULL,
    first_response_at     timestamptz,
    resolved_at           timestamptz,
    updated_at            timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_customer ON tickets (customer_id, id DESC);
CREATE INDEX IF NOT EXISTS tickets_queue ON tickets (status, priority, id);
CREATE INDEX IF NOT EXISTS tickets_assignee ON tickets (assignee_id) WHERE assignee_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS ticket_messages (
    id          bigserial PRIMARY KEY,
    ticket_id   bigint NOT NULL REFERENCES tickets(id),
    author_id   bigint NOT NULL REFERENCES users(id),
    author_role text   NOT NULL,
    body        text   NOT NULL CHECK (length(body) BETWEEN 1 AND 20000),
    created_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ticket_messages_ticket ON ticket_messages (ticket_id, id);

-- Who can be notified: a projection of schedule's user snapshots.
CREATE TABLE recipients (
    user_id    uuid PRIMARY KEY,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    email      text        NOT NULL,
    phone      text,
    time_zone  text        NOT NULL,
    language   text        NOT NULL,
    active     boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per thing a user is told about; the idempotency key makes a second page for it impossible.
CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    user_id          uuid        NOT NULL,
    idempotency_key  text        NOT NULL UNIQUE,
    title            text        NOT NULL,
    body             text        NOT NULL,
    urgency          text        NOT NULL,
    data             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status           text        NOT NULL DEFAULT 'queued',
    command_event_id uuid        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deliveries_user ON deliveries (user_id, created_at DESC);

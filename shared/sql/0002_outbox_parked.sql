-- Outbox rows the broker refuses for good (e.g. too large): kept here with the reason instead of blocking
-- every row behind them. Nothing is deleted; an operator can fix and re-queue them.
CREATE TABLE outbox_parked (
    id          bigint      PRIMARY KEY,
    topic       text        NOT NULL,
    key         text        NOT NULL,
    payload     bytea       NOT NULL,
    headers     jsonb       NOT NULL,
    created_at  timestamptz NOT NULL,
    error       text        NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);

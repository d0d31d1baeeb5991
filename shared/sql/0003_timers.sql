-- Durable timers (shared/timers.py): something the service must do at `due_at`, at most one pending per
-- (kind, key), so scheduling the same deadline again moves it instead of adding a second one.
CREATE TABLE timers (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL,
    key         text        NOT NULL,
    due_at      timestamptz NOT NULL,
    payload     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (kind, key)
);
-- The runner claims in (due_at, id) order and asks for the earliest due time.
CREATE INDEX timers_due ON timers (due_at, id);

-- Timers whose handler kept failing: kept with the last error instead of being retried for ever or dropped.
-- An operator fixes the cause and schedules them again.
CREATE TABLE timers_parked (
    id          bigint      PRIMARY KEY,
    kind        text        NOT NULL,
    key         text        NOT NULL,
    due_at      timestamptz NOT NULL,
    payload     jsonb       NOT NULL,
    attempts    integer     NOT NULL,
    last_error  text        NOT NULL,
    created_at  timestamptz NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT now()
);

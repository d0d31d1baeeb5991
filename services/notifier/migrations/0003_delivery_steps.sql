-- A delivery runs the user's steps (push now, a call later...) as durable timers `notifier.step` keyed
-- `<delivery id>:<step>`, until the user acknowledges it.
ALTER TABLE deliveries
    ADD COLUMN kind             text    NOT NULL DEFAULT 'notification',
    ADD COLUMN acknowledgeable  boolean NOT NULL DEFAULT false,
    ADD COLUMN steps            integer NOT NULL DEFAULT 0,
    ADD COLUMN acknowledged_at  timestamptz,
    ADD COLUMN acknowledged_via text;

-- Every attempt on every channel and target, as the provider answered it.
CREATE TABLE delivery_attempts (
    id          bigserial PRIMARY KEY,
    delivery_id uuid        NOT NULL REFERENCES deliveries ON DELETE CASCADE,
    step        integer     NOT NULL,
    attempt     integer     NOT NULL,
    channel     text        NOT NULL,
    target      text        NOT NULL,
    result      text        NOT NULL,
    provider_id text,
    error       text,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

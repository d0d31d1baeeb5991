-- Coverage requests and their history. A request's shifts stay `open` (claimed) while the request is
-- pending or accepting; an open claim blocks another open request for an overlapping span of the schedule.
CREATE TABLE requests (
    id               uuid PRIMARY KEY,
    requester_id     uuid        NOT NULL,
    period_start     timestamptz NOT NULL,
    period_end       timestamptz NOT NULL,
    message          text        NOT NULL DEFAULT '',
    status           text        NOT NULL,
    covering_user_id uuid,
    reason           text        NOT NULL DEFAULT '',
    remind_at        timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX requests_sent ON requests (requester_id, created_at DESC, id DESC);
CREATE INDEX requests_all ON requests (created_at DESC, id DESC);

CREATE TABLE request_recipients (
    request_id uuid NOT NULL REFERENCES requests ON DELETE CASCADE,
    user_id    uuid NOT NULL,
    position   integer NOT NULL,
    decision   text,
    decided_at timestamptz,
    -- copied from the request, so "received, newest first" is one index scan
    created_at timestamptz NOT NULL,
    PRIMARY KEY (request_id, user_id)
);
CREATE INDEX request_recipients_received ON request_recipients (user_id, created_at DESC, request_id DESC);

CREATE TABLE request_shifts (
    request_id  uuid        NOT NULL REFERENCES requests ON DELETE CASCADE,
    position    integer     NOT NULL,
    schedule_id uuid        NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    covered     boolean,
    open        boolean     NOT NULL,
    PRIMARY KEY (request_id, position)
);
CREATE INDEX request_shifts_open ON request_shifts (schedule_id, starts_at) WHERE open;

CREATE TABLE request_history (
    request_id uuid        NOT NULL REFERENCES requests ON DELETE CASCADE,
    position   integer     NOT NULL,
    at         timestamptz NOT NULL,
    actor_id   uuid,
    status     text        NOT NULL,
    reason     text        NOT NULL DEFAULT '',
    PRIMARY KEY (request_id, position)
);

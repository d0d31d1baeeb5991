-- callrouter's copies of what schedule publishes (version-guarded, so a replay never moves them back), and
-- what callrouter owns: routing numbers, calls with their legs and timeline, call-routing alerts.
ALTER TABLE responders ADD COLUMN role text NOT NULL DEFAULT 'responder';

CREATE TABLE policies (
    policy_id uuid PRIMARY KEY,
    version   integer NOT NULL,
    name      text    NOT NULL,
    repeat    integer NOT NULL,
    rules     jsonb   NOT NULL
);

CREATE TABLE support_hours (
    support_hours_id uuid PRIMARY KEY,
    version          integer NOT NULL,
    name             text    NOT NULL,
    time_zone        text    NOT NULL,
    windows          jsonb   NOT NULL,
    holidays         date[]  NOT NULL
);

CREATE TABLE timelines (
    schedule_id   uuid PRIMARY KEY,
    version       integer     NOT NULL,
    name          text        NOT NULL,
    time_zone     text        NOT NULL,
    horizon_start timestamptz NOT NULL,
    horizon_end   timestamptz NOT NULL
);

-- The on-call pieces of the newest timeline of each schedule (gaps left out: nobody holds them).
CREATE TABLE timeline_shifts (
    schedule_id uuid        NOT NULL REFERENCES timelines ON DELETE CASCADE,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    user_id     uuid        NOT NULL,
    source      text        NOT NULL,
    PRIMARY KEY (schedule_id, starts_at)
);
CREATE INDEX timeline_shifts_user ON timeline_shifts (user_id, ends_at);

-- `config` is a versioned serialisation of the domain's RoutingNumber (options, greeting, modes, audio).
CREATE TABLE routing_numbers (
    number_id  uuid PRIMARY KEY,
    number     text        NOT NULL UNIQUE,
    version    integer     NOT NULL,
    config     jsonb       NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- One inbound call, keyed by Twilio's CallSid. `state` moves menu -> dialing -> connected | voicemail |
-- unavailable -> ended; `plan` is who is dialed, in order, and `position` the one being dialed now.
CREATE TABLE calls (
    call_id        uuid PRIMARY KEY,
    call_sid       text        NOT NULL UNIQUE,
    number_id      uuid        NOT NULL,
    from_number    text        NOT NULL,
    to_number      text        NOT NULL,
    state          text        NOT NULL,
    menu_attempts  integer     NOT NULL DEFAULT 0,
    option_digit   text,
    policy_id      uuid,
    plan           uuid[]      NOT NULL DEFAULT '{}',
    position       integer     NOT NULL DEFAULT -1,
    connected_user uuid,
    caller_gone    boolean     NOT NULL DEFAULT false,
    alert_id       uuid,
    started_at     timestamptz NOT NULL,
    ended_at       timestamptz
);

-- Outbound legs: a responder dialed for a call (kind 'responder'), or the responder leg of a callback.
CREATE TABLE legs (
    leg_id     uuid PRIMARY KEY,
    call_id    uuid        NOT NULL REFERENCES calls,
    kind       text        NOT NULL,
    user_id    uuid        NOT NULL,
    phone      text        NOT NULL,
    call_sid   text UNIQUE,
    state      text        NOT NULL,
    created_at timestamptz NOT NULL,
    ended_at   timestamptz
);
CREATE INDEX legs_call ON legs (call_id, created_at);

CREATE TABLE alerts (
    alert_id        uuid PRIMARY KEY,
    call_id         uuid        NOT NULL UNIQUE REFERENCES calls,
    number_id       uuid        NOT NULL,
    policy_id       uuid        NOT NULL,
    status          text        NOT NULL,
    summary         text        NOT NULL,
    caller          text        NOT NULL,
    voicemail_url   text,
    voicemail_s     integer,
    escalating      boolean     NOT NULL DEFAULT false,
    round           integer     NOT NULL DEFAULT 0,
    rule            integer     NOT NULL DEFAULT 0,
    acknowledged_by uuid,
    acknowledged_at timestamptz,
    resolved_by     uuid,
    resolved_at     timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX alerts_listing ON alerts (created_at DESC, alert_id DESC);
CREATE INDEX alerts_policy ON alerts (policy_id, created_at DESC);

-- What happened on a call and to its alert, in order: the timeline the alert's page shows.
CREATE TABLE call_events (
    id      bigserial PRIMARY KEY,
    call_id uuid        NOT NULL REFERENCES calls,
    at      timestamptz NOT NULL,
    what    text        NOT NULL,
    user_id uuid,
    detail  text        NOT NULL DEFAULT ''
);
CREATE INDEX call_events_call ON call_events (call_id, id);

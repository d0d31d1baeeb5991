CREATE TABLE schedules (
    id               uuid PRIMARY KEY,
    version          integer     NOT NULL DEFAULT 1,
    name             text        NOT NULL,
    time_zone        text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('recurring', 'static')),
    team_id          uuid REFERENCES teams (id),
    definition       jsonb       NOT NULL,
    timeline_version bigint      NOT NULL DEFAULT 0,
    timeline_until   timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX schedules_name ON schedules (lower(name));
CREATE INDEX schedules_timeline_until ON schedules (timeline_until);

-- who appears in a schedule's layers or static shifts: "my shifts" resolves only these schedules
CREATE TABLE schedule_members (
    schedule_id uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id),
    PRIMARY KEY (schedule_id, user_id)
);
CREATE INDEX schedule_members_user ON schedule_members (user_id);

-- overrides and accepted coverage, placed above a schedule's layers; the higher seq wins
CREATE TABLE covers (
    id                  uuid PRIMARY KEY,
    seq                 bigserial   NOT NULL,
    schedule_id         uuid        NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    user_id             uuid        NOT NULL REFERENCES users (id),
    starts_at           timestamptz NOT NULL,
    ends_at             timestamptz NOT NULL CHECK (ends_at > starts_at),
    source              text        NOT NULL CHECK (source IN ('override', 'coverage')),
    coverage_request_id uuid,
    created_by          uuid,
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((source = 'coverage') = (coverage_request_id IS NOT NULL))
);
CREATE INDEX covers_schedule ON covers (schedule_id, ends_at);
CREATE INDEX covers_user ON covers (user_id, ends_at);
CREATE INDEX covers_request ON covers (coverage_request_id) WHERE coverage_request_id IS NOT NULL;

-- the answer given to each coverage request, so a re-sent request gets the same answer and no second effect
CREATE TABLE coverage_outcomes (
    request_id uuid PRIMARY KEY,
    status     text        NOT NULL CHECK (status IN ('applied', 'rejected', 'reverted')),
    answer     jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE policies (
    id         uuid PRIMARY KEY,
    version    integer     NOT NULL DEFAULT 1,
    name       text        NOT NULL,
    repeat     integer     NOT NULL,
    rules      jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX policies_name ON policies (lower(name));

CREATE TABLE support_hours (
    id         uuid PRIMARY KEY,
    version    integer     NOT NULL DEFAULT 1,
    name       text        NOT NULL,
    time_zone  text        NOT NULL,
    windows    jsonb       NOT NULL,
    holidays   date[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX support_hours_name ON support_hours (lower(name));

-- calendar feeds: a secret per user (stored as its sha256), and what each feed last showed (vanished shifts are sent as CANCELLED)
CREATE TABLE calendar_tokens (
    token      text PRIMARY KEY,
    user_id    uuid        NOT NULL UNIQUE REFERENCES users (id),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE feed_entries (
    feed    text  NOT NULL,
    uid     text  NOT NULL,
    entry   jsonb NOT NULL,
    PRIMARY KEY (feed, uid)
);

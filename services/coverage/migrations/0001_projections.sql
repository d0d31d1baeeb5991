-- coverage's own copies of what schedule publishes: who exists (and may be asked), who shares a team, and
-- every schedule's final timeline. Version-guarded: a replay or an older snapshot never moves them back.
CREATE TABLE users (
    user_id    uuid PRIMARY KEY,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    role       text        NOT NULL,
    active     boolean     NOT NULL,
    time_zone  text        NOT NULL,
    language   text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE teams (
    team_id    uuid PRIMARY KEY,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    member_ids uuid[]      NOT NULL
);
CREATE INDEX teams_members ON teams USING gin (member_ids);

-- One row per schedule: the newest published timeline's version and horizon. Creating a request locks the
-- rows of its schedules, and a new timeline updates its row, so the two never judge a request on different
-- versions.
CREATE TABLE timelines (
    schedule_id   uuid PRIMARY KEY,
    version       integer     NOT NULL,
    name          text        NOT NULL,
    time_zone     text        NOT NULL,
    horizon_start timestamptz NOT NULL,
    horizon_end   timestamptz NOT NULL
);

-- The on-call pieces of the newest timeline (gaps are left out: nobody holds them).
CREATE TABLE timeline_shifts (
    schedule_id uuid        NOT NULL REFERENCES timelines ON DELETE CASCADE,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    user_id     uuid        NOT NULL,
    source      text        NOT NULL,
    PRIMARY KEY (schedule_id, starts_at)
);
CREATE INDEX timeline_shifts_user ON timeline_shifts (user_id, ends_at);

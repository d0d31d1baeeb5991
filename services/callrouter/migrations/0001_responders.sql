-- The people callrouter can dial: a projection of schedule's user snapshots, so a call is routed even
-- while schedule is down.
CREATE TABLE responders (
    user_id    uuid PRIMARY KEY,
    version    integer     NOT NULL,
    name       text        NOT NULL,
    phone      text,
    language   text        NOT NULL,
    active     boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

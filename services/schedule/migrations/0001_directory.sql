CREATE TABLE users (
    id          uuid PRIMARY KEY,
    version     integer     NOT NULL DEFAULT 1,
    name        text        NOT NULL,
    email       text        NOT NULL,
    phone       text,
    time_zone   text        NOT NULL,
    language    text        NOT NULL,
    role        text        NOT NULL CHECK (role IN ('admin', 'responder', 'observer')),
    active      boolean     NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email ON users (lower(email));

CREATE TABLE teams (
    id          uuid PRIMARY KEY,
    version     integer     NOT NULL DEFAULT 1,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX teams_name ON teams (lower(name));

CREATE TABLE team_members (
    team_id  uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id  uuid NOT NULL REFERENCES users (id),
    position integer NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

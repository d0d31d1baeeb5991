-- The phones a user receives pushes on. A push token belongs to one device: registering it again (for
-- whoever is signed in on that phone now) moves it.
CREATE TABLE devices (
    id               uuid PRIMARY KEY,
    user_id          uuid        NOT NULL,
    platform         text        NOT NULL,
    token            text        NOT NULL,
    app_version      text        NOT NULL DEFAULT '',
    critical_allowed boolean     NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (platform, token)
);
CREATE INDEX devices_user ON devices (user_id);

-- How each user wants to be reached; a versioned serialisation of the domain's Preferences. Users without a
-- row get the defaults.
CREATE TABLE preferences (
    user_id    uuid PRIMARY KEY,
    version    integer     NOT NULL,
    definition jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

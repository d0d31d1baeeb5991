-- A leg about to be placed with the provider, committed on its own before the request: should the process die
-- after the provider placed the call but before the dial timer's transaction commits, the timer fires again,
-- finds this row, and adopts the call the provider already placed instead of ringing the responder twice.
CREATE TABLE dial_intents (
    leg_id uuid        PRIMARY KEY,
    at     timestamptz NOT NULL
);

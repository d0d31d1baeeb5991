-- A voice step about to ask the provider for a call, committed on its own before the request: should notifier die
-- after the provider placed the call but before the step's transaction commits, the step fires again, finds
-- this row, and takes the call the provider already placed instead of calling the user twice.
CREATE TABLE call_intents (
    delivery_id uuid        NOT NULL,
    step        integer     NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (delivery_id, step)
);

-- Proof of delivery (the app confirms a push arrived) and the history's unread state.
ALTER TABLE deliveries
    ADD COLUMN received_at timestamptz,
    ADD COLUMN read_at     timestamptz;
CREATE INDEX deliveries_unread ON deliveries (user_id) WHERE read_at IS NULL AND acknowledged_at IS NULL;

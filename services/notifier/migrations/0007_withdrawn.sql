-- A sender may withdraw its notifications (WithdrawNotifications: e.g. someone else acknowledged the alert): the
-- remaining steps of each are cancelled and its status becomes 'withdrawn', with when and why.
ALTER TABLE deliveries
    ADD COLUMN withdrawn_at     timestamptz,
    ADD COLUMN withdrawn_reason text;

-- A delivery's states are planned, sent, delivered (a phone confirmed the push arrived), failed and
-- acknowledged; the first was called 'queued'.
ALTER TABLE deliveries ALTER COLUMN status SET DEFAULT 'planned';
UPDATE deliveries SET status = 'planned' WHERE status = 'queued';
UPDATE deliveries SET status = 'delivered' WHERE status IN ('sent', 'failed') AND received_at IS NOT NULL;

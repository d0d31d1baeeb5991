-- Each change of an alert is published (CallAlertChanged) with a version that grows with it.
ALTER TABLE alerts ADD COLUMN version integer NOT NULL DEFAULT 1;

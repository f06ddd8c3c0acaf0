-- A service cancel records "service NAME: REASON", each part up to 255 bytes,
-- which did not fit the 255 characters of the first schema.
ALTER TABLE audit_log MODIFY detail VARCHAR(600) NULL;

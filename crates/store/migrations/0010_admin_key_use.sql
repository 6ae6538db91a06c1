-- Schema v10: when each admin key was last used (to within a minute);
-- NULL until it is.

ALTER TABLE admin_keys ADD COLUMN last_used_at BIGINT;

-- Schema v3: FQDN rule options (TLS origination, the port the reachability
-- check probes) and when a rule last changed.

ALTER TABLE fqdn_rules ADD COLUMN tls BIGINT NOT NULL DEFAULT 0;
ALTER TABLE fqdn_rules ADD COLUMN check_port BIGINT;
ALTER TABLE fqdn_rules ADD COLUMN check_tls BIGINT NOT NULL DEFAULT 0;
ALTER TABLE fqdn_rules ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;

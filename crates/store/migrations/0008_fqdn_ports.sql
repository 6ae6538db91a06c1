-- Schema v8: the ports an FQDN rule allows (`22,443,8000-8100`); NULL
-- allows any port, as every rule did before.

ALTER TABLE fqdn_rules ADD COLUMN ports TEXT;

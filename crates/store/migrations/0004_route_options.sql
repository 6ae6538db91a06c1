-- Schema v4: route options (skip certificate validation towards an
-- https:// internal URL; send PROXY protocol v2 to the internal service)
-- and when a route last changed.

ALTER TABLE routes ADD COLUMN ignore_certificate_errors BIGINT NOT NULL DEFAULT 0;
ALTER TABLE routes ADD COLUMN proxy_protocol BIGINT NOT NULL DEFAULT 0;
ALTER TABLE routes ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;

-- Schema v9: routes an agent publishes itself (its web UI's mappings) are
-- told apart from the operator's, so an agent's sync replaces only its
-- own; and each agent's landing page for unknown hosts under its domain.

ALTER TABLE routes ADD COLUMN origin TEXT NOT NULL DEFAULT 'admin';

CREATE TABLE landing_pages (
    agent       TEXT PRIMARY KEY REFERENCES agents(name) ON DELETE CASCADE,
    domain      TEXT,
    html        TEXT,
    updated_at  BIGINT NOT NULL
);

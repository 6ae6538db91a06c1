-- Burrow schema v1. Portable SQL: it runs unchanged on SQLite and
-- PostgreSQL. Types are BIGINT and TEXT only (bytes as hex); booleans are 0/1;
-- times are Unix epoch microseconds.

CREATE TABLE agents (
    name        TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    last_seen   BIGINT,
    version     TEXT,
    remote_addr TEXT
);

CREATE TABLE agent_keys (
    agent       TEXT NOT NULL REFERENCES agents(name) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    algorithm   TEXT NOT NULL,
    bits        BIGINT NOT NULL,
    fingerprint TEXT NOT NULL,
    public_pem  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (agent, name)
);

CREATE TABLE admin_keys (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked     BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE fqdn_rules (
    fqdn        TEXT PRIMARY KEY,
    agent       TEXT NOT NULL REFERENCES agents(name) ON DELETE CASCADE,
    ignore_certificate_errors BIGINT NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL
);

CREATE TABLE routes (
    hostname    TEXT PRIMARY KEY,
    agent       TEXT NOT NULL REFERENCES agents(name) ON DELETE CASCADE,
    target      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- Client-assertion ids already used, kept until they expire (replay guard
-- shared by every gateway replica).
CREATE TABLE used_jtis (
    jti         TEXT PRIMARY KEY,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE audit (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);

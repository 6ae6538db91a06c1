-- Schema v2: gateway-wide settings shared by replicas (the access-token
-- signing key, the API audience). Values are text; secrets among them are
-- never logged.

CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

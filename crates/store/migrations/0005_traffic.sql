-- Schema v5: the traffic audit trail: every tunneled HTTP request and TCP
-- stream (no query strings, no bodies). Bounded by age and count.

CREATE TABLE traffic (
    id          TEXT PRIMARY KEY,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    agent       TEXT NOT NULL,
    route       TEXT NOT NULL,
    client      TEXT NOT NULL,
    method      TEXT NOT NULL,
    host        TEXT NOT NULL,
    path        TEXT NOT NULL,
    status      BIGINT NOT NULL,
    target      TEXT NOT NULL,
    bytes_in    BIGINT NOT NULL,
    bytes_out   BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL
);
CREATE INDEX traffic_at ON traffic (at);

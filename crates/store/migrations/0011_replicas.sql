-- Schema v11: the gateway replicas sharing this database, and which
-- agents' links each holds. Every row is kept alive by its replica and
-- read only until it expires, so a replica that died leaves nothing
-- behind for long.

CREATE TABLE replicas (
    id TEXT PRIMARY KEY,
    advertise_url TEXT NOT NULL,
    draining BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE presence (
    agent TEXT NOT NULL,
    replica TEXT NOT NULL,
    links BIGINT NOT NULL,
    -- The smallest heartbeat round trip of those links (µs; -1 unknown)
    -- and when the oldest came up (µs since the epoch).
    rtt_us BIGINT NOT NULL,
    since BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (agent, replica)
);

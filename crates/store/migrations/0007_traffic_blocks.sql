-- Schema v7: the traffic audit trail in blocks. The writer stores each
-- batch (about 10 ms of traffic) as one row per (kind, agent, route,
-- target), its records a JSON array in `entries`: one B-tree insert per
-- batch instead of one per request, which is what lets every request be
-- recorded at full speed. Listing decodes blocks newest first and filters
-- their records; retention drops whole blocks. The rows of the v6 table
-- are moved here by the migration's code, then that table goes.

CREATE TABLE traffic_blocks (
    first_at     BIGINT NOT NULL,
    last_at      BIGINT NOT NULL,
    kind         TEXT NOT NULL,
    agent        TEXT NOT NULL,
    route        TEXT NOT NULL,
    target       TEXT NOT NULL,
    record_count BIGINT NOT NULL,
    entries      TEXT NOT NULL
);
CREATE INDEX traffic_blocks_last_at ON traffic_blocks (last_at);

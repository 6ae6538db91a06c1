-- Schema v6: the traffic table without its primary-key index. Records are
-- appended thousands a second and read by time; a unique index on the id
-- cost a second B-tree insert per record and served nothing (the id only
-- breaks ties in the listing order). Records are kept.

CREATE TABLE traffic_v6 (
    id          TEXT NOT NULL,
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
INSERT INTO traffic_v6 (id, at, kind, agent, route, client, method, host, path, status, target, bytes_in, bytes_out, duration_ms)
    SELECT id, at, kind, agent, route, client, method, host, path, status, target, bytes_in, bytes_out, duration_ms FROM traffic;
DROP TABLE traffic;
ALTER TABLE traffic_v6 RENAME TO traffic;
CREATE INDEX traffic_at ON traffic (at);

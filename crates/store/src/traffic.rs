//! The traffic audit trail, stored in blocks (schema v7).
//!
//! A block is one write batch's records of one (kind, agent, route,
//! target): those four are columns, the rest of each record is packed in
//! the JSON text `entries` ([`pack`]). Writing costs one row per block instead
//! of one row (and one index insert) per request; listing decodes blocks
//! newest first and filters their records; retention drops whole blocks,
//! so it is as fine-grained as the writer's batches (about 100 ms of
//! traffic, at most 8,192 records).

use futures_util::TryStreamExt;
use sqlx::{AnyConnection, Row};

use crate::{Result, Store, StoreError};

/// What a traffic record is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TrafficKind {
    /// An HTTP request on the edge.
    #[default]
    Http,
    /// A connection through a fixed forward.
    Forward,
    /// A connection through the egress proxy.
    Egress,
    /// Credential failures from one address, counted (`failures`):
    /// `target` names the check (agent link, admin API key, ...).
    Auth,
}

impl TrafficKind {
    /// The name stored and shown: `http`, `forward`, `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficKind::Http => "http",
            TrafficKind::Forward => "forward",
            TrafficKind::Egress => "egress",
            TrafficKind::Auth => "auth",
        }
    }
}

impl std::fmt::Display for TrafficKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A traffic kind that is none of `http`, `forward`, `egress`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown traffic kind {0:?}: use http, forward or egress")]
pub struct UnknownTrafficKind(pub String);

impl std::str::FromStr for TrafficKind {
    type Err = UnknownTrafficKind;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "http" => Ok(TrafficKind::Http),
            "forward" => Ok(TrafficKind::Forward),
            "egress" => Ok(TrafficKind::Egress),
            "auth" => Ok(TrafficKind::Auth),
            other => Err(UnknownTrafficKind(other.to_owned())),
        }
    }
}

/// One tunneled HTTP request or TCP stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Traffic {
    /// When it started (Unix microseconds).
    pub at: i64,
    /// Edge request, fixed forward or egress proxy.
    pub kind: TrafficKind,
    /// The agent that carried it.
    pub agent: String,
    /// The route (host name) for `http`.
    pub route: String,
    /// The client's address.
    pub client: String,
    /// HTTP method, for `http`.
    pub method: String,
    /// HTTP host, for `http`.
    pub host: String,
    /// HTTP path without the query string, for `http`.
    pub path: String,
    /// HTTP status, for `http` (0 otherwise, or when none came).
    pub status: i64,
    /// Where the agent connected (`host:port` or URL).
    pub target: String,
    /// Bytes from the client.
    pub bytes_in: i64,
    /// Bytes to the client.
    pub bytes_out: i64,
    /// How long it lasted.
    pub duration_ms: i64,
    /// Why it failed or was refused, in words (empty when it was served).
    pub error: String,
    /// For `auth`: how many credential failures this record counts.
    pub failures: i64,
}

/// Which traffic records to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct TrafficFilter {
    /// Only this kind.
    pub kind: Option<TrafficKind>,
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this HTTP host.
    pub host: Option<String>,
    /// Only this status.
    pub status: Option<i64>,
    /// Not before (Unix microseconds).
    pub since: Option<i64>,
    /// Before (Unix microseconds).
    pub until: Option<i64>,
    /// At most this many (capped at 1000).
    pub limit: i64,
    /// Skip this many.
    pub offset: i64,
}

#[cfg(test)]
mod pack_tests;

/// Most records a listing may skip: a listing holds what it skips in
/// memory, so deeper pages are reached by narrowing `until` instead.
pub const MAX_TRAFFIC_OFFSET: i64 = 100_000;

/// One record of a block: what the block's columns do not fix. The oldest
/// form stores it as a JSON array of these nine values, in this order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct Entry {
    at: i64,
    client: String,
    method: String,
    host: String,
    path: String,
    status: i64,
    bytes_in: i64,
    bytes_out: i64,
    duration_ms: i64,
    #[serde(default)]
    error: String,
    #[serde(default)]
    failures: i64,
}

/// First element of a packed `entries` text in the form builds of
/// 2026-12-01 wrote: nine integers per record (still read).
const FORM_FIXED: i64 = 2;
/// Integers per record in [`FORM_FIXED`].
const FIXED_INTS: usize = 9;
/// First element of the delta form builds before 2026-12-03 wrote (still
/// read): eight fields, without the error and the failure count.
const FORM_DELTA: i64 = 3;
/// Fields a [`FORM_DELTA`] record's mask covers, in bit order: the places
/// of client, method, host and path, then status, bytes in, bytes out and
/// duration.
const DELTA_FIELDS: usize = 8;
/// First element of the form this build writes ([`pack`]): as
/// [`FORM_DELTA`], with the error's place after the path's and the
/// failure count last.
const FORM_ERRORS: i64 = 4;
/// Fields a [`FORM_ERRORS`] record's mask covers, in bit order: the places
/// of client, method, host, path and error, then status, bytes in, bytes
/// out, duration and failures.
const FIELDS: usize = 10;
/// Where status sits in a record's fields.
const STATUS: usize = 5;
/// An absent string's place (the error, in the older forms).
const NO_TEXT: i64 = -1;

/// A [`FORM_DELTA`] or nine-integer record's eight fields in this form's
/// ten.
fn widen(f: &[i64; DELTA_FIELDS]) -> [i64; FIELDS] {
    [f[0], f[1], f[2], f[3], NO_TEXT, f[4], f[5], f[6], f[7], 0]
}

/// A block's records as stored: `[4, T0, STRINGS, INTS]`, each distinct
/// string once in STRINGS. Per record, INTS holds a mask, its time less
/// the record before's (T0 for the first), then only the fields (in
/// [`FIELDS`] order) that differ from the record before's, whose bits are
/// set in the mask; fields before the first record count as 0. A block's
/// records mostly repeat their neighbours' method, host, path, status and
/// sizes, so a record is often three or four short integers. On 50
/// interleaved visitor connections (`pack_tests`) that is 0.41× the
/// nine-integer form and 0.14× a JSON array per record, and the bytes the
/// database writes (and copies again at each checkpoint) shrink with it.
fn pack(rows: &[&Traffic], t0: i64) -> std::result::Result<String, serde_json::Error> {
    let mut strings: Vec<&str> = Vec::new();
    let mut places: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    let mut ints: Vec<i64> = Vec::with_capacity(rows.len() * 4);
    let mut prev_at = t0;
    let mut prev = [0i64; FIELDS];
    for t in rows {
        let mut now = [0i64; FIELDS];
        for (slot, text) in now
            .iter_mut()
            .zip([&t.client, &t.method, &t.host, &t.path, &t.error])
        {
            *slot = *places.entry(text.as_str()).or_insert_with(|| {
                strings.push(text.as_str());
                i64::try_from(strings.len() - 1).unwrap_or(i64::MAX)
            });
        }
        now[STATUS..].copy_from_slice(&[
            t.status,
            t.bytes_in,
            t.bytes_out,
            t.duration_ms,
            t.failures,
        ]);
        let changed = (0..FIELDS).filter(|&i| now[i] != prev[i]);
        ints.push(changed.clone().fold(0, |mask, i| mask | 1 << i));
        // Wrapping both ways, so any two times round-trip exactly.
        ints.push(t.at.wrapping_sub(prev_at));
        ints.extend(changed.map(|i| now[i]));
        (prev, prev_at) = (now, t.at);
    }
    Ok(format!(
        "[{FORM_ERRORS},{t0},{},{}]",
        serde_json::to_string(&strings)?,
        serde_json::to_string(&ints)?
    ))
}

/// All of a block's records.
#[cfg(test)]
fn unpack(text: &str) -> Result<Vec<Entry>> {
    unpack_where(text, |_, _, _| true)
}

/// The records for which `keep(at, host, status)` holds, from a block's
/// `entries` text: [`pack`]'s form, the nine-integer form, or the oldest
/// (a JSON array per record, written before 2026-12-01). Packed records
/// are checked before their strings are copied, so a listing by host or
/// status copies only what it returns; every record's string places are
/// still checked.
fn unpack_where(text: &str, keep: impl Fn(i64, &str, i64) -> bool) -> Result<Vec<Entry>> {
    let bad = |why: String| StoreError::Db(sqlx::Error::Decode(why.into()));
    let packed = text
        .trim_start()
        .strip_prefix('[')
        .is_some_and(|rest| rest.trim_start().starts_with(|c: char| c.is_ascii_digit()));
    if !packed {
        let all: Vec<Entry> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        return Ok(all
            .into_iter()
            .filter(|e| keep(e.at, &e.host, e.status))
            .collect());
    }
    let (form, t0, strings, ints): (i64, i64, Vec<String>, Vec<i64>) =
        serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let text_at = |place: i64| {
        usize::try_from(place)
            .ok()
            .and_then(|i| strings.get(i))
            .map(String::as_str)
            .ok_or_else(|| {
                bad(format!(
                    "traffic block names string {place} of {}",
                    strings.len()
                ))
            })
    };
    // Adds the record to `out` if it is kept.
    let take = |out: &mut Vec<Entry>, at: i64, f: &[i64; FIELDS]| -> Result<()> {
        let (client, method, host, path, error) = (
            text_at(f[0])?,
            text_at(f[1])?,
            text_at(f[2])?,
            text_at(f[3])?,
            // The older forms have no error.
            if f[4] == NO_TEXT { "" } else { text_at(f[4])? },
        );
        if keep(at, host, f[STATUS]) {
            let own = str::to_owned;
            out.push(Entry {
                at,
                client: own(client),
                method: own(method),
                host: own(host),
                path: own(path),
                error: own(error),
                status: f[5],
                bytes_in: f[6],
                bytes_out: f[7],
                duration_ms: f[8],
                failures: f[9],
            });
        }
        Ok(())
    };
    // The delta forms: per record a mask, a time step and the changed
    // fields, `n` of them.
    let deltas = |n: usize| -> Result<Vec<Entry>> {
        let cut = || bad("traffic block ends inside a record".into());
        let mut ints = ints.iter().copied();
        let mut out = Vec::new();
        let (mut at, mut fields) = (t0, [0i64; FIELDS]);
        while let Some(mask) = ints.next() {
            if !(0..1 << n).contains(&mask) {
                return Err(bad(format!("traffic block record mask {mask}")));
            }
            at = at.wrapping_add(ints.next().ok_or_else(cut)?);
            for (i, field) in fields.iter_mut().take(n).enumerate() {
                if mask & 1 << i != 0 {
                    *field = ints.next().ok_or_else(cut)?;
                }
            }
            if n == DELTA_FIELDS {
                let mut old = [0i64; DELTA_FIELDS];
                old.copy_from_slice(&fields[..DELTA_FIELDS]);
                take(&mut out, at, &widen(&old))?;
            } else {
                take(&mut out, at, &fields)?;
            }
        }
        Ok(out)
    };
    match form {
        FORM_ERRORS => deltas(FIELDS),
        FORM_DELTA => deltas(DELTA_FIELDS),
        FORM_FIXED if ints.len() % FIXED_INTS == 0 => {
            let mut out = Vec::new();
            for r in ints.chunks_exact(FIXED_INTS) {
                let fields = [r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]];
                take(&mut out, t0.saturating_add(r[0]), &widen(&fields))?;
            }
            Ok(out)
        }
        _ => Err(bad(format!(
            "traffic block in an unknown form ({form}, {} integers)",
            ints.len()
        ))),
    }
}

/// The columns a block fixes: kind, agent, route, target.
type Key<'a> = (&'a str, &'a str, &'a str, &'a str);

/// A stored kind, read back; one this build does not know is a decode
/// error (the database was written by a newer Burrow, or by hand).
fn kind_of(stored: String) -> std::result::Result<TrafficKind, sqlx::Error> {
    stored
        .parse()
        .map_err(|e: crate::UnknownTrafficKind| sqlx::Error::ColumnDecode {
            index: "kind".into(),
            source: Box::new(e),
        })
}

/// Stores `batch` as one block per (kind, agent, route, target), in the
/// order each first appears.
pub(crate) async fn insert_blocks(
    conn: &mut AnyConnection,
    batch: &[Traffic],
) -> std::result::Result<(), sqlx::Error> {
    let mut groups: Vec<(Key<'_>, Vec<&Traffic>)> = Vec::new();
    for t in batch {
        let key = (
            t.kind.as_str(),
            t.agent.as_str(),
            t.route.as_str(),
            t.target.as_str(),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, rows)) => rows.push(t),
            None => groups.push((key, vec![t])),
        }
    }
    for ((kind, agent, route, target), rows) in groups {
        let first_at = rows.iter().map(|t| t.at).min().unwrap_or_default();
        let last_at = rows.iter().map(|t| t.at).max().unwrap_or_default();
        let entries = pack(&rows, first_at).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO traffic_blocks (first_at, last_at, kind, agent, route, target, record_count, entries) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(first_at)
        .bind(last_at)
        .bind(kind)
        .bind(agent)
        .bind(route)
        .bind(target)
        .bind(i64::try_from(rows.len()).unwrap_or(i64::MAX))
        .bind(entries)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Schema v7's data step: moves the v6 table's records into blocks (in
/// pages, oldest first, so no page spans much time), then drops it.
pub(crate) async fn adopt_v6_rows(
    conn: &mut AnyConnection,
) -> std::result::Result<(), sqlx::Error> {
    const PAGE: i64 = 1_000;
    let mut after: Option<(i64, String)> = None;
    loop {
        let q = match &after {
            None => sqlx::query("SELECT * FROM traffic ORDER BY at, id LIMIT $1").bind(PAGE),
            Some((at, id)) => sqlx::query(
                "SELECT * FROM traffic WHERE at > $1 OR (at = $2 AND id > $3) ORDER BY at, id LIMIT $4",
            )
            .bind(*at)
            .bind(*at)
            .bind(id.clone())
            .bind(PAGE),
        };
        let rows = q.fetch_all(&mut *conn).await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.try_get("at")?, last.try_get("id")?));
        let batch = rows
            .iter()
            .map(|r| {
                Ok(Traffic {
                    at: r.try_get("at")?,
                    kind: kind_of(r.try_get("kind")?)?,
                    agent: r.try_get("agent")?,
                    route: r.try_get("route")?,
                    client: r.try_get("client")?,
                    method: r.try_get("method")?,
                    host: r.try_get("host")?,
                    path: r.try_get("path")?,
                    status: r.try_get("status")?,
                    target: r.try_get("target")?,
                    bytes_in: r.try_get("bytes_in")?,
                    bytes_out: r.try_get("bytes_out")?,
                    duration_ms: r.try_get("duration_ms")?,
                    error: String::new(),
                    failures: 0,
                })
            })
            .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        insert_blocks(conn, &batch).await?;
    }
    sqlx::query("DROP TABLE traffic")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Stores a batch of traffic records: one row per (kind, agent,
    /// route, target) in the batch, in one transaction.
    pub async fn insert_traffic(&self, batch: &[Traffic]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = crate::tx::Tx::begin(&self.pool, self.backend).await?;
        insert_blocks(&mut tx, batch).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Traffic records matching `f`, newest first (ties in the order they
    /// were written). `limit` is capped at 1,000 and `offset` at
    /// [`MAX_TRAFFIC_OFFSET`].
    pub async fn traffic(&self, f: &TrafficFilter) -> Result<Vec<Traffic>> {
        let limit = usize::try_from(f.limit.clamp(1, 1000)).unwrap_or(1);
        let offset = usize::try_from(f.offset.clamp(0, MAX_TRAFFIC_OFFSET)).unwrap_or(0);
        let need = offset + limit;
        // Only placeholders are added to the text; every value is bound.
        // Blocks are picked by what their columns fix and their time span;
        // the records in them are filtered below.
        let mut sql = String::from(
            "SELECT last_at, kind, agent, route, target, entries FROM traffic_blocks WHERE 1 = 1",
        );
        let mut n = 0;
        let mut next = |col: &str, op: &str| {
            n += 1;
            format!(" AND {col} {op} ${n}")
        };
        let kind = f.kind.map(|k| k.as_str().to_owned());
        let texts = [("kind", &kind), ("agent", &f.agent)];
        for (col, v) in texts {
            if v.is_some() {
                sql.push_str(&next(col, "="));
            }
        }
        let spans = [("last_at", ">=", f.since), ("first_at", "<", f.until)];
        for (col, op, v) in spans {
            if v.is_some() {
                sql.push_str(&next(col, op));
            }
        }
        sql.push_str(" ORDER BY last_at DESC, first_at DESC");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (_, v) in texts {
            if let Some(v) = v {
                q = q.bind(v.clone());
            }
        }
        for (_, _, v) in spans {
            if let Some(v) = v {
                q = q.bind(v);
            }
        }
        let keep = |at: i64, host: &str, status: i64| {
            f.host.as_deref().is_none_or(|h| h == host)
                && f.status.is_none_or(|s| s == status)
                && f.since.is_none_or(|s| at >= s)
                && f.until.is_none_or(|u| at < u)
        };
        // Newest first, stable, so records with equal times keep the order
        // they were written in.
        let newest_first =
            |found: &mut Vec<Traffic>| found.sort_by_key(|t| std::cmp::Reverse(t.at));
        let mut found: Vec<Traffic> = Vec::new();
        let mut blocks = q.fetch(&self.pool);
        while let Some(row) = blocks.try_next().await? {
            let last_at: i64 = row.try_get("last_at")?;
            // `found` holds the newest `need` so far, sorted; a block that
            // ends before the oldest of them cannot change the answer, nor
            // can any after it.
            if found.len() >= need && found.get(need - 1).is_some_and(|t| last_at < t.at) {
                break;
            }
            let entries: String = row.try_get("entries")?;
            let entries = unpack_where(&entries, keep)?;
            let (kind, agent, route, target): (TrafficKind, String, String, String) = (
                kind_of(row.try_get("kind")?)?,
                row.try_get("agent")?,
                row.try_get("route")?,
                row.try_get("target")?,
            );
            for e in entries {
                let Entry {
                    at,
                    client,
                    method,
                    host,
                    path,
                    status,
                    bytes_in,
                    bytes_out,
                    duration_ms,
                    error,
                    failures,
                } = e;
                found.push(Traffic {
                    at,
                    kind,
                    agent: agent.clone(),
                    route: route.clone(),
                    client,
                    method,
                    host,
                    path,
                    status,
                    target: target.clone(),
                    bytes_in,
                    bytes_out,
                    duration_ms,
                    error,
                    failures,
                });
            }
            if found.len() >= need {
                newest_first(&mut found);
                found.truncate(need);
            }
        }
        newest_first(&mut found);
        Ok(found.into_iter().skip(offset).take(limit).collect())
    }

    /// Drops the blocks of traffic records that ended before `before`,
    /// then the oldest blocks beyond the newest `keep` records (a block
    /// that would take the count past `keep` goes whole). Returns how many
    /// records went.
    pub async fn prune_traffic(&self, before: i64, keep: i64) -> Result<u64> {
        let mut gone = self.drop_blocks("last_at <", before).await?;
        let mut kept = 0i64;
        let mut cutoff = None;
        {
            let mut blocks = sqlx::query(
                "SELECT last_at, record_count FROM traffic_blocks ORDER BY last_at DESC",
            )
            .fetch(&self.pool);
            while let Some(row) = blocks.try_next().await? {
                kept += row.try_get::<i64, _>("record_count")?;
                if kept > keep {
                    cutoff = Some(row.try_get::<i64, _>("last_at")?);
                    break;
                }
            }
        }
        if let Some(at) = cutoff {
            gone += self.drop_blocks("last_at <=", at).await?;
        }
        Ok(gone)
    }

    /// Deletes the blocks where `cond` (a column and an operator) holds
    /// for `at`; returns how many records they held.
    async fn drop_blocks(&self, cond: &'static str, at: i64) -> Result<u64> {
        let mut tx = crate::tx::Tx::begin(&self.pool, self.backend).await?;
        let records: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COALESCE(SUM(record_count), 0) AS BIGINT) AS n FROM traffic_blocks WHERE {cond} $1"
        )))
        .bind(at)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM traffic_blocks WHERE {cond} $1"
        )))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(u64::try_from(records).unwrap_or(0))
    }
}

//! The agent's own log files (`--log-file`, Octoporty's
//! `Logging__FilePath`), read newest first for the Logs page: today's file
//! and the rolled ones before it, JSON lines or text lines.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use tracing::Level;

/// Where the agent writes its log files and how.
#[derive(Debug, Clone)]
pub struct LogFiles {
    /// The directory.
    pub dir: PathBuf,
    /// Each file is `PREFIX.YYYY-MM-DD[.SUFFIX]`.
    pub prefix: String,
    /// The extension, if any.
    pub suffix: Option<String>,
    /// JSON lines (else text lines).
    pub json: bool,
}

/// Bytes read at most per request, over all files: the page stays quick on
/// a day of heavy logging (older lines are further back in the files).
const MAX_SCAN: u64 = 32 * 1024 * 1024;

/// Bytes read per step from the end of a file.
const CHUNK: u64 = 256 * 1024;

/// One line, as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileLine {
    pub(crate) time: String,
    pub(crate) level: Level,
    pub(crate) message: String,
    pub(crate) fields: Map<String, Value>,
}

impl FileLine {
    pub(crate) fn json(&self) -> Value {
        json!({
            "time": self.time,
            "level": self.level.to_string(),
            "message": self.message,
            "fields": self.fields,
        })
    }

    fn matches(&self, needle: Option<&str>) -> bool {
        mentions(
            needle,
            &self.message,
            self.fields.values().map(|v| v.to_string().into()),
        )
    }
}

/// Whether a log line's message or one of its field values contains
/// `needle` (lowercase), ignoring case; no needle: every line. The Logs
/// page's search, for the lines of the files and the live ones alike.
pub(crate) fn mentions<'a>(
    needle: Option<&str>,
    message: &str,
    mut values: impl Iterator<Item = std::borrow::Cow<'a, str>>,
) -> bool {
    needle.is_none_or(|n| {
        message.to_lowercase().contains(n) || values.any(|v| v.to_lowercase().contains(n))
    })
}

impl LogFiles {
    /// The files, newest first (the date in the name sorts them).
    fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter(|e| self.is_ours(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect();
        found.sort();
        found.reverse();
        Ok(found)
    }

    fn is_ours(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(&self.prefix) else {
            return false;
        };
        let date = match &self.suffix {
            Some(s) => rest
                .strip_suffix(s.as_str())
                .and_then(|r| r.strip_suffix('.')),
            None => Some(rest),
        };
        date.and_then(|d| d.strip_prefix('.')).is_some_and(|d| {
            d.len() == 10
                && d.bytes().enumerate().all(|(i, b)| {
                    if i == 4 || i == 7 {
                        b == b'-'
                    } else {
                        b.is_ascii_digit()
                    }
                })
        })
    }

    /// The newest `want` lines at `level` or more severe that contain
    /// `needle` (lowercase), oldest first; and whether the scan stopped at
    /// its byte bound before the files ended.
    pub(crate) fn recent(
        &self,
        want: usize,
        level: Level,
        needle: Option<&str>,
    ) -> std::io::Result<(Vec<FileLine>, bool)> {
        let mut out = Vec::new();
        let mut budget = MAX_SCAN;
        for f in self.files()? {
            let full = Self::scan_back(&f, &mut budget, |raw| {
                if let Some(l) = parse(raw, self.json)
                    && l.level <= level
                    && l.matches(needle)
                {
                    out.push(l);
                }
                out.len() < want
            })?;
            if out.len() >= want {
                break;
            }
            if !full {
                out.reverse();
                return Ok((out, true));
            }
        }
        out.reverse();
        Ok((out, false))
    }

    /// Calls `each` with the lines of `path` from the last to the first
    /// until it says stop; false when the byte budget ran out first.
    fn scan_back(
        path: &Path,
        budget: &mut u64,
        mut each: impl FnMut(&str) -> bool,
    ) -> std::io::Result<bool> {
        let mut file = std::fs::File::open(path)?;
        let mut end = file.metadata()?.len();
        // Bytes of a line cut by the chunk boundary, carried to the next.
        let mut carry: Vec<u8> = Vec::new();
        while end > 0 {
            if *budget == 0 {
                return Ok(false);
            }
            let step = CHUNK.min(end).min(*budget);
            *budget -= step;
            let start = end - step;
            file.seek(SeekFrom::Start(start))?;
            let mut buf = vec![0u8; usize::try_from(step).unwrap_or(0)];
            file.read_exact(&mut buf)?;
            buf.extend_from_slice(&carry);
            // The first piece may be cut: keep it for the next chunk,
            // unless this chunk starts the file.
            let mut pieces: Vec<&[u8]> = buf.split(|b| *b == b'\n').collect();
            let first = if start > 0 { pieces.remove(0) } else { &[][..] };
            for line in pieces.iter().rev() {
                if line.is_empty() {
                    continue;
                }
                if !each(&String::from_utf8_lossy(line)) {
                    return Ok(true);
                }
            }
            carry = first.to_vec();
            end = start;
        }
        Ok(true)
    }
}

/// One line of a log file, JSON (tracing's flattened events) or text
/// (`TIME  LEVEL target: message fields`). Lines that are neither are
/// skipped.
fn parse(raw: &str, json: bool) -> Option<FileLine> {
    if json {
        let Value::Object(mut o) = serde_json::from_str(raw).ok()? else {
            return None;
        };
        let time = o.remove("timestamp")?.as_str()?.to_owned();
        let level = o.remove("level")?.as_str()?.parse().ok()?;
        let message = match o.remove("message") {
            Some(Value::String(s)) => s,
            Some(v) => v.to_string(),
            None => String::new(),
        };
        o.remove("target");
        return Some(FileLine {
            time,
            level,
            message,
            fields: o,
        });
    }
    let mut words = raw.splitn(3, char::is_whitespace).filter(|w| !w.is_empty());
    let time = words.next()?.to_owned();
    let rest = raw[time.len()..].trim_start();
    let (level, rest) = rest.split_once(char::is_whitespace)?;
    let level = level.parse().ok()?;
    let message = rest.trim_start();
    let message = message
        .split_once(": ")
        .map_or(message, |(_, m)| m)
        .to_owned();
    Some(FileLine {
        time,
        level,
        message,
        fields: Map::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn files(dir: &Path, json: bool) -> LogFiles {
        LogFiles {
            dir: dir.to_path_buf(),
            prefix: "agent".into(),
            suffix: Some("log".into()),
            json,
        }
    }

    #[test]
    fn only_this_agents_dated_files_are_read() {
        let f = files(Path::new("/"), true);
        assert!(f.is_ours("agent.2026-12-03.log"));
        assert!(!f.is_ours("agent.log"));
        assert!(!f.is_ours("agent.2026-12-03.log.gz"));
        assert!(!f.is_ours("agent.../../x.log"));
        assert!(!f.is_ours("other.2026-12-03.log"));
        assert!(!f.is_ours("agent.2026-1x-03.log"));
        let bare = LogFiles { suffix: None, ..f };
        assert!(bare.is_ours("agent.2026-12-03"));
    }

    #[test]
    fn lines_are_read_newest_first_across_files_and_chunks() {
        let dir = tempfile::tempdir().expect("dir");
        let line = |i: usize, level: &str| {
            format!(
                r#"{{"timestamp":"2026-12-0{}T10:00:00Z","level":"{level}","message":"line {i} {}","target":"burrow","agent":"a"}}"#,
                1 + i / 10_000,
                "x".repeat(40)
            )
        };
        // Two days, 20,000 lines: several chunks per file.
        for day in 0..2 {
            let mut f =
                std::fs::File::create(dir.path().join(format!("agent.2026-12-0{}.log", day + 1)))
                    .expect("file");
            for i in day * 10_000..(day + 1) * 10_000 {
                let level = if i % 100 == 0 { "WARN" } else { "INFO" };
                writeln!(f, "{}", line(i, level)).expect("write");
            }
            // A line that is not JSON is skipped.
            writeln!(f, "not json").expect("write");
        }
        let f = files(dir.path(), true);
        let (got, cut) = f.recent(3, Level::INFO, None).expect("read");
        assert!(!cut);
        let msgs: Vec<_> = got
            .iter()
            .map(|l| l.message.split(' ').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(msgs, ["19997", "19998", "19999"]);
        assert_eq!(got[0].fields["agent"], "a");
        // Only warnings: one line in a hundred, from both files.
        let (warn, _) = f.recent(150, Level::WARN, None).expect("read");
        assert_eq!(warn.len(), 150);
        assert!(warn.iter().all(|l| l.level == Level::WARN));
        assert!(
            warn[0].message.starts_with("line 5000 "),
            "{}",
            warn[0].message
        );
        // Search.
        let (found, _) = f.recent(10, Level::INFO, Some("line 123 ")).expect("read");
        assert_eq!(found.len(), 1);
    }

    #[test]
    fn text_lines_give_their_level_and_message() {
        let l = parse(
            "2026-12-03T07:19:58.123456Z  WARN burrow_agent::link: link lost link=1",
            false,
        )
        .expect("parsed");
        assert_eq!(l.level, Level::WARN);
        assert_eq!(l.message, "link lost link=1");
        assert_eq!(l.time, "2026-12-03T07:19:58.123456Z");
        assert!(parse("garbage", false).is_none());
        assert!(parse("{\"level\":\"INFO\"}", true).is_none());
    }
}

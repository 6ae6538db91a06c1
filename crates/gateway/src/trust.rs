//! Which client-certificate thumbprints the gateway trusts for which agent:
//! from flags, and from a trust file re-read whenever it changes, so a
//! thumbprint can be added or removed while links stay up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use burrow_transport::tls::Thumbprint;
use burrow_wire::valid_name;

type Map = HashMap<String, Vec<Thumbprint>>;

/// One `NAME=THUMBPRINT` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustEntry {
    /// Agent name.
    pub agent: String,
    /// A thumbprint trusted for it.
    pub thumbprint: Thumbprint,
}

/// A malformed trust entry or file.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// An entry does not parse.
    #[error(
        "invalid trust entry {entry:?}: {why} (expected AGENT=THUMBPRINT, the thumbprint the agent prints at start)"
    )]
    Entry {
        /// The entry.
        entry: String,
        /// What is wrong.
        why: String,
    },
    /// A trust file line does not parse.
    #[error("{path}:{line}: {source}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The entry's error.
        source: Box<TrustError>,
    },
    /// The trust file cannot be read.
    #[error("cannot read the trust file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl FromStr for TrustEntry {
    type Err = TrustError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| TrustError::Entry {
            entry: s.to_owned(),
            why,
        };
        let (agent, tp) = s
            .split_once('=')
            .or_else(|| s.trim().split_once(char::is_whitespace))
            .ok_or_else(|| bad("no '='".into()))?;
        let agent = agent.trim();
        if !valid_name(agent) {
            return Err(bad(
                "agent names are 1-200 letters, digits, '-' and '.', not only dots".into(),
            ));
        }
        let thumbprint = tp.trim().parse().map_err(|e| bad(format!("{e}")))?;
        Ok(TrustEntry {
            agent: agent.to_owned(),
            thumbprint,
        })
    }
}

#[derive(Debug)]
struct TrustFile {
    path: PathBuf,
    /// The file's mtime when last read, and what it said.
    cache: Mutex<(Option<SystemTime>, Map)>,
}

fn read_file(path: &Path) -> Result<(Option<SystemTime>, Map), TrustError> {
    let io = |source| TrustError::Read {
        path: path.to_owned(),
        source,
    };
    let mtime = std::fs::metadata(path).map_err(io)?.modified().ok();
    let text = std::fs::read_to_string(path).map_err(io)?;
    let mut map = Map::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let e: TrustEntry = line.parse().map_err(|e| TrustError::Line {
            path: path.to_owned(),
            line: i + 1,
            source: Box::new(e),
        })?;
        map.entry(e.agent).or_default().push(e.thumbprint);
    }
    Ok((mtime, map))
}

/// Trusted agent certificates.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    fixed: Map,
    file: Option<Arc<TrustFile>>,
}

impl Trust {
    /// Trust from flag entries.
    pub fn new(entries: impl IntoIterator<Item = TrustEntry>) -> Self {
        let mut fixed = Map::new();
        for e in entries {
            fixed.entry(e.agent).or_default().push(e.thumbprint);
        }
        Trust { fixed, file: None }
    }

    /// Adds a trust file (lines `AGENT=THUMBPRINT` or `AGENT THUMBPRINT`,
    /// `#` comments). It must parse now; later edits apply to the next
    /// link, and an edit that does not parse is logged and ignored.
    pub fn with_file(mut self, path: PathBuf) -> Result<Self, TrustError> {
        let cache = read_file(&path)?;
        self.file = Some(Arc::new(TrustFile {
            path,
            cache: Mutex::new(cache),
        }));
        Ok(self)
    }

    /// Does any entry exist (flags or file)?
    pub fn is_configured(&self) -> bool {
        !self.fixed.is_empty() || self.file.is_some()
    }

    /// The thumbprints trusted for `agent` now.
    pub fn for_agent(&self, agent: &str) -> Vec<Thumbprint> {
        let mut out = self.fixed.get(agent).cloned().unwrap_or_default();
        if let Some(f) = &self.file {
            let mut cache = f.cache.lock().unwrap_or_else(|p| p.into_inner());
            let mtime = std::fs::metadata(&f.path)
                .ok()
                .and_then(|m| m.modified().ok());
            if mtime != cache.0 {
                match read_file(&f.path) {
                    Ok(fresh) => {
                        tracing::info!(event = crate::event::TRUST_RELOADED, path = %f.path.display(), agents = fresh.1.len(), "trust file reloaded");
                        *cache = fresh;
                    }
                    Err(e) => {
                        // Keep what worked; say so once per change.
                        tracing::warn!(error = %e, "trust file not reloaded; keeping the previous entries");
                        cache.0 = mtime;
                    }
                }
            }
            out.extend(cache.1.get(agent).into_iter().flatten().copied());
        }
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(b: &[u8]) -> Thumbprint {
        Thumbprint::of_der(b)
    }

    #[test]
    fn entries_parse_and_bad_ones_say_why() {
        let e: TrustEntry = format!("edge-1={}", tp(b"a")).parse().expect("parses");
        assert_eq!(e.agent, "edge-1");
        assert_eq!(e.thumbprint, tp(b"a"));
        for (bad, why) in [
            ("edge-1", "no '='"),
            ("bad name=AB", "agent names"),
            ("edge-1=xyz", "64 hex digits"),
        ] {
            let e = bad.parse::<TrustEntry>().expect_err(bad).to_string();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn the_file_is_reread_when_it_changes_and_bad_edits_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trust");
        let write = |text: String, secs: u64| {
            std::fs::write(&path, text).expect("write");
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(t))
                .expect("mtime");
        };
        write(
            format!("# agents\nedge {}\nedge={}\n", tp(b"a"), tp(b"b")),
            1000,
        );
        let trust = Trust::new([TrustEntry {
            agent: "edge".into(),
            thumbprint: tp(b"c"),
        }])
        .with_file(path.clone())
        .expect("loads");
        assert_eq!(trust.for_agent("edge").len(), 3);
        assert!(trust.for_agent("other").is_empty());
        write(format!("edge {}\n", tp(b"b")), 2000);
        assert_eq!(trust.for_agent("edge"), {
            let mut v = vec![tp(b"b"), tp(b"c")];
            v.sort();
            v
        });
        write("edge not-a-thumbprint\n".into(), 3000);
        assert_eq!(
            trust.for_agent("edge").len(),
            2,
            "bad edit keeps the old entries"
        );
        let e = Trust::default()
            .with_file(path)
            .expect_err("bad file at start")
            .to_string();
        assert!(e.contains(":1:"), "{e}");
    }
}

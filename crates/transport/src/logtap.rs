//! The process's recent log lines, and a live feed of new ones, for
//! whoever shows logs while running (the agent's web UI, the gateway's
//! answers to its agents). [`layer`] goes into the subscriber beside the
//! console and file layers, under the same level filter.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// Lines kept for a late reader.
pub const KEPT: usize = 2000;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// When (µs since the epoch).
    pub at: i64,
    /// The level.
    pub level: Level,
    /// The message.
    pub message: String,
    /// The other fields, as text.
    pub fields: BTreeMap<String, String>,
}

impl Line {
    /// A field's value.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }

    /// As the link and the admin API carry it.
    pub fn to_api(&self) -> burrow_api::types::LogLine {
        burrow_api::types::LogLine {
            at: self.at,
            level: self.level.to_string(),
            message: self.message.clone(),
            fields: self.fields.clone(),
        }
    }
}

/// The level named (`ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`, any case);
/// `None`: `INFO`.
pub fn level(name: Option<&str>) -> Result<Level, String> {
    match name {
        None => Ok(Level::INFO),
        Some(n) => n
            .parse()
            .map_err(|_| format!("unknown level {n:?}: use ERROR, WARN, INFO, DEBUG or TRACE")),
    }
}

/// The recent lines and the live feed.
pub struct Tap {
    kept: Mutex<VecDeque<Arc<Line>>>,
    live: broadcast::Sender<Arc<Line>>,
}

/// The process's tap (empty until [`layer`] is installed).
pub fn tap() -> &'static Tap {
    static TAP: OnceLock<Tap> = OnceLock::new();
    TAP.get_or_init(|| Tap {
        kept: Mutex::new(VecDeque::with_capacity(KEPT)),
        live: broadcast::channel(1024).0,
    })
}

impl Tap {
    /// The kept lines that pass `keep`, oldest first, at most `most`.
    pub fn recent(&self, most: usize, keep: impl Fn(&Line) -> bool) -> Vec<Arc<Line>> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Arc<Line>> = kept
            .iter()
            .rev()
            .filter(|l| keep(l))
            .take(most)
            .cloned()
            .collect();
        out.reverse();
        out
    }

    /// New lines from now on (a reader that falls behind misses some and
    /// is told how many).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Line>> {
        self.live.subscribe()
    }

    fn push(&self, line: Line) {
        let line = Arc::new(line);
        {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back(line.clone());
        }
        let _ = self.live.send(line);
    }
}

/// The layer that feeds [`tap`].
pub fn layer() -> TapLayer {
    TapLayer(())
}

/// See [`layer`].
pub struct TapLayer(());

#[derive(Default)]
struct Fields {
    message: String,
    fields: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields
                .insert(field.name().to_owned(), value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        if field.name() == "message" {
            self.message = s;
        } else {
            self.fields.insert(field.name().to_owned(), s);
        }
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for TapLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        tap().push(Line {
            at,
            level: *event.metadata().level(),
            message: f.message,
            fields: f.fields,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_named_or_refused() {
        assert_eq!(level(None), Ok(Level::INFO));
        assert_eq!(level(Some("warn")), Ok(Level::WARN));
        assert!(
            level(Some("loud"))
                .expect_err("unknown")
                .contains("ERROR, WARN")
        );
        // Lines at or above the level wanted pass.
        assert!(Level::ERROR <= Level::WARN && Level::DEBUG > Level::INFO);
    }
    use tracing_subscriber::layer::SubscriberExt as _;

    #[test]
    fn lines_are_kept_and_fed_live() {
        let sub = tracing_subscriber::registry().with(layer());
        let mut live = tap().subscribe();
        let sub = std::sync::Arc::new(sub);
        tracing::subscriber::with_default(sub.clone(), || {
            tracing::info!(agent = "edge-1", event = "agent.link_up", n = 3, "link up");
        });
        let first = live.try_recv().expect("fed live");
        assert_eq!(first.message, "link up");
        assert_eq!(first.field("agent"), Some("edge-1"));
        assert_eq!(first.field("n"), Some("3"));
        assert_eq!(first.level, Level::INFO);
        tracing::subscriber::with_default(sub, || {
            for i in 0..KEPT + 5 {
                tracing::debug!(i, "filler");
            }
            tracing::warn!(agent = "edge-2", "other");
        });
        // A reader that fell behind is told.
        assert!(matches!(
            live.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
        // Only the newest KEPT are kept; the filter picks among them.
        let kept = tap().recent(usize::MAX, |_| true);
        assert_eq!(kept.len(), KEPT);
        assert!(kept.iter().all(|l| l.message != "link up"));
        let other = tap().recent(10, |l| l.field("agent") == Some("edge-2"));
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].level, Level::WARN);
    }
}

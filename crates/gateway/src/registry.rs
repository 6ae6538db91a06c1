//! Which agents have live links, and which link a new stream goes on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use burrow_mux::Session;

/// One live link of an agent.
#[derive(Clone)]
pub struct LinkInfo {
    /// Link id, unique within this gateway process.
    pub id: u64,
    /// The mux session on the link.
    pub session: Session,
    /// Requests to the agent on the link.
    pub rpc: burrow_rpc::Rpc,
    /// Agent's address as seen by the gateway.
    pub peer: Option<SocketAddr>,
    /// Agent's software version from its hello.
    pub version: String,
    /// When the link came up.
    pub since: SystemTime,
    /// The agent key whose access token opened it (key-pair links only).
    pub key: Option<String>,
    /// The agent said it is shutting down: no new streams on this link.
    pub draining: bool,
    /// The gateway shard the link runs on, if it runs on one.
    pub shard: Option<usize>,
}

#[derive(Default)]
struct Agent {
    links: Vec<LinkInfo>,
    next: usize,
}

/// Live links by agent name.
#[derive(Default)]
pub struct Registry {
    agents: Mutex<HashMap<String, Agent>>,
    next_id: AtomicU64,
    /// The other replicas, for agents with no link here.
    remote: std::sync::OnceLock<std::sync::Arc<dyn Remote>>,
}

/// What an open waits for.
pub(crate) type Opening<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<burrow_mux::MuxStream, crate::refusal::OpenFailure>>
            + Send
            + 'a,
    >,
>;

/// Agents reached through other replicas.
pub(crate) trait Remote: Send + Sync {
    /// Opens `target` through `agent` on a replica holding its links.
    fn open<'a>(&'a self, agent: &'a str, target: &'a str) -> Opening<'a>;
}

/// A snapshot of one agent for status output.
#[derive(Debug, Clone)]
pub struct AgentStatus {
    /// Agent name.
    pub name: String,
    /// Live links.
    pub links: usize,
    /// Software version of its newest link.
    pub version: String,
}

impl Registry {
    fn agents(&self) -> std::sync::MutexGuard<'_, HashMap<String, Agent>> {
        // The map is consistent at every unlock; a panic elsewhere cannot
        // leave it half-written.
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a link; returns its id and the agent's link count.
    pub fn add(
        &self,
        agent: &str,
        session: Session,
        rpc: burrow_rpc::Rpc,
        peer: Option<SocketAddr>,
        version: String,
        key: Option<String>,
    ) -> (u64, usize) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let mut agents = self.agents();
        let a = agents.entry(agent.to_owned()).or_default();
        a.links.push(LinkInfo {
            id,
            session,
            rpc,
            peer,
            version,
            since: SystemTime::now(),
            key,
            draining: false,
            shard: crate::shard::current(),
        });
        (id, a.links.len())
    }

    /// Removes a link; returns the agent's remaining link count.
    pub fn remove(&self, agent: &str, id: u64) -> usize {
        let mut agents = self.agents();
        let Some(a) = agents.get_mut(agent) else {
            return 0;
        };
        a.links.retain(|l| l.id != id);
        let left = a.links.len();
        if left == 0 {
            agents.remove(agent);
        }
        left
    }

    /// Reaches agents through other replicas from now on.
    pub(crate) fn set_remote(&self, remote: std::sync::Arc<dyn Remote>) {
        let _ = self.remote.set(remote);
    }

    /// The other replicas, when this gateway shares its database.
    pub(crate) fn remote(&self) -> Option<&std::sync::Arc<dyn Remote>> {
        self.remote.get()
    }

    /// What this gateway holds of each agent: links, their smallest round
    /// trip, when the oldest came up.
    pub(crate) fn held(&self) -> Vec<burrow_store::Held> {
        self.agents()
            .iter()
            .map(|(name, a)| held_of(name, &a.links))
            .collect()
    }

    /// [`Registry::held`] for one agent, if it has links here.
    pub(crate) fn held_by(&self, agent: &str) -> Option<burrow_store::Held> {
        self.agents()
            .get(agent)
            .filter(|a| !a.links.is_empty())
            .map(|a| held_of(agent, &a.links))
    }

    /// Every live link's session.
    pub(crate) fn sessions(&self) -> Vec<Session> {
        self.agents()
            .values()
            .flat_map(|a| a.links.iter().map(|l| l.session.clone()))
            .collect()
    }

    /// Number of live links an agent has.
    pub fn link_count(&self, agent: &str) -> usize {
        self.agents().get(agent).map_or(0, |a| a.links.len())
    }

    /// Picks the agent's next live link, round robin; on a shard, one
    /// on the same shard when the agent has one there.
    pub fn pick(&self, agent: &str) -> Option<Session> {
        self.pick_link(agent).map(|(s, _)| s)
    }

    /// [`Registry::pick`], with the shard the link runs on.
    pub(crate) fn pick_link(&self, agent: &str) -> Option<(Session, Option<usize>)> {
        let here = crate::shard::current();
        let mut agents = self.agents();
        let a = agents.get_mut(agent)?;
        let n = a.links.len();
        let mut other = None;
        for _ in 0..n {
            let i = a.next % n;
            a.next = a.next.wrapping_add(1);
            let l = &a.links[i];
            if l.draining || l.session.is_closed() {
                continue;
            }
            if here.is_none() || l.shard == here {
                return Some((l.session.clone(), l.shard));
            }
            other.get_or_insert(i);
        }
        other.map(|i| (a.links[i].session.clone(), a.links[i].shard))
    }

    /// Every agent with at least one live link.
    pub fn status(&self) -> Vec<AgentStatus> {
        let mut v: Vec<_> = self
            .agents()
            .iter()
            .map(|(name, a)| AgentStatus {
                name: name.clone(),
                links: a.links.len(),
                version: a
                    .links
                    .last()
                    .map(|l| l.version.clone())
                    .unwrap_or_default(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Closes every link of one agent; returns how many.
    pub fn close_agent(&self, agent: &str) -> usize {
        self.agents().get(agent).map_or(0, |a| {
            for l in &a.links {
                l.session.close();
            }
            a.links.len()
        })
    }

    /// Marks a link as draining: [`Registry::pick`] skips it from now on.
    pub fn set_draining(&self, agent: &str, id: u64) {
        if let Some(a) = self.agents().get_mut(agent) {
            for l in a.links.iter_mut().filter(|l| l.id == id) {
                l.draining = true;
            }
        }
    }

    /// Closes the agent's key-pair links whose key is not in `keys`;
    /// returns how many. Links opened with a pre-shared key or a
    /// certificate alone are left alone.
    pub fn close_unless_key(&self, agent: &str, keys: &[String]) -> usize {
        self.agents().get(agent).map_or(0, |a| {
            let mut n = 0;
            for l in &a.links {
                if l.key.as_ref().is_some_and(|k| !keys.contains(k)) && !l.session.is_closed() {
                    l.session.close();
                    n += 1;
                }
            }
            n
        })
    }

    /// Agents with at least one key-pair link.
    pub fn keyed_agents(&self) -> Vec<String> {
        self.agents()
            .iter()
            .filter(|(_, a)| a.links.iter().any(|l| l.key.is_some()))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Snapshot of one agent's live links.
    pub fn links(&self, agent: &str) -> Vec<LinkInfo> {
        self.agents()
            .get(agent)
            .map_or_else(Vec::new, |a| a.links.clone())
    }

    /// Closes every link (shutdown).
    pub fn close_all(&self) {
        for a in self.agents().values() {
            for l in &a.links {
                l.session.close();
            }
        }
    }

    /// Tells every agent on every link that this gateway is shutting down
    /// (its links close after the drain), so it logs the close as one, not
    /// as a failure. Sent when the drain starts, well before the close.
    pub async fn say_going_away(&self) {
        let sessions = self.sessions();
        let told = sessions.iter().map(|s| async move {
            let said = s.send_control(burrow_wire::control::GOING_AWAY, bytes::Bytes::new());
            let _ = tokio::time::timeout(std::time::Duration::from_millis(500), said).await;
        });
        futures_util::future::join_all(told).await;
    }
}

fn held_of(agent: &str, links: &[LinkInfo]) -> burrow_store::Held {
    let micros = |t: SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    };
    burrow_store::Held {
        agent: agent.to_owned(),
        links: i64::try_from(links.len()).unwrap_or(i64::MAX),
        rtt_us: links
            .iter()
            .filter_map(|l| l.session.rtt())
            .min()
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        since: links.iter().map(|l| micros(l.since)).min().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_mux::{Config, Session};

    fn session() -> (Session, Session) {
        let (a, b) = tokio::io::duplex(1024);
        let mk = |io: tokio::io::DuplexStream, dialer| {
            let (r, w) = tokio::io::split(io);
            Session::new(
                tokio_util::codec::FramedRead::new(r, burrow_wire::FrameCodec),
                tokio_util::codec::FramedWrite::new(w, burrow_wire::FrameCodec),
                Config {
                    dialer,
                    heartbeat: None,
                    ..Config::default()
                },
            )
            .0
        };
        (mk(a, false), mk(b, true))
    }

    fn rpc(s: &Session) -> burrow_rpc::Rpc {
        burrow_rpc::Rpc::new(
            s.clone(),
            burrow_rpc::Router::new(),
            burrow_rpc::Peer {
                role: "agent",
                answers: false,
                version: "1".into(),
            },
        )
    }

    #[tokio::test]
    async fn new_streams_spread_over_links_and_skip_dead_ones() {
        let r = Registry::default();
        let (l1, _p1) = session();
        let (l2, _p2) = session();
        let (id1, _) = r.add("home", l1.clone(), rpc(&l1), None, "1".into(), None);
        let (_id2, n) = r.add("home", l2.clone(), rpc(&l2), None, "1".into(), None);
        assert_eq!(n, 2);
        // Round robin: two picks land on two different links.
        let a = r.pick("home").expect("pick");
        let b = r.pick("home").expect("pick");
        let opened_on = |s: &Session| s.stream_count();
        let _s1 = a.open("t:1").await.expect("open");
        let _s2 = b.open("t:1").await.expect("open");
        assert_eq!((opened_on(&l1), opened_on(&l2)), (1, 1));
        // A dead link is skipped even before its task deregisters it...
        l1.close();
        for _ in 0..4 {
            let s = r.pick("home").expect("live link left");
            assert!(!s.is_closed());
        }
        // ...and once removed, the agent still has one link.
        assert_eq!(r.remove("home", id1), 1);
        assert_eq!(r.status()[0].links, 1);
        l2.close();
        assert!(r.pick("home").is_none(), "no live link");
        assert!(r.pick("nobody").is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_a_shard_new_streams_use_the_agents_link_there_if_it_has_one() {
        let r = Registry::default();
        let (l0, _p0) = session();
        let (l1, _p1) = session();
        crate::shard::pretend(Some(0));
        r.add("home", l0.clone(), rpc(&l0), None, "1".into(), None);
        crate::shard::pretend(Some(1));
        let (id1, _) = r.add("home", l1.clone(), rpc(&l1), None, "1".into(), None);
        assert_eq!(
            r.links("home").iter().map(|l| l.shard).collect::<Vec<_>>(),
            [Some(0), Some(1)]
        );
        let mut open = Vec::new();
        for (here, link) in [(Some(0), &l0), (Some(1), &l1)] {
            crate::shard::pretend(here);
            for _ in 0..3 {
                let (s, shard) = r.pick_link("home").expect("a link");
                assert_eq!(shard, here);
                open.push(s.open("t:1").await.expect("open"));
            }
            assert_eq!(link.stream_count(), 3);
        }
        // Off the shards: round robin over both.
        crate::shard::pretend(None);
        let a = r.pick_link("home").expect("a link").1;
        let b = r.pick_link("home").expect("a link").1;
        assert_ne!(a, b);
        // A shard whose link is gone (or draining) uses another shard's.
        r.set_draining("home", id1);
        crate::shard::pretend(Some(1));
        assert_eq!(r.pick_link("home").expect("the other link").1, Some(0));
        crate::shard::pretend(Some(2));
        assert_eq!(r.pick_link("home").expect("any link").1, Some(0));
        crate::shard::pretend(None);
    }

    #[tokio::test]
    async fn a_draining_link_gets_no_new_streams() {
        let r = Registry::default();
        let (l1, _p1) = session();
        let (l2, _p2) = session();
        let (id1, _) = r.add("home", l1.clone(), rpc(&l1), None, "1".into(), None);
        let (id2, _) = r.add("home", l2.clone(), rpc(&l2), None, "1".into(), None);
        r.set_draining("home", id1);
        let mut open = Vec::new();
        for _ in 0..4 {
            let s = r.pick("home").expect("the other link");
            open.push(s.open("t:1").await.expect("open"));
        }
        assert_eq!((l1.stream_count(), l2.stream_count()), (0, 4));
        r.set_draining("home", id2);
        assert!(r.pick("home").is_none(), "every link is draining");
    }

    #[tokio::test]
    async fn removing_a_key_closes_only_the_links_it_opened() {
        let r = Registry::default();
        let (old, _p1) = session();
        let (new, _p2) = session();
        let (psk, _p3) = session();
        r.add(
            "home",
            old.clone(),
            rpc(&old),
            None,
            "1".into(),
            Some("old".into()),
        );
        r.add(
            "home",
            new.clone(),
            rpc(&new),
            None,
            "1".into(),
            Some("new".into()),
        );
        r.add("home", psk.clone(), rpc(&psk), None, "1".into(), None);
        assert_eq!(r.keyed_agents(), ["home"]);
        assert_eq!(r.close_unless_key("home", &["new".into()]), 1);
        assert!(old.is_closed());
        assert!(!new.is_closed() && !psk.is_closed());
        // Already closed links are not counted twice.
        assert_eq!(r.close_unless_key("home", &["new".into()]), 0);
        assert_eq!(r.close_unless_key("home", &[]), 1);
        assert!(
            !psk.is_closed(),
            "a pre-shared-key link has no key to remove"
        );
        assert_eq!(r.close_agent("home"), 3);
        assert!(psk.is_closed());
    }
}

//! Typed requests and answers, either way, on one link's control messages
//! (`docs/protocol.md`, "Requests").
//!
//! Each side of a link holds one [`Rpc`]. It answers the peer's requests
//! with the handlers of its [`Router`] and sends its own with
//! [`Rpc::call`] (one answer) or [`Rpc::follow`] (a stream of items, until
//! either side stops). Methods are types ([`Call`], [`Follow`]) shared by
//! both ends, so the request and answer are checked by the compiler on
//! both sides. The link's control loop hands every control message to
//! [`Rpc::on_control`], which never waits.
//!
//! Bounds: an answer larger than one control message is sent in parts and
//! joined by the caller up to [`Options::max_answer`]; a call gives up after
//! [`Options::timeout`] and cancels the request; a side answers at most
//! [`MAX_SERVED`] requests at a time (more get "busy"); a follower that
//! falls [`FOLLOW_BACKLOG`] items behind is cut off.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use burrow_mux::Session;
use burrow_wire::control;
use burrow_wire::rpc::{MAX_BODY, Request, Response, Status, decode_cancel, encode_cancel};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// A method with one answer.
pub trait Call {
    /// Its name on the wire.
    const METHOD: &'static str;
    /// What the caller sends.
    type Request: Serialize + DeserializeOwned + Send + 'static;
    /// What it gets back.
    type Response: Serialize + DeserializeOwned + Send + 'static;
}

/// A method that answers with a stream of items.
pub trait Follow {
    /// Its name on the wire.
    const METHOD: &'static str;
    /// What the caller sends.
    type Request: Serialize + DeserializeOwned + Send + 'static;
    /// One item of the stream.
    type Item: Serialize + DeserializeOwned + Send + 'static;
}

/// Most requests one side answers at a time on a link.
pub const MAX_SERVED: usize = 32;
/// Most requests one side waits on at a time on a link.
pub const MAX_PENDING: usize = 256;
/// Items a follower may fall behind before the stream is cut off.
pub const FOLLOW_BACKLOG: usize = 256;
/// Largest request (joined parts) a side takes.
pub const MAX_REQUEST: usize = 1024 * 1024;

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The peer did not announce requests (an older version).
    #[error("not supported by {peer} version {version}")]
    Unsupported {
        /// `agent` or `gateway`.
        peer: &'static str,
        /// The version it announced.
        version: String,
    },
    /// The peer does not know this method (a different version).
    #[error("{method} is not supported by {peer} version {version}")]
    UnknownMethod {
        /// The method.
        method: String,
        /// `agent` or `gateway`.
        peer: &'static str,
        /// The version it announced.
        version: String,
    },
    /// The peer answered that the request failed.
    #[error("{0}")]
    Failed(String),
    /// The peer has too many requests open.
    #[error("the {0} is busy answering other requests; try again")]
    Busy(&'static str),
    /// No answer within the timeout.
    #[error("no answer from the {peer} within {secs} s")]
    Timeout {
        /// `agent` or `gateway`.
        peer: &'static str,
        /// The timeout.
        secs: u64,
    },
    /// The answer is larger than the caller takes.
    #[error("the answer is larger than {0} bytes")]
    TooLarge(usize),
    /// This side already waits on [`MAX_PENDING`] requests.
    #[error("too many requests waiting on this link")]
    TooMany,
    /// The link closed first.
    #[error("the link closed")]
    Closed,
    /// A request or answer that does not encode or decode.
    #[error("bad {what}: {why}")]
    Codec {
        /// `request` or `answer`.
        what: &'static str,
        /// The reason.
        why: String,
    },
    /// A follower fell too far behind.
    #[error("fell more than {FOLLOW_BACKLOG} items behind")]
    Lagged,
}

/// How long a call waits and how much it takes.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Longest wait for the whole answer.
    pub timeout: Duration,
    /// Largest answer taken (joined parts).
    pub max_answer: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(10),
            max_answer: 4 * 1024 * 1024,
        }
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type Handler = Arc<dyn Fn(Bytes, Reply) -> BoxFuture + Send + Sync>;

/// The methods one side answers.
#[derive(Default, Clone)]
pub struct Router {
    handlers: HashMap<&'static str, (bool, Handler)>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<_> = self.handlers.keys().collect();
        names.sort();
        f.debug_struct("Router").field("methods", &names).finish()
    }
}

impl Router {
    /// No methods.
    pub fn new() -> Self {
        Router::default()
    }

    /// Answers method `M` with `f`. An `Err` goes back as the failure
    /// message: say what failed in words the user can act on.
    pub fn call<M, F, Fut>(mut self, f: F) -> Self
    where
        M: Call,
        F: Fn(M::Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Response, String>> + Send + 'static,
    {
        let f = Arc::new(f);
        let h: Handler = Arc::new(move |body, reply| {
            let f = f.clone();
            Box::pin(async move {
                let req = match serde_json::from_slice::<M::Request>(&body) {
                    Ok(r) => r,
                    Err(e) => return reply.fail(&format!("bad request: {e}")).await,
                };
                let out = tokio::select! {
                    out = f(req) => out,
                    _ = reply.cancel.cancelled() => return,
                };
                let encoded = out.map(|a| serde_json::to_vec(&a));
                match encoded {
                    Ok(Ok(body)) => reply.answer(Bytes::from(body)).await,
                    Ok(Err(e)) => reply.fail(&format!("answer does not encode: {e}")).await,
                    Err(why) => reply.fail(&why).await,
                }
            })
        });
        self.handlers.insert(M::METHOD, (false, h));
        self
    }

    /// Answers method `S` with `f`, which sends items to its [`Sink`] until
    /// it is done or the sink says the caller left.
    pub fn follow<S, F, Fut>(mut self, f: F) -> Self
    where
        S: Follow,
        F: Fn(S::Request, Sink<S::Item>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let f = Arc::new(f);
        let h: Handler = Arc::new(move |body, reply| {
            let f = f.clone();
            Box::pin(async move {
                let req = match serde_json::from_slice::<S::Request>(&body) {
                    Ok(r) => r,
                    Err(e) => return reply.fail(&format!("bad request: {e}")).await,
                };
                let sink = Sink {
                    reply: reply.clone(),
                    _item: std::marker::PhantomData,
                };
                let out = tokio::select! {
                    out = f(req, sink) => out,
                    _ = reply.cancel.cancelled() => return,
                };
                match out {
                    Ok(()) => reply.send(Status::Done, Bytes::new()).await,
                    Err(why) => reply.fail(&why).await,
                }
            })
        });
        self.handlers.insert(S::METHOD, (true, h));
        self
    }
}

/// Where a [`Follow`] handler sends its items.
pub struct Sink<T> {
    reply: Reply,
    _item: std::marker::PhantomData<fn(T)>,
}

/// The caller of a [`Follow`] left, or the link closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the caller stopped following")]
pub struct Gone;

impl<T: Serialize> Sink<T> {
    /// Sends one item. An item that does not fit one control message is
    /// an error of the handler (keep items small).
    pub async fn send(&self, item: &T) -> Result<(), Gone> {
        if self.reply.cancel.is_cancelled() {
            return Err(Gone);
        }
        let body = match serde_json::to_vec(item) {
            Ok(b) if b.len() <= MAX_BODY => b,
            Ok(b) => {
                debug!(len = b.len(), "follow item too large; skipped");
                return Ok(());
            }
            Err(e) => {
                debug!(error = %e, "follow item does not encode; skipped");
                return Ok(());
            }
        };
        if self.reply.send_raw(Status::Part, Bytes::from(body)).await {
            Ok(())
        } else {
            Err(Gone)
        }
    }

    /// Resolves when the caller has left.
    pub async fn gone(&self) {
        self.reply.cancel.cancelled().await
    }
}

/// Answers one request.
#[derive(Clone)]
struct Reply {
    id: u32,
    session: Session,
    cancel: CancellationToken,
}

impl Reply {
    /// Sends a message; false if the link is gone or the caller left.
    async fn send_raw(&self, status: Status, body: Bytes) -> bool {
        let msg = Response {
            id: self.id,
            status,
            body,
        };
        let Ok(body) = msg.encode() else {
            return false;
        };
        tokio::select! {
            r = self.session.send_control(control::RESPONSE, body) => r.is_ok(),
            _ = self.cancel.cancelled() => false,
        }
    }

    async fn send(&self, status: Status, body: Bytes) {
        let _ = self.send_raw(status, body).await;
    }

    async fn fail(&self, why: &str) {
        let mut end = why.len().min(MAX_BODY);
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        self.send(
            Status::Failed,
            Bytes::copy_from_slice(&why.as_bytes()[..end]),
        )
        .await;
    }

    /// Sends an encoded answer in as many parts as it takes.
    async fn answer(&self, body: Bytes) {
        let mut rest = body;
        while rest.len() > MAX_BODY {
            let part = rest.split_to(MAX_BODY);
            if !self.send_raw(Status::Part, part).await {
                return;
            }
        }
        self.send(Status::Done, rest).await;
    }
}

enum Pending {
    Call {
        buf: Vec<u8>,
        max: usize,
        tx: oneshot::Sender<Result<Bytes, RpcError>>,
    },
    Follow {
        tx: mpsc::Sender<Result<Bytes, RpcError>>,
    },
}

/// A request's method, stream flag and the parts of its arguments so far.
type Partial = (String, bool, Vec<u8>);

struct Inner {
    session: Session,
    router: Router,
    /// `agent` or `gateway`: who the peer is, for messages.
    peer: &'static str,
    /// The peer announced requests.
    peer_answers: bool,
    peer_version: String,
    next_id: AtomicU32,
    pending: Mutex<HashMap<u32, Pending>>,
    /// One permit per request the peer answers at a time: callers wait
    /// their turn instead of being refused as busy.
    turns: Arc<tokio::sync::Semaphore>,
    served: Mutex<HashMap<u32, CancellationToken>>,
    /// Requests whose arguments are still arriving: method, stream, parts.
    partial: Mutex<HashMap<u32, Partial>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One side of a link's requests. Cheap to clone.
#[derive(Clone)]
pub struct Rpc {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Rpc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rpc")
            .field("peer", &self.inner.peer)
            .field("peer_answers", &self.inner.peer_answers)
            .finish()
    }
}

/// Who the peer is and what it announced.
#[derive(Debug, Clone)]
pub struct Peer {
    /// `agent` or `gateway`, for messages.
    pub role: &'static str,
    /// Whether it announced [`burrow_wire::capabilities::REQUESTS`].
    pub answers: bool,
    /// Its software version.
    pub version: String,
}

impl Rpc {
    /// Requests on `session`: this side answers with `router`. Pending
    /// requests fail with [`RpcError::Closed`] when the session ends, and
    /// requests being answered are cancelled.
    pub fn new(session: Session, router: Router, peer: Peer) -> Rpc {
        let rpc = Rpc {
            inner: Arc::new(Inner {
                session: session.clone(),
                router,
                peer: peer.role,
                peer_answers: peer.answers,
                peer_version: peer.version,
                next_id: AtomicU32::new(1),
                pending: Mutex::new(HashMap::new()),
                turns: Arc::new(tokio::sync::Semaphore::new(MAX_SERVED)),
                served: Mutex::new(HashMap::new()),
                partial: Mutex::new(HashMap::new()),
            }),
        };
        let weak = Arc::downgrade(&rpc.inner);
        tokio::spawn(async move {
            session.closed().await;
            if let Some(inner) = weak.upgrade() {
                Rpc { inner }.shut();
            }
        });
        rpc
    }

    fn shut(&self) {
        for (_, p) in lock(&self.inner.pending).drain() {
            match p {
                Pending::Call { tx, .. } => {
                    let _ = tx.send(Err(RpcError::Closed));
                }
                Pending::Follow { tx } => {
                    let _ = tx.try_send(Err(RpcError::Closed));
                }
            }
        }
        for (_, c) in lock(&self.inner.served).drain() {
            c.cancel();
        }
        lock(&self.inner.partial).clear();
    }

    /// Whether the peer answers requests.
    pub fn peer_answers(&self) -> bool {
        self.inner.peer_answers
    }

    /// Takes a control message if it is a request, answer or cancel
    /// (returns true), without waiting. A malformed one is dropped.
    pub fn on_control(&self, kind: u16, body: &Bytes) -> bool {
        match kind {
            control::REQUEST => match Request::decode(body.clone()) {
                Ok(r) => self.on_request(r),
                Err(e) => debug!(error = %e, "malformed request dropped"),
            },
            control::RESPONSE => match Response::decode(body.clone()) {
                Ok(r) => self.on_response(r),
                Err(e) => debug!(error = %e, "malformed answer dropped"),
            },
            control::CANCEL => match decode_cancel(body.clone()) {
                Ok(id) => {
                    if let Some(c) = lock(&self.inner.served).remove(&id) {
                        c.cancel();
                    }
                }
                Err(e) => debug!(error = %e, "malformed cancel dropped"),
            },
            _ => return false,
        }
        true
    }

    fn on_request(&self, mut r: Request) {
        // Arguments in parts: keep them until the last, within bounds.
        {
            let mut partial = lock(&self.inner.partial);
            if r.more || partial.contains_key(&r.id) {
                let too_many = !partial.contains_key(&r.id) && partial.len() >= MAX_SERVED;
                let entry = partial
                    .entry(r.id)
                    .or_insert_with(|| (r.method.clone(), r.stream, Vec::new()));
                let too_large = entry.2.len() + r.body.len() > MAX_REQUEST;
                if too_many || too_large || entry.0 != r.method || entry.1 != r.stream {
                    partial.remove(&r.id);
                    drop(partial);
                    return self.refuse(
                        r.id,
                        Status::Failed,
                        format!("request larger than {MAX_REQUEST} bytes, or its parts disagree"),
                    );
                }
                entry.2.extend_from_slice(&r.body);
                if r.more {
                    return;
                }
                let Some((_, _, body)) = partial.remove(&r.id) else {
                    return;
                };
                r.body = Bytes::from(body);
            }
        }
        let session = self.inner.session.clone();
        let refuse = |status: Status| self.refuse(r.id, status, String::new());
        let Some((_, handler)) = self
            .inner
            .router
            .handlers
            .get(r.method.as_str())
            .filter(|(stream, _)| *stream == r.stream)
        else {
            return refuse(Status::Unknown);
        };
        let cancel = CancellationToken::new();
        {
            let mut served = lock(&self.inner.served);
            if served.len() >= MAX_SERVED || served.contains_key(&r.id) {
                drop(served);
                return refuse(Status::Busy);
            }
            served.insert(r.id, cancel.clone());
        }
        let reply = Reply {
            id: r.id,
            session,
            cancel,
        };
        let run = handler(r.body, reply);
        let inner = Arc::downgrade(&self.inner);
        let id = r.id;
        tokio::spawn(async move {
            run.await;
            if let Some(inner) = inner.upgrade() {
                lock(&inner.served).remove(&id);
            }
        });
    }

    fn refuse(&self, id: u32, status: Status, why: String) {
        let session = self.inner.session.clone();
        tokio::spawn(async move {
            let msg = Response {
                id,
                status,
                body: Bytes::from(why),
            };
            if let Ok(b) = msg.encode() {
                let _ = session.send_control(control::RESPONSE, b).await;
            }
        });
    }

    fn on_response(&self, r: Response) {
        let mut pending = lock(&self.inner.pending);
        let Some(p) = pending.get_mut(&r.id) else {
            return;
        };
        let failure = match r.status {
            Status::Done | Status::Part => None,
            Status::Failed => Some(RpcError::Failed(
                String::from_utf8_lossy(&r.body).into_owned(),
            )),
            Status::Unknown => Some(RpcError::UnknownMethod {
                method: String::new(),
                peer: self.inner.peer,
                version: self.inner.peer_version.clone(),
            }),
            Status::Busy => Some(RpcError::Busy(self.inner.peer)),
        };
        match p {
            Pending::Call { buf, max, .. } => {
                let too_large = failure.is_none() && buf.len() + r.body.len() > *max;
                if failure.is_none() && !too_large {
                    buf.extend_from_slice(&r.body);
                    if !r.status.is_last() {
                        return;
                    }
                }
                let Some(Pending::Call { buf, max, tx }) = pending.remove(&r.id) else {
                    return;
                };
                drop(pending);
                let out = match failure {
                    Some(e) => Err(e),
                    None if too_large => {
                        self.cancel(r.id);
                        Err(RpcError::TooLarge(max))
                    }
                    None => Ok(Bytes::from(buf)),
                };
                let _ = tx.send(out);
            }
            Pending::Follow { tx } => {
                let item = match (failure, r.status) {
                    (Some(e), _) => Some(Err(e)),
                    (None, Status::Part) => Some(Ok(r.body)),
                    _ => None,
                };
                let last = r.status.is_last();
                // One place is kept for the error that says why it ended.
                let lagged = match item {
                    Some(item) if item.is_err() || tx.capacity() > 1 => tx.try_send(item).is_err(),
                    Some(_) => true,
                    None => false,
                };
                if (last || lagged)
                    && let Some(Pending::Follow { tx }) = pending.remove(&r.id)
                {
                    drop(pending);
                    if lagged && !last {
                        self.cancel(r.id);
                        let _ = tx.try_send(Err(RpcError::Lagged));
                    }
                }
            }
        }
    }

    fn cancel(&self, id: u32) {
        let session = self.inner.session.clone();
        // A `Following` may be dropped off the runtime: then the link is
        // going too, and the answering side stops when it closes.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let _ = session
                .send_control(control::CANCEL, encode_cancel(id))
                .await;
        });
    }

    fn check_peer(&self) -> Result<(), RpcError> {
        if self.inner.peer_answers {
            Ok(())
        } else {
            Err(RpcError::Unsupported {
                peer: self.inner.peer,
                version: self.inner.peer_version.clone(),
            })
        }
    }

    fn new_id(&self) -> u32 {
        loop {
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 && !lock(&self.inner.pending).contains_key(&id) {
                return id;
            }
        }
    }

    async fn send_request(
        &self,
        method: &'static str,
        stream: bool,
        req: &impl Serialize,
        pending: impl FnOnce() -> Pending,
    ) -> Result<u32, RpcError> {
        let body = serde_json::to_vec(req).map_err(|e| RpcError::Codec {
            what: "request",
            why: e.to_string(),
        })?;
        if body.len() > MAX_REQUEST {
            return Err(RpcError::Codec {
                what: "request",
                why: format!("larger than {MAX_REQUEST} bytes"),
            });
        }
        let id = self.new_id();
        let mut parts = Vec::new();
        let mut rest = Bytes::from(body);
        loop {
            let part = rest.split_to(rest.len().min(MAX_BODY));
            let msg = Request {
                id,
                method: method.to_owned(),
                stream,
                more: !rest.is_empty(),
                body: part,
            }
            .encode()
            .map_err(|e| RpcError::Codec {
                what: "request",
                why: e.to_string(),
            })?;
            parts.push(msg);
            if rest.is_empty() {
                break;
            }
        }
        {
            let mut p = lock(&self.inner.pending);
            if p.len() >= MAX_PENDING {
                return Err(RpcError::TooMany);
            }
            p.insert(id, pending());
        }
        for msg in parts {
            if self
                .inner
                .session
                .send_control(control::REQUEST, msg)
                .await
                .is_err()
            {
                lock(&self.inner.pending).remove(&id);
                return Err(RpcError::Closed);
            }
        }
        Ok(id)
    }

    fn name_method(&self, e: RpcError, method: &str) -> RpcError {
        match e {
            RpcError::UnknownMethod { peer, version, .. } => RpcError::UnknownMethod {
                method: method.to_owned(),
                peer,
                version,
            },
            e => e,
        }
    }

    /// Asks `M` with the default [`Options`].
    pub async fn call<M: Call>(&self, req: &M::Request) -> Result<M::Response, RpcError> {
        self.call_with::<M>(req, Options::default()).await
    }

    /// Asks `M` and waits for its answer.
    pub async fn call_with<M: Call>(
        &self,
        req: &M::Request,
        opts: Options,
    ) -> Result<M::Response, RpcError> {
        self.check_peer()?;
        let timeout = RpcError::Timeout {
            peer: self.inner.peer,
            secs: opts.timeout.as_secs(),
        };
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let _turn = tokio::time::timeout_at(deadline, self.inner.turns.clone().acquire_owned())
            .await
            .map_err(|_| timeout.clone())?
            .map_err(|_| RpcError::Closed)?;
        let (tx, rx) = oneshot::channel();
        let id = self
            .send_request(M::METHOD, false, req, || Pending::Call {
                buf: Vec::new(),
                max: opts.max_answer,
                tx,
            })
            .await?;
        let body = match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(r)) => r.map_err(|e| self.name_method(e, M::METHOD))?,
            Ok(Err(_)) => return Err(RpcError::Closed),
            Err(_) => {
                lock(&self.inner.pending).remove(&id);
                self.cancel(id);
                return Err(timeout);
            }
        };
        serde_json::from_slice(&body).map_err(|e| RpcError::Codec {
            what: "answer",
            why: e.to_string(),
        })
    }

    /// Asks `S` and returns its stream of items. Dropping the stream
    /// cancels the request.
    /// A follow holds one of the peer's turns while it lasts; it waits at
    /// most [`Options::default`]'s timeout for one.
    pub async fn follow<S: Follow>(&self, req: &S::Request) -> Result<Following<S>, RpcError> {
        self.check_peer()?;
        let secs = Options::default().timeout;
        let turn = tokio::time::timeout(secs, self.inner.turns.clone().acquire_owned())
            .await
            .map_err(|_| RpcError::Timeout {
                peer: self.inner.peer,
                secs: secs.as_secs(),
            })?
            .map_err(|_| RpcError::Closed)?;
        let (tx, rx) = mpsc::channel(FOLLOW_BACKLOG + 1);
        let id = self
            .send_request(S::METHOD, true, req, || Pending::Follow { tx })
            .await?;
        Ok(Following {
            rpc: self.clone(),
            _turn: turn,
            id,
            rx,
            done: false,
            _m: std::marker::PhantomData,
        })
    }
}

/// The items of a [`Follow`] request.
pub struct Following<S: Follow> {
    rpc: Rpc,
    _turn: tokio::sync::OwnedSemaphorePermit,
    id: u32,
    rx: mpsc::Receiver<Result<Bytes, RpcError>>,
    done: bool,
    _m: std::marker::PhantomData<fn() -> S>,
}

impl<S: Follow> Following<S> {
    /// The next item; `None` when the answering side is done. After an
    /// error nothing follows.
    pub async fn next(&mut self) -> Option<Result<S::Item, RpcError>> {
        if self.done {
            return None;
        }
        let Some(item) = self.rx.recv().await else {
            self.done = true;
            return None;
        };
        let out = item
            .map_err(|e| self.rpc.name_method(e, S::METHOD))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| RpcError::Codec {
                    what: "answer",
                    why: e.to_string(),
                })
            });
        if out.is_err() {
            self.done = true;
        }
        Some(out)
    }
}

impl<S: Follow> Drop for Following<S> {
    fn drop(&mut self) {
        if lock(&self.rpc.inner.pending).remove(&self.id).is_some() {
            self.rpc.cancel(self.id);
        }
    }
}

#[cfg(test)]
mod tests;

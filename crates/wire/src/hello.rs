//! The versioned handshake: the first frame each way on a link.

use bytes::{Buf, BufMut, Bytes};

use crate::{
    MAX_CAPABILITIES, MAX_CREDENTIAL_LEN, MAX_NAME_LEN, MAX_TEXT_LEN, WireError, get_str, put_str,
};

/// Capability strings peers may announce. Unknown ones are ignored.
pub mod capabilities {
    /// Streams may be opened towards the announcing side.
    pub const STREAMS: &str = "streams";
    /// The announcing side answers `Open` with `Opened` once the target is connected.
    pub const OPENED_ACK: &str = "opened-ack";
    /// The announcing side answers requests on the control messages
    /// ([`crate::rpc`]).
    pub const REQUESTS: &str = "requests";
    /// The announcing side reads a reason in words in a `Reset` frame and
    /// the finer reset codes (name not found, timeout, certificate, TLS).
    pub const RESET_REASONS: &str = "reset-reasons";
    /// In a hello: the dialing side is another gateway replica (its name
    /// is its replica id), opening [`crate::hop`] streams; it is trusted
    /// by its certificate alone.
    pub const PEER: &str = "peer";
    /// In a hello answer: `replica=ID`, the answering gateway replica's id.
    const REPLICA: &str = "replica=";

    /// The capability saying which replica answered.
    pub fn replica(id: &str) -> String {
        format!("{REPLICA}{id}")
    }

    /// The replica id in a hello answer's capabilities, if any.
    pub fn replica_of(caps: &[String]) -> Option<&str> {
        caps.iter()
            .find_map(|c| c.strip_prefix(REPLICA))
            .filter(|id| !id.is_empty())
    }
}

fn get_u16(p: &mut Bytes, frame: &'static str) -> Result<u16, WireError> {
    if p.remaining() < 2 {
        return Err(WireError::Malformed {
            frame,
            why: "truncated",
        });
    }
    Ok(p.get_u16())
}

fn get_caps(p: &mut Bytes, frame: &'static str) -> Result<Vec<String>, WireError> {
    let n = usize::from(get_u16(p, frame)?);
    if n > MAX_CAPABILITIES {
        return Err(WireError::FieldTooLong {
            field: "capabilities",
            len: n,
            max: MAX_CAPABILITIES,
        });
    }
    (0..n)
        .map(|_| get_str(p, "capability", frame, MAX_NAME_LEN))
        .collect()
}

fn put_caps(buf: &mut impl BufMut, caps: &[String]) {
    let caps = &caps[..caps.len().min(MAX_CAPABILITIES)];
    buf.put_u16(caps.len() as u16);
    for c in caps {
        put_str(buf, c, MAX_NAME_LEN);
    }
}

fn caps_len(caps: &[String]) -> usize {
    2 + caps
        .iter()
        .take(MAX_CAPABILITIES)
        .map(|c| 2 + c.len().min(MAX_NAME_LEN))
        .sum::<usize>()
}

fn done(p: &Bytes, frame: &'static str) -> Result<(), WireError> {
    if p.has_remaining() {
        Err(WireError::Malformed {
            frame,
            why: "trailing bytes in payload",
        })
    } else {
        Ok(())
    }
}

/// The agent's first frame. Its `Debug` output never shows the credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version the sender speaks ([`crate::PROTOCOL_VERSION`]).
    pub version: u16,
    /// Agent name (1–200 of letters, digits, `-`, `.`).
    pub agent_name: String,
    /// Sender's software version, for `list-agents` and logs.
    pub software_version: String,
    /// Capabilities the sender supports.
    pub capabilities: Vec<String>,
    /// What the agent proves itself with (a pre-shared key), or empty.
    pub credential: String,
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hello")
            .field("version", &self.version)
            .field("agent_name", &self.agent_name)
            .field("software_version", &self.software_version)
            .field("capabilities", &self.capabilities)
            .field(
                "credential",
                &if self.credential.is_empty() {
                    "(none)"
                } else {
                    "(redacted)"
                },
            )
            .finish()
    }
}

impl Hello {
    pub(crate) fn encoded_len(&self) -> usize {
        2 + 2
            + self.agent_name.len().min(MAX_NAME_LEN)
            + 2
            + self.software_version.len().min(MAX_TEXT_LEN)
            + caps_len(&self.capabilities)
            + 2
            + self.credential.len().min(MAX_CREDENTIAL_LEN)
    }

    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u16(self.version);
        put_str(buf, &self.agent_name, MAX_NAME_LEN);
        put_str(buf, &self.software_version, MAX_TEXT_LEN);
        put_caps(buf, &self.capabilities);
        put_str(buf, &self.credential, MAX_CREDENTIAL_LEN);
    }

    pub(crate) fn decode(p: &mut Bytes) -> Result<Self, WireError> {
        const F: &str = "hello";
        let version = get_u16(p, F)?;
        let agent_name = get_str(p, "agent name", F, MAX_NAME_LEN)?;
        let software_version = get_str(p, "software version", F, MAX_TEXT_LEN)?;
        let capabilities = get_caps(p, F)?;
        let credential = get_str(p, "credential", F, MAX_CREDENTIAL_LEN)?;
        done(p, F)?;
        Ok(Hello {
            version,
            agent_name,
            software_version,
            capabilities,
            credential,
        })
    }
}

/// The accepting side's answer when it takes the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloAck {
    /// Protocol version both sides will speak.
    pub version: u16,
    /// Accepting side's software version.
    pub software_version: String,
    /// Capabilities the accepting side supports.
    pub capabilities: Vec<String>,
}

impl HelloAck {
    pub(crate) fn encoded_len(&self) -> usize {
        2 + 2 + self.software_version.len().min(MAX_TEXT_LEN) + caps_len(&self.capabilities)
    }

    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u16(self.version);
        put_str(buf, &self.software_version, MAX_TEXT_LEN);
        put_caps(buf, &self.capabilities);
    }

    pub(crate) fn decode(p: &mut Bytes) -> Result<Self, WireError> {
        const F: &str = "hello-ack";
        let version = get_u16(p, F)?;
        let software_version = get_str(p, "software version", F, MAX_TEXT_LEN)?;
        let capabilities = get_caps(p, F)?;
        done(p, F)?;
        Ok(HelloAck {
            version,
            software_version,
            capabilities,
        })
    }
}

/// Why a link was refused at hello time. The dialing side uses it to decide
/// whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    /// The peers speak different protocol versions: upgrade one side.
    VersionMismatch,
    /// The agent name breaks the naming rules.
    BadName,
    /// The credentials were not accepted.
    Unauthorized,
    /// The accepting side holds as many links as it allows.
    TooManyLinks,
    /// The accepting side is shutting down; retry later.
    ShuttingDown,
    /// The accepting side has as many handshakes under way as it takes
    /// (a reconnect storm): retry after [`crate::BUSY_RETRY_AFTER_SECS`],
    /// with jitter.
    Busy,
    /// A code this build does not know.
    Other(u16),
}

impl RejectCode {
    fn to_u16(self) -> u16 {
        match self {
            RejectCode::VersionMismatch => 1,
            RejectCode::BadName => 2,
            RejectCode::Unauthorized => 3,
            RejectCode::TooManyLinks => 4,
            RejectCode::ShuttingDown => 5,
            RejectCode::Busy => 6,
            RejectCode::Other(c) => c,
        }
    }

    fn from_u16(v: u16) -> Self {
        match v {
            1 => RejectCode::VersionMismatch,
            2 => RejectCode::BadName,
            3 => RejectCode::Unauthorized,
            4 => RejectCode::TooManyLinks,
            5 => RejectCode::ShuttingDown,
            6 => RejectCode::Busy,
            c => RejectCode::Other(c),
        }
    }

    /// Would redialing with the same configuration ever succeed?
    pub fn is_permanent(self) -> bool {
        matches!(self, RejectCode::VersionMismatch | RejectCode::BadName)
    }
}

/// A refusal at hello time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Machine-readable reason.
    pub code: RejectCode,
    /// What the operator should do, in words.
    pub message: String,
}

impl Reject {
    pub(crate) fn encoded_len(&self) -> usize {
        2 + 2 + self.message.len().min(MAX_TEXT_LEN)
    }

    pub(crate) fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u16(self.code.to_u16());
        put_str(buf, &self.message, MAX_TEXT_LEN);
    }

    pub(crate) fn decode(p: &mut Bytes) -> Result<Self, WireError> {
        const F: &str = "reject";
        let code = RejectCode::from_u16(get_u16(p, F)?);
        let message = get_str(p, "message", F, MAX_TEXT_LEN)?;
        done(p, F)?;
        Ok(Reject { code, message })
    }
}

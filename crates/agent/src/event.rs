//! Event names: the `event` field of the log lines that say something
//! happened, stable for log queries and tests (the message wording may
//! change; these do not).

/// A key-pair agent learnt its registered name from the gateway, in its
/// first access token (field: agent).
pub const AGENT_NAMED: &str = "agent_named";
/// A link to the gateway passed its hello (fields: link, gateway, after_failures).
pub const LINK_UP: &str = "link_up";
/// A link leaves a gateway replica another link is on, for one it has no
/// link on (fields: link, replica, to: that replica's URL or empty).
pub const LINK_MOVING: &str = "link_moving";
/// A link to the gateway closed (fields: link, reason).
pub const LINK_DOWN: &str = "link_down";
/// The first failed dial of an outage; retrying with backoff (fields: link, error).
pub const GATEWAY_UNREACHABLE: &str = "gateway_unreachable";
/// Another failed dial in the same outage (debug; fields: link, error, failures).
pub const GATEWAY_STILL_UNREACHABLE: &str = "gateway_still_unreachable";
/// A stream the gateway opened was refused (fields: dest).
pub const STREAM_REFUSED: &str = "stream_refused";
/// The probe and metrics listener is bound (field: addr).
pub const HEALTH_LISTENING: &str = "health_listening";
/// Shutdown began: new streams refused, open ones draining.
pub const DRAINING: &str = "draining";
/// A listening agent is bound (fields: addr, thumbprint, gateway).
pub const LISTENING: &str = "listening";
/// A listening agent refused a gateway's link (field: reason).
pub const GATEWAY_LINK_REFUSED: &str = "gateway_link_refused";
/// An egress stream was refused (fields: host, port, reason).
pub const EGRESS_REFUSED: &str = "egress_refused";
/// Links are dialled through HTTPS_PROXY / HTTP_PROXY (field: proxy).
pub const LINKS_VIA_PROXY: &str = "links_via_proxy";
/// The agent has stopped (after its drain).
pub const STOPPED: &str = "stopped";
/// The gateway refused a mapping or the landing domain (fields: hostname, reason).
pub const MAPPING_REFUSED: &str = "mapping_refused";
/// The mappings were sent to the gateway (fields: published, mappings).
pub const MAPPINGS_SENT: &str = "mappings_sent";
/// Someone asked the links to reconnect now.
pub const RECONNECT_ASKED: &str = "reconnect_asked";
/// The web UI is listening (fields: url).
pub const UI_LISTENING: &str = "ui_listening";
/// A web UI login succeeded (fields: source).
pub const UI_LOGIN: &str = "ui_login";
/// A web UI login failed (fields: source, locked_seconds).
pub const UI_LOGIN_FAILED: &str = "ui_login_failed";
/// A mapping was saved in the web UI (fields: hostname, target, enabled).
pub const MAPPING_SAVED: &str = "mapping_saved";
/// A mapping was removed in the web UI (fields: hostname).
pub const MAPPING_REMOVED: &str = "mapping_removed";

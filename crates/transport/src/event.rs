//! Event names: the `event` field of the log lines that say something
//! happened, stable for log queries and tests (the message wording may
//! change; these do not).

/// The data directory is readable by other users (fields: path, mode).
pub const DATA_DIR_OPEN: &str = "data_dir_open";
/// One effective setting at start (fields: setting, value with secrets
/// masked, source: default, variable NAME or flag).
pub const SETTING: &str = "setting";

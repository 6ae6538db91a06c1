//! The admin API's refusals, mapped to statuses in one place: bad input
//! and unknown paths from [`burrow_api::Invalid`], storage errors from
//! [`StoreError`], and the JSON body every refusal has.

use http::{Response, StatusCode};
use tracing::warn;

use burrow_api::Invalid;
use burrow_api::types::ErrorBody;
use burrow_store::StoreError;

pub(crate) use crate::answer::{Body, json};

/// A refusal: a status and what to tell the caller.
#[derive(Debug)]
pub(crate) struct Refusal(pub(crate) StatusCode, pub(crate) String);

impl Refusal {
    /// A refusal with `status`.
    pub(crate) fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        Refusal(status, msg.into())
    }

    /// A 400.
    pub(crate) fn bad_request(msg: impl Into<String>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, msg)
    }

    /// The answer.
    pub(crate) fn response(self) -> Response<Body> {
        json(self.0, &ErrorBody { error: self.1 })
    }
}

impl From<Invalid> for Refusal {
    fn from(e: Invalid) -> Self {
        Refusal(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            e.message,
        )
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::Exists { .. }
            | StoreError::AgentLimit { .. }
            | StoreError::LastAdminKey(_)
            | StoreError::KeyInUse { .. } => StatusCode::CONFLICT,
            StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::DiskFull(_) => {
                warn!(error = %e, "admin API change refused: the disk is full");
                return Refusal::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "the gateway's disk is full, so the change was not made: free space on the gateway's data disk (or the database server's), then retry",
                );
            }
            _ => {
                warn!(error = %e, "admin API storage error");
                return Refusal::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage error; see the gateway log",
                );
            }
        };
        Refusal(status, e.to_string())
    }
}

/// A create-or-replace answer's status: 201 created, 200 replaced.
pub(crate) fn put_status(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

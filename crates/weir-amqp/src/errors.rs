//! AMQP reply codes, and the one place the core's reasons become them (docs/amqp.md §
//! Failure cases and reply codes). A [`Reply`] closes either the channel a method came
//! on or the whole connection; which one is the spec's choice for the code.

use weir_broker::{BrokerError, Reason};

/// The message was too large (channel).
pub const CONTENT_TOO_LARGE: u16 = 311;
/// A mandatory message could not be routed (basic.return).
pub const NO_ROUTE: u16 = 312;
/// Not allowed: authentication, authorisation or a reserved name (channel, or connection
/// while it opens).
pub const ACCESS_REFUSED: u16 = 403;
/// No such queue (channel).
pub const NOT_FOUND: u16 = 404;
/// An exclusive queue of another connection (channel).
pub const RESOURCE_LOCKED: u16 = 405;
/// A request that does not fit the state the broker holds (channel).
pub const PRECONDITION_FAILED: u16 = 406;
/// The broker is shutting down (connection).
pub const CONNECTION_FORCED: u16 = 320;
/// The virtual host is not served (connection).
pub const INVALID_PATH: u16 = 402;
/// A frame that could not be decoded (connection).
pub const FRAME_ERROR: u16 = 501;
/// A method whose arguments could not be decoded (connection).
pub const SYNTAX_ERROR: u16 = 502;
/// A method out of order (connection).
pub const COMMAND_INVALID: u16 = 503;
/// A channel not open, or opened twice (connection).
pub const CHANNEL_ERROR: u16 = 504;
/// A content frame where none was due, or none where one was (connection).
pub const UNEXPECTED_FRAME: u16 = 505;
/// Not allowed with these arguments (connection).
pub const NOT_ALLOWED: u16 = 530;
/// Functionality the broker does not serve (connection).
pub const NOT_IMPLEMENTED: u16 = 540;
/// The broker failed (connection).
pub const INTERNAL_ERROR: u16 = 541;

/// Whether a reply closes the channel or the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Channel,
    Connection,
}

/// A close to send: the code, a text a user can act on, and the method that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub scope: Scope,
    pub code: u16,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl Reply {
    pub fn channel(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            scope: Scope::Channel,
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }

    pub fn connection(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            scope: Scope::Connection,
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
        }
    }

    /// Names the method the reply answers, unless one is named already.
    pub fn on(mut self, class_id: u16, method_id: u16) -> Reply {
        if self.class_id == 0 && self.method_id == 0 {
            self.class_id = class_id;
            self.method_id = method_id;
        }
        self
    }

    /// The reply text as a short string: the spec's name for the code first (as
    /// RabbitMQ writes it), cut to 255 bytes at a character boundary.
    pub fn short_text(&self) -> String {
        let mut text = format!("{} - {}", name(self.code), self.text);
        if text.len() > 255 {
            let mut end = 255;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        text
    }
}

/// The spec's name of a reply code.
fn name(code: u16) -> &'static str {
    match code {
        CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
        NO_ROUTE => "NO_ROUTE",
        CONNECTION_FORCED => "CONNECTION_FORCED",
        INVALID_PATH => "INVALID_PATH",
        ACCESS_REFUSED => "ACCESS_REFUSED",
        NOT_FOUND => "NOT_FOUND",
        RESOURCE_LOCKED => "RESOURCE_LOCKED",
        PRECONDITION_FAILED => "PRECONDITION_FAILED",
        FRAME_ERROR => "FRAME_ERROR",
        SYNTAX_ERROR => "SYNTAX_ERROR",
        COMMAND_INVALID => "COMMAND_INVALID",
        CHANNEL_ERROR => "CHANNEL_ERROR",
        UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        NOT_ALLOWED => "NOT_ALLOWED",
        NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        INTERNAL_ERROR => "INTERNAL_ERROR",
        _ => "ERROR",
    }
}

/// The channel close for an error of the core: refusals by ACLs are ACCESS_REFUSED, a
/// missing topic or group NOT_FOUND, a message over the limits CONTENT_TOO_LARGE, and
/// the rest PRECONDITION_FAILED with the core's reason and message (the channel ends,
/// the connection stays: a client opens a new channel and retries).
pub fn from_broker(err: &BrokerError) -> Reply {
    let code = match &err.reason {
        Reason::NotAuthorized { .. } | Reason::AuthenticationFailed => ACCESS_REFUSED,
        Reason::UnknownTopic
        | Reason::UnknownGroup
        | Reason::UnknownPartition
        | Reason::NotFound => NOT_FOUND,
        Reason::RecordTooLarge | Reason::RequestTooLarge { .. } => CONTENT_TOO_LARGE,
        _ => PRECONDITION_FAILED,
    };
    Reply::channel(code, format!("{}: {}", err.reason.name(), err.message))
}

/// Whether a share fetch that failed so may be tried again as it is (the coordinator is
/// moving or loading, the partition's leader is changing).
pub fn retriable(err: &BrokerError) -> bool {
    matches!(
        err.reason,
        Reason::NotCoordinator { .. }
            | Reason::CoordinatorLoading
            | Reason::CoordinatorNotAvailable
            | Reason::NotLeader { .. }
            | Reason::NotEnoughReplicas { .. }
            | Reason::Timeout
            | Reason::ControllerUnavailable
    )
}

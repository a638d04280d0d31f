//! What a page answers when it cannot show what was asked: the one place a core
//! [`Reason`] becomes an HTTP status, and the error page that says what to do. A broker
//! that does not lead a partition (or coordinate a group) names the broker that does.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::html;
use weir_broker::{BrokerError, Reason};

use crate::layout;

/// Why a page could not be shown.
#[derive(Debug)]
pub(crate) enum PageError {
    /// The core refused or failed; `hint` says where to go instead, when known.
    Broker {
        error: BrokerError,
        hint: Option<String>,
    },
    /// The request itself is malformed (a partition that is not a number, ...).
    BadInput(String),
    /// No such page or object.
    NotFound(String),
    /// A form post that failed the CSRF check, or a destructive action not confirmed.
    Refused { status: StatusCode, message: String },
}

impl From<BrokerError> for PageError {
    fn from(error: BrokerError) -> PageError {
        PageError::Broker { error, hint: None }
    }
}

/// The HTTP status of a core error.
pub fn status_of(reason: &Reason) -> StatusCode {
    use Reason as R;
    match reason {
        R::UnknownTopic | R::UnknownPartition | R::UnknownGroup | R::NotFound => {
            StatusCode::NOT_FOUND
        }
        R::NotAuthorized { .. } => StatusCode::FORBIDDEN,
        R::AuthenticationFailed | R::UnsupportedMechanism | R::IllegalAuthenticationState => {
            StatusCode::UNAUTHORIZED
        }
        R::TopicAlreadyExists
        | R::GroupNotEmpty
        | R::GroupSubscribedToTopic
        | R::StateConflict
        | R::RebalanceInProgress
        | R::TooMany => StatusCode::CONFLICT,
        // Asked of the wrong broker: RFC 9110's "not able to produce a response for this
        // target"; the page names the right one.
        R::NotLeader { .. } | R::NotCoordinator { .. } => StatusCode::MISDIRECTED_REQUEST,
        R::NotEnoughReplicas { .. }
        | R::OffsetNotAvailable
        | R::PartitionClosed
        | R::LogFailed
        | R::ControllerUnavailable
        | R::Timeout
        | R::ShuttingDown
        | R::CoordinatorLoading
        | R::CoordinatorNotAvailable
        | R::Busy
        | R::UnknownLeaderEpoch
        | R::FencedLeaderEpoch { .. } => StatusCode::SERVICE_UNAVAILABLE,
        R::Internal | R::CorruptData { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        R::CreateFailed { exhausted: true } | R::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        R::CreateFailed { exhausted: false } => StatusCode::INTERNAL_SERVER_ERROR,
        R::RecordTooLarge | R::RequestTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        R::OutOfOrderSequence { .. }
        | R::ProducerFenced { .. }
        | R::CoordinatorFenced { .. }
        | R::InvalidTopicName
        | R::InvalidConfig
        | R::InvalidReplicationFactor
        | R::InvalidReplicaAssignment
        | R::InvalidPartitions
        | R::InvalidRequest
        | R::OffsetOutOfRange { .. }
        | R::CorruptBatch
        | R::InvalidRecord
        | R::UnknownMember
        | R::FencedMember
        | R::StaleMemberEpoch
        | R::InvalidGroupId
        | R::MetadataTooLarge
        | R::IllegalGeneration
        | R::FencedInstanceId
        | R::InconsistentGroupProtocol
        | R::InvalidSessionTimeout => StatusCode::BAD_REQUEST,
        // The console makes no transactional requests; a refusal reaching it is a
        // conflict with the transaction's state.
        R::Transaction(_) => StatusCode::CONFLICT,
    }
}

impl PageError {
    fn parts(&self) -> (StatusCode, String, String, Option<String>) {
        match self {
            PageError::Broker { error, hint } => (
                status_of(&error.reason),
                error.reason.name().to_owned(),
                error.message.clone(),
                hint.clone(),
            ),
            PageError::BadInput(message) => (
                StatusCode::BAD_REQUEST,
                "BAD_INPUT".into(),
                message.clone(),
                None,
            ),
            PageError::NotFound(message) => (
                StatusCode::NOT_FOUND,
                "NOT_FOUND".into(),
                message.clone(),
                None,
            ),
            PageError::Refused { status, message } => {
                (*status, "REFUSED".into(), message.clone(), None)
            }
        }
    }
}

impl PageError {
    /// The status and the error page.
    fn page(&self) -> (StatusCode, Html<String>) {
        let (status, name, message, hint) = self.parts();
        let title = status.canonical_reason().unwrap_or("Error");
        let body = html! {
            h1 { (status.as_u16()) " " (title) }
            div.error role="alert" {
                p { code { (name) } ": " (message) }
                @if let Some(hint) = &hint {
                    p.hint { (hint) }
                }
            }
            p { a href="/console/" { "Back to the cluster" } }
        };
        (status, layout::page(title, None, body))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, page) = self.page();
        if status.is_server_error() {
            let (_, name, message, _) = self.parts();
            tracing::warn!(
                status = status.as_u16(),
                reason = name,
                message,
                "console page failed"
            );
        }
        (status, page).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_to_the_status_a_browser_user_expects() {
        assert_eq!(status_of(&Reason::UnknownTopic), StatusCode::NOT_FOUND);
        assert_eq!(status_of(&Reason::UnknownGroup), StatusCode::NOT_FOUND);
        assert_eq!(status_of(&Reason::InvalidConfig), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(&Reason::TopicAlreadyExists), StatusCode::CONFLICT);
        assert_eq!(status_of(&Reason::GroupNotEmpty), StatusCode::CONFLICT);
        assert_eq!(
            status_of(&Reason::NotLeader { leader: 2 }),
            StatusCode::MISDIRECTED_REQUEST
        );
        assert_eq!(
            status_of(&Reason::ShuttingDown),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            status_of(&Reason::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn an_error_page_shows_the_message_as_text() {
        let (status, page) = PageError::BadInput("<img src=x onerror=alert(1)>".into()).page();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            page.0.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{}",
            page.0
        );
        assert!(!page.0.contains("<img"));
    }
}

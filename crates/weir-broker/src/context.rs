//! Who is asking: the [`RequestContext`] every operation of the core takes, so checks
//! that depend on the caller (authorisation, quotas) are made once, here, for every
//! protocol.

use std::net::SocketAddr;

/// The listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The gRPC client listener (`--listen`).
    Grpc,
    /// The gRPC external listener (`--external-listen`).
    GrpcExternal,
    /// The Kafka protocol listener (`--kafka-listen`).
    Kafka,
    /// The external Kafka protocol listener (`--kafka-external-listen`).
    KafkaExternal,
    /// The experimental binary TCP data path (`--experimental-wire-listen`).
    Wire,
    /// The admin HTTP listener.
    Http,
    /// The broker itself (upkeep, the group coordinator's own writes).
    Internal,
}

/// The authenticated identity behind a request: a user who proved who they are (SASL,
/// a password, or a client certificate), or nobody.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    User(String),
}

impl Principal {
    /// The name the anonymous principal has in ACLs (`User:ANONYMOUS`, as in Kafka).
    pub const ANONYMOUS_NAME: &'static str = "ANONYMOUS";
}

impl std::fmt::Display for Principal {
    /// As ACLs name it: `User:alice`, or `User:ANONYMOUS`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Principal::Anonymous => write!(f, "User:{}", Principal::ANONYMOUS_NAME),
            Principal::User(name) => write!(f, "User:{name}"),
        }
    }
}

/// What the core knows of a request's origin.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub listener: Listener,
    /// The client's address, where the transport knows it.
    pub peer: Option<SocketAddr>,
    /// The client's own name for itself (Kafka's `client.id`), if it sent one.
    pub client_id: Option<String>,
    pub principal: Principal,
}

impl RequestContext {
    /// An anonymous request from `peer` on `listener`.
    pub fn anonymous(listener: Listener, peer: Option<SocketAddr>) -> RequestContext {
        RequestContext {
            listener,
            peer,
            client_id: None,
            principal: Principal::Anonymous,
        }
    }

    /// With the client's id.
    pub fn with_client_id(mut self, client_id: Option<String>) -> RequestContext {
        self.client_id = client_id;
        self
    }
}

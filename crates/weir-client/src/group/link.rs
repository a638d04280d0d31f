//! The connection to a group's coordinator. For a consumer group it is the broker
//! leading the `__consumer_offsets` partition the group hashes to; for a share group
//! (queues, [`crate::share`]) the broker leading the `__share_group_state` partition it
//! hashes to; for a transactional producer ([`crate::TransactionalProducer`]) the broker
//! leading the `__transaction_state` partition its transactional id hashes to. Either is found with `Groups.FindCoordinator` (asked of the first
//! bootstrap broker that answers, with the link's coordinator type) and found again
//! after a call fails in a way that says it moved or cannot be reached (`UNAVAILABLE`,
//! reason `NOT_COORDINATOR` or `COORDINATOR_LOADING`, or a transport error or timeout),
//! so a member follows its coordinator through broker failures without rejoining.

use std::sync::Mutex;
use std::time::Duration;

use crate::connection::BrokerChannel as Channel;
use weir_proto::v1 as pb;
use weir_proto::v1::groups_client::GroupsClient;

use crate::connection::{self, ConnectOptions, MAX_MESSAGE_BYTES};
use crate::error::ClientError;

/// Longest wait between two tries of a heartbeat or commit that failed retriably (the
/// coordinator moved or is being elected): a new coordinator is usually there within a
/// broker session timeout, and a member that waits longer than needed stalls its
/// commits (and so its application) for nothing. Finding it again is one cheap call.
pub const MAX_COORDINATOR_RETRY_BACKOFF: Duration = Duration::from_millis(250);
/// Longest a FindCoordinator call waits for its answer.
pub const FIND_COORDINATOR_TIMEOUT: Duration = Duration::from_secs(5);

/// A group's coordinator, found on first use.
#[derive(Debug)]
pub(crate) struct CoordinatorLink {
    group_id: String,
    /// A consumer group's coordinator or a share group's.
    kind: pb::CoordinatorType,
    brokers: Vec<String>,
    options: ConnectOptions,
    current: Mutex<Option<Channel>>,
}

/// A Groups client on `channel` with the client's message size limits.
fn groups_client(channel: Channel) -> GroupsClient<Channel> {
    GroupsClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

impl CoordinatorLink {
    /// The link to the coordinator of `group_id`, a consumer group
    /// ([`pb::CoordinatorType::Group`]) or a share group ([`pb::CoordinatorType::Share`]).
    pub(crate) fn new(
        group_id: &str,
        kind: pb::CoordinatorType,
        brokers: &[String],
        options: ConnectOptions,
    ) -> CoordinatorLink {
        CoordinatorLink {
            group_id: group_id.to_owned(),
            kind,
            brokers: brokers.to_vec(),
            options,
            current: Mutex::new(None),
        }
    }

    /// A link to the coordinator of another group (or id) of `kind`, through the same
    /// brokers.
    pub(crate) fn sibling(&self, group_id: &str, kind: pb::CoordinatorType) -> CoordinatorLink {
        CoordinatorLink::new(group_id, kind, &self.brokers, self.options.clone())
    }

    /// A Groups client of the coordinator: the one found before, or a new one.
    pub(crate) async fn client(&self) -> Result<GroupsClient<Channel>, ClientError> {
        Ok(groups_client(self.channel().await?))
    }

    /// The connection to the coordinator (for any of its services): the one found
    /// before, or a new one.
    pub(crate) async fn channel(&self) -> Result<Channel, ClientError> {
        if let Some(channel) = self.current.lock().expect("coordinator link").clone() {
            return Ok(channel);
        }
        let found = self.find().await?;
        *self.current.lock().expect("coordinator link") = Some(found.clone());
        Ok(found)
    }

    /// After a failed call: forgets the coordinator if `error` says it moved or could not
    /// be reached, so the next call finds it again.
    pub(crate) fn failed(&self, error: &ClientError) {
        if error.is_retriable() || matches!(error, ClientError::Connect { .. }) {
            *self.current.lock().expect("coordinator link") = None;
        }
    }

    /// "group billing" or "share group billing", for messages.
    fn what(&self) -> String {
        match self.kind {
            pb::CoordinatorType::Group => format!("group {}", self.group_id),
            pb::CoordinatorType::Share => format!("share group {}", self.group_id),
            pb::CoordinatorType::Transaction => format!("transactional id {}", self.group_id),
        }
    }

    async fn find(&self) -> Result<Channel, ClientError> {
        let (bootstrap, channel) = connection::connect_first(&self.brokers, &self.options).await?;
        let mut request = tonic::Request::new(pb::FindCoordinatorRequest {
            group_id: self.group_id.clone(),
            r#type: self.kind.into(),
        });
        request.set_timeout(FIND_COORDINATOR_TIMEOUT);
        let answer = tokio::time::timeout(
            FIND_COORDINATOR_TIMEOUT,
            groups_client(channel).find_coordinator(request),
        )
        .await
        .map_err(|_| {
            ClientError::DeadlineExceeded(format!(
                "broker {bootstrap} did not say within {FIND_COORDINATOR_TIMEOUT:?} which broker \
                 coordinates {}",
                self.what()
            ))
        })??
        .into_inner();
        let address = format!("{}:{}", answer.host, answer.port);
        tracing::debug!(group = %self.group_id, kind = ?self.kind, coordinator = answer.broker_id, %address, "found the group's coordinator");
        connection::connect(std::slice::from_ref(&address), &self.options).await
    }
}

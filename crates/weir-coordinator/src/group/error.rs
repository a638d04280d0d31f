//! Why a group operation failed ([`GroupError`]) and the gRPC code each maps to.

use std::convert::Infallible;

use super::{BrokerId, MAX_GROUP_ID_BYTES, OFFSETS_TOPIC};

/// The gRPC status code a [`GroupError`] maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupErrorCode {
    InvalidArgument,
    NotFound,
    FailedPrecondition,
    ResourceExhausted,
    /// A record in `__consumer_offsets` the broker cannot read (a bug, or data written by
    /// an incompatible broker).
    Internal,
    /// Retry: elsewhere (`NotCoordinator`) or shortly (`CoordinatorLoading`).
    Unavailable,
    /// Map the inner cluster error (weir-cluster's `ClusterError`) as every other
    /// cluster error is mapped.
    Cluster,
}

/// The error of the shell that drives the group machines (weir-cluster's
/// `ClusterError`), which [`GroupError::Cluster`] carries. The machines themselves never
/// fail that way: they answer `GroupError<Infallible>` (the default), which becomes the
/// shell's `GroupError<C>` through `From` (so `?` works across the boundary).
pub trait ClusterCause: std::error::Error + Send + Sync + 'static {}

/// Why a group operation failed. [`GroupError::code`] names the gRPC code of each. `C` is
/// the shell's own failure ([`ClusterCause`]); the machines' errors have none.
#[derive(Debug, thiserror::Error)]
pub enum GroupError<C = Infallible> {
    #[error("group {0:?} does not exist")]
    UnknownGroup(String),
    #[error(
        "member {member_id:?} is not in group {group_id:?} (removed after its session timed \
         out); drop your partitions without committing and join \
         again with member_epoch 0"
    )]
    UnknownMember { group_id: String, member_id: String },
    #[error(
        "member {member_id:?} of group {group_id:?} is fenced: it sent epoch {given} but its \
         epoch is {current}; drop your partitions without committing and join again with \
         member_epoch 0"
    )]
    FencedMember {
        group_id: String,
        member_id: String,
        given: i32,
        current: i32,
    },
    #[error(
        "member {member_id:?} of group {group_id:?} committed with epoch {given} but its epoch \
         is {current}; heartbeat to learn the current epoch and commit with it (or join again \
         with member_epoch 0 if fenced)"
    )]
    StaleEpoch {
        group_id: String,
        member_id: String,
        given: i32,
        current: i32,
    },
    #[error(
        "group {group_id:?} has {members} member(s); {operation} needs a group without members \
         (stop its consumers and wait for their sessions to end)"
    )]
    GroupNotEmpty {
        group_id: String,
        members: usize,
        operation: &'static str,
    },
    #[error("invalid topic regex {regex:?}: {reason}")]
    InvalidRegex { regex: String, reason: String },
    #[error("invalid group id {group_id:?}: {reason}")]
    InvalidGroupId { group_id: String, reason: String },
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("unknown topic {0:?}")]
    UnknownTopic(String),
    #[error("topic {topic:?} has no partition {partition} (it has {count})")]
    UnknownPartition {
        topic: String,
        partition: u32,
        count: u32,
    },
    #[error("group {group_id:?} has {max} members, the most a group may have")]
    TooManyMembers { group_id: String, max: usize },
    #[error("the coordinator holds {max} groups, the most it may; delete unused groups")]
    TooManyGroups { max: usize },
    #[error("{OFFSETS_TOPIC} partition {partition} offset {offset}: unreadable record: {reason}")]
    CorruptRecord {
        partition: u32,
        offset: i64,
        reason: String,
    },
    #[error(
        "this broker does not coordinate the group ({OFFSETS_TOPIC} partition {partition} is \
         led by broker {coordinator}); ask FindCoordinator and retry there"
    )]
    NotCoordinator {
        partition: u32,
        /// The leader of the partition as this broker knows it; -1 if none.
        coordinator: BrokerId,
    },
    #[error(
        "this broker is loading the groups of {OFFSETS_TOPIC} partition {partition} (it just \
         became their coordinator); retry shortly"
    )]
    CoordinatorLoading { partition: u32 },
    #[error(
        "group {group_id:?} is rebalancing: join again (JoinGroup) to get the new generation \
         and assignment"
    )]
    RebalanceInProgress { group_id: String },
    #[error(
        "member {member_id:?} of group {group_id:?} sent generation {given}, but the group's \
         generation is {current}; join again (JoinGroup) to get the current one"
    )]
    IllegalGeneration {
        group_id: String,
        member_id: String,
        given: i32,
        current: i32,
    },
    #[error(
        "member {member_id:?} of group {group_id:?} is fenced: group.instance.id \
         {instance_id:?} now belongs to a newer consumer that joined with it (two consumers \
         must not share a group.instance.id)"
    )]
    FencedInstanceId {
        group_id: String,
        member_id: String,
        instance_id: String,
    },
    #[error("group {group_id:?}: {reason}")]
    InconsistentGroupProtocol { group_id: String, reason: String },
    #[error(
        "group {group_id:?} has members subscribed to topic {topic:?}: its offsets are kept \
         while they are (stop them, or change their subscription, first)"
    )]
    GroupSubscribedToTopic { group_id: String, topic: String },
    #[error("session timeout {given_ms} ms is outside the broker's bounds [{min_ms}, {max_ms}] ms")]
    InvalidSessionTimeout {
        given_ms: i64,
        min_ms: u128,
        max_ms: u128,
    },
    #[error(transparent)]
    Cluster(C),
}

impl<C: ClusterCause> From<C> for GroupError<C> {
    fn from(cause: C) -> Self {
        GroupError::Cluster(cause)
    }
}

impl<C: ClusterCause> From<GroupError> for GroupError<C> {
    /// A machine's refusal as the shell's error: the same variant (a machine never fails
    /// with [`GroupError::Cluster`]).
    fn from(e: GroupError) -> Self {
        match e {
            GroupError::UnknownGroup(x) => GroupError::UnknownGroup(x),
            GroupError::UnknownMember {
                group_id,
                member_id,
            } => GroupError::UnknownMember {
                group_id,
                member_id,
            },
            GroupError::FencedMember {
                group_id,
                member_id,
                given,
                current,
            } => GroupError::FencedMember {
                group_id,
                member_id,
                given,
                current,
            },
            GroupError::StaleEpoch {
                group_id,
                member_id,
                given,
                current,
            } => GroupError::StaleEpoch {
                group_id,
                member_id,
                given,
                current,
            },
            GroupError::GroupNotEmpty {
                group_id,
                members,
                operation,
            } => GroupError::GroupNotEmpty {
                group_id,
                members,
                operation,
            },
            GroupError::InvalidRegex { regex, reason } => {
                GroupError::InvalidRegex { regex, reason }
            }
            GroupError::InvalidGroupId { group_id, reason } => {
                GroupError::InvalidGroupId { group_id, reason }
            }
            GroupError::InvalidRequest(x) => GroupError::InvalidRequest(x),
            GroupError::UnknownTopic(x) => GroupError::UnknownTopic(x),
            GroupError::UnknownPartition {
                topic,
                partition,
                count,
            } => GroupError::UnknownPartition {
                topic,
                partition,
                count,
            },
            GroupError::TooManyMembers { group_id, max } => {
                GroupError::TooManyMembers { group_id, max }
            }
            GroupError::TooManyGroups { max } => GroupError::TooManyGroups { max },
            GroupError::CorruptRecord {
                partition,
                offset,
                reason,
            } => GroupError::CorruptRecord {
                partition,
                offset,
                reason,
            },
            GroupError::NotCoordinator {
                partition,
                coordinator,
            } => GroupError::NotCoordinator {
                partition,
                coordinator,
            },
            GroupError::CoordinatorLoading { partition } => {
                GroupError::CoordinatorLoading { partition }
            }
            GroupError::RebalanceInProgress { group_id } => {
                GroupError::RebalanceInProgress { group_id }
            }
            GroupError::IllegalGeneration {
                group_id,
                member_id,
                given,
                current,
            } => GroupError::IllegalGeneration {
                group_id,
                member_id,
                given,
                current,
            },
            GroupError::FencedInstanceId {
                group_id,
                member_id,
                instance_id,
            } => GroupError::FencedInstanceId {
                group_id,
                member_id,
                instance_id,
            },
            GroupError::InconsistentGroupProtocol { group_id, reason } => {
                GroupError::InconsistentGroupProtocol { group_id, reason }
            }
            GroupError::GroupSubscribedToTopic { group_id, topic } => {
                GroupError::GroupSubscribedToTopic { group_id, topic }
            }
            GroupError::InvalidSessionTimeout {
                given_ms,
                min_ms,
                max_ms,
            } => GroupError::InvalidSessionTimeout {
                given_ms,
                min_ms,
                max_ms,
            },
            GroupError::Cluster(never) => match never {},
        }
    }
}

impl<C> GroupError<C> {
    /// The gRPC code: NOT_FOUND for unknown groups, topics and partitions;
    /// FAILED_PRECONDITION for unknown or fenced members, stale epochs and non-empty
    /// groups; INVALID_ARGUMENT for bad input; RESOURCE_EXHAUSTED for the member and group
    /// limits; INTERNAL for unreadable records; `Cluster` for [`GroupError::Cluster`],
    /// whose inner error is mapped like every other cluster error.
    pub fn code(&self) -> GroupErrorCode {
        match self {
            GroupError::UnknownGroup(_)
            | GroupError::UnknownTopic(_)
            | GroupError::UnknownPartition { .. } => GroupErrorCode::NotFound,
            GroupError::UnknownMember { .. }
            | GroupError::FencedMember { .. }
            | GroupError::StaleEpoch { .. }
            | GroupError::GroupNotEmpty { .. }
            | GroupError::RebalanceInProgress { .. }
            | GroupError::IllegalGeneration { .. }
            | GroupError::FencedInstanceId { .. }
            | GroupError::InconsistentGroupProtocol { .. }
            | GroupError::GroupSubscribedToTopic { .. } => GroupErrorCode::FailedPrecondition,
            GroupError::InvalidSessionTimeout { .. }
            | GroupError::InvalidRegex { .. }
            | GroupError::InvalidGroupId { .. }
            | GroupError::InvalidRequest(_) => GroupErrorCode::InvalidArgument,
            GroupError::TooManyMembers { .. } | GroupError::TooManyGroups { .. } => {
                GroupErrorCode::ResourceExhausted
            }
            GroupError::CorruptRecord { .. } => GroupErrorCode::Internal,
            GroupError::NotCoordinator { .. } | GroupError::CoordinatorLoading { .. } => {
                GroupErrorCode::Unavailable
            }
            GroupError::Cluster(_) => GroupErrorCode::Cluster,
        }
    }
}

/// Checks a group id: any non-empty string (as Kafka: `roundrobin,range`, `a/b`, spaces
/// and any Unicode are group ids; only topic names have an alphabet) of at most
/// [`MAX_GROUP_ID_BYTES`] bytes.
pub fn validate_group_id(group_id: &str) -> Result<(), GroupError> {
    let bad = |reason: String| {
        let mut shown = group_id.to_owned();
        if shown.len() > MAX_GROUP_ID_BYTES {
            let cut = (0..=MAX_GROUP_ID_BYTES)
                .rev()
                .find(|&i| shown.is_char_boundary(i))
                .unwrap_or(0);
            shown.truncate(cut);
        }
        Err(GroupError::InvalidGroupId {
            group_id: shown,
            reason,
        })
    };
    if group_id.is_empty() {
        return bad("it is empty".to_string());
    }
    if group_id.len() > MAX_GROUP_ID_BYTES {
        return bad(format!(
            "it is {} bytes long; the limit is {MAX_GROUP_ID_BYTES}",
            group_id.len()
        ));
    }
    Ok(())
}

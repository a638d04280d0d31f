//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), as
//! kafka-python, aiokafka and librdkafka speak it by default.

use bytes::Bytes;
use kafka_protocol::error::ResponseError as E;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_broker::RequestContext;
use weir_broker::groups::{self, JoinGroup, JoinOutcome, SyncGroup};

use super::str;
use crate::frame::Request;
use crate::handler::{HandlerError, Response};
use crate::handlers::{KafkaBroker, answer, error_code};

/// JoinGroup v1+ carries a rebalance timeout (v0 rebalances within the session timeout).
const FIRST_REBALANCE_TIMEOUT_JOIN: i16 = 1;
/// JoinGroup v4+: a new member is given its id with MEMBER_ID_REQUIRED first (KIP-394).
const FIRST_MEMBER_ID_REQUIRED_JOIN: i16 = 4;
/// JoinGroup v7+ answers a nullable protocol name (and the protocol type).
const FIRST_NULLABLE_PROTOCOL_JOIN: i16 = 7;
/// First JoinGroup version whose member list carries each member's `group.instance.id`.
const FIRST_STATIC_MEMBER_JOIN: i16 = 5;
/// First JoinGroup version that can tell a leader to skip the assignment (KIP-814).
const FIRST_SKIP_ASSIGNMENT_JOIN: i16 = 9;
/// LeaveGroup v3+ names a batch of members (KIP-345).
const FIRST_BATCHED_LEAVE: i16 = 3;

pub(in crate::handlers) async fn join_group(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: JoinGroupRequest = request.decode_body()?;
    let version = request.api_version;
    let session_timeout_ms = req.session_timeout_ms;
    let rebalance_timeout_ms = if version >= FIRST_REBALANCE_TIMEOUT_JOIN {
        req.rebalance_timeout_ms
    } else {
        session_timeout_ms
    };
    let ms = |v: i32| std::time::Duration::from_millis(u64::try_from(v).unwrap_or(0));
    let join = JoinGroup {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        client_id: String::new(),
        client_host: String::new(),
        group_instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        session_timeout: ms(session_timeout_ms),
        rebalance_timeout: ms(rebalance_timeout_ms),
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        require_known_member_id: version >= FIRST_MEMBER_ID_REQUIRED_JOIN,
    };
    let nullable = version >= FIRST_NULLABLE_PROTOCOL_JOIN;
    // Before v7 the protocol name is not nullable.
    let protocol_name = |name: Option<String>| match name {
        Some(n) => Some(str(n)),
        None if nullable => None,
        None => Some(str("")),
    };
    let failed = |code: i16, member_id: String| {
        JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_protocol_name(protocol_name(None))
            .with_leader(str(""))
            .with_member_id(str(member_id))
    };
    let response = match groups::join_group(&broker.core, ctx, join).await {
        Ok(JoinOutcome::MemberIdRequired { member_id }) => {
            failed(E::MemberIdRequired.code(), member_id)
        }
        Ok(JoinOutcome::Joined(a)) => JoinGroupResponse::default()
            .with_generation_id(a.generation)
            .with_protocol_type(a.protocol_type.map(str))
            .with_protocol_name(protocol_name(a.protocol_name))
            .with_leader(str(a.leader))
            .with_skip_assignment(a.skip_assignment && version >= FIRST_SKIP_ASSIGNMENT_JOIN)
            .with_member_id(str(a.member_id))
            .with_members(
                a.members
                    .into_iter()
                    .map(|(id, instance, metadata)| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str(id))
                            .with_group_instance_id(
                                instance
                                    .filter(|_| version >= FIRST_STATIC_MEMBER_JOIN)
                                    .map(str),
                            )
                            .with_metadata(metadata)
                    })
                    .collect(),
            ),
        Err(e) => failed(error_code(&e), req.member_id.to_string()),
    };
    answer(ctx, request, response)
}

pub(in crate::handlers) async fn sync_group(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: SyncGroupRequest = request.decode_body()?;
    let sync = SyncGroup {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        generation: req.generation_id,
        group_instance_id: req.group_instance_id.map(|i| i.to_string()),
        protocol_type: req.protocol_type.map(|p| p.to_string()),
        protocol_name: req.protocol_name.map(|p| p.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    let response = match groups::sync_group(&broker.core, ctx, sync).await {
        Ok(a) => SyncGroupResponse::default()
            .with_protocol_type(a.protocol_type.map(str))
            .with_protocol_name(a.protocol_name.map(str))
            .with_assignment(a.assignment),
        Err(e) => SyncGroupResponse::default()
            .with_error_code(error_code(&e))
            .with_assignment(Bytes::new()),
    };
    answer(ctx, request, response)
}

pub(in crate::handlers) async fn heartbeat(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: HeartbeatRequest = request.decode_body()?;
    let code = match groups::classic_heartbeat(
        &broker.core,
        ctx,
        &req.group_id,
        &req.member_id,
        req.group_instance_id.as_deref(),
        req.generation_id,
    ) {
        Ok(()) => 0,
        Err(e) => error_code(&e),
    };
    answer(
        ctx,
        request,
        HeartbeatResponse::default().with_error_code(code),
    )
}

pub(in crate::handlers) async fn leave_group(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: LeaveGroupRequest = request.decode_body()?;
    let batched = request.api_version >= FIRST_BATCHED_LEAVE;
    let members: Vec<(String, Option<StrBytes>)> = if batched {
        req.members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.clone()))
            .collect()
    } else {
        vec![(req.member_id.to_string(), None)]
    };
    let ids: Vec<(String, Option<String>)> = members
        .iter()
        .map(|(id, instance)| (id.clone(), instance.as_ref().map(|i| i.to_string())))
        .collect();
    let response = match groups::leave_group(&broker.core, ctx, &req.group_id, &ids).await {
        Err(e) => LeaveGroupResponse::default().with_error_code(error_code(&e)),
        Ok(results) if !batched => LeaveGroupResponse::default().with_error_code(
            results
                .first()
                .and_then(|r| r.as_ref().err())
                .map_or(0, error_code),
        ),
        Ok(results) => LeaveGroupResponse::default().with_members(
            members
                .into_iter()
                .zip(results)
                .map(|((id, instance), r)| {
                    MemberResponse::default()
                        .with_member_id(str(id))
                        .with_group_instance_id(instance)
                        .with_error_code(r.err().as_ref().map_or(0, error_code))
                })
                .collect(),
        ),
    };
    answer(ctx, request, response)
}

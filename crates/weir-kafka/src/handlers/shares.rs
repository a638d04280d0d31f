//! Share groups (KIP-932 queues) for Kafka's share consumers: ShareGroupHeartbeat
//! (membership, at the group's coordinator), ShareFetch (share sessions, piggybacked
//! acknowledgements, acquisition) and ShareAcknowledge.
//!
//! A share consumer fetches each partition from its leader. The records it is given are
//! re-encoded from the acquired ones (one RecordBatch v2 per run of consecutive offsets,
//! at their own offsets), so a batch holds only records this member acquired; the
//! acquired ranges name the same offsets with their delivery counts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_acknowledge_request::AcknowledgementBatch as AckBatchAck;
use kafka_protocol::messages::share_acknowledge_response::{
    LeaderIdAndEpoch as AckLeader, PartitionData as AckPartitionData, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::share_fetch_request::AcknowledgementBatch as FetchAckBatch;
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, LeaderIdAndEpoch, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest, ShareFetchResponse,
    ShareGroupHeartbeatRequest, ShareGroupHeartbeatResponse,
};
use kafka_protocol::protocol::StrBytes;
use weir_batch::records::RecordBatchBuilder;
use weir_batch::{Compression, patch_offset_and_epoch};
use weir_broker::share_members::{self, ShareHeartbeat};
use weir_broker::shares::{
    self, AckKind, AckRange, AckResult, ShareFetch, ShareRecord, ShareStart,
};
use weir_broker::{RequestContext, metadata};

use super::{KafkaBroker, answer, assignment_by_id, error_code};
use crate::frame::Request;
use crate::handler::{HandlerError, Response};
use crate::share_sessions::{CLOSE_EPOCH, OPEN_EPOCH, SessionPartition};

/// Kafka's acknowledge types (KIP-932; RENEW is KIP-1222's).
const ACK_GAP: i8 = 0;
const ACK_ACCEPT: i8 = 1;
const ACK_RELEASE: i8 = 2;
const ACK_REJECT: i8 = 3;
const ACK_RENEW: i8 = 4;
/// The leader and epoch a partition answer carries when it has nothing to say about
/// leadership.
const NO_LEADER: i32 = -1;

fn str(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(super) async fn share_group_heartbeat(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ShareGroupHeartbeatRequest = request.decode_body()?;
    let hb = ShareHeartbeat {
        group_id: req.group_id.to_string(),
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        topics: req
            .subscribed_topic_names
            .map(|topics| topics.into_iter().map(|t| t.to_string()).collect()),
        rack_id: req.rack_id.map(|r| r.to_string()),
        client_id: String::new(),
        client_host: String::new(),
    };
    let response = match share_members::heartbeat(&broker.core, ctx, hb) {
        Ok(out) => {
            let assignment = out.assignment.map(|topics| {
                Assignment::default().with_topic_partitions(
                    assignment_by_id(broker, topics)
                        .into_iter()
                        .map(|(id, parts)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(parts)
                        })
                        .collect(),
                )
            });
            ShareGroupHeartbeatResponse::default()
                .with_member_id(Some(str(out.member_id)))
                .with_member_epoch(out.member_epoch)
                .with_heartbeat_interval_ms(
                    i32::try_from(out.heartbeat_interval.as_millis()).unwrap_or(i32::MAX),
                )
                .with_assignment(assignment)
        }
        Err(e) => ShareGroupHeartbeatResponse::default()
            .with_error_code(error_code(&e))
            .with_error_message(Some(str(e.message)))
            .with_member_id(Some(req.member_id))
            .with_member_epoch(req.member_epoch),
    };
    answer(ctx, request, response)
}

/// What one partition's answer carries.
#[derive(Default)]
struct PartitionAnswer {
    error: Option<(ResponseError, String)>,
    ack_error: Option<(i16, String)>,
    records: Vec<ShareRecord>,
}

/// The answers of a request, by topic id and partition.
type Answers = BTreeMap<(uuid::Uuid, i32), PartitionAnswer>;

/// A request's acknowledgements, as the core takes them, each with the topic id and
/// partition index its answer goes under.
struct RequestAcks {
    ranges: Vec<AckRange>,
    /// Topic id and partition index of each range, in order.
    origin: Vec<(uuid::Uuid, i32)>,
}

pub(super) async fn share_fetch(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ShareFetchRequest = request.decode_body()?;
    let (Some(group_id), Some(member_id)) = (&req.group_id, &req.member_id) else {
        return answer(
            ctx,
            request,
            ShareFetchResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(str("a share fetch names its group and member"))),
        );
    };
    let (group_id, member_id) = (group_id.to_string(), member_id.to_string());
    let mut answers = Answers::new();
    let mut acks = RequestAcks {
        ranges: Vec::new(),
        origin: Vec::new(),
    };
    let mut added = Vec::new();
    for topic in &req.topics {
        let name = metadata::topic_name(&broker.core, &topic.topic_id.to_string());
        for p in &topic.partitions {
            let batches = p
                .acknowledgement_batches
                .iter()
                .map(|b: &FetchAckBatch| (b.first_offset, b.last_offset, &b.acknowledge_types[..]));
            let (id, index) = (topic.topic_id, p.partition_index);
            if take_acks(&mut answers, &mut acks, name.as_deref(), id, index, batches)
                && let (Some(name), Ok(partition)) = (&name, u32::try_from(index))
            {
                added.push((name.clone(), partition));
            }
        }
    }
    let forgotten: Vec<SessionPartition> = req
        .forgotten_topics_data
        .iter()
        .filter_map(|t| {
            let name = metadata::topic_name(&broker.core, &t.topic_id.to_string())?;
            Some(
                t.partitions
                    .iter()
                    .filter_map(move |p| Some((name.clone(), u32::try_from(*p).ok()?))),
            )
        })
        .flatten()
        .collect();
    let session = broker.share_sessions.update(
        &group_id,
        &member_id,
        req.share_session_epoch,
        added,
        forgotten,
        Instant::now(),
    );
    let partitions = match session {
        Ok(p) => p,
        Err(e) => {
            return answer(
                ctx,
                request,
                ShareFetchResponse::default()
                    .with_error_code(e.code.code())
                    .with_error_message(Some(str(e.message))),
            );
        }
    };
    let mut lock_duration_ms = broker
        .core
        .shares()
        .map(|s| s.config().partition.lock_duration_ms)
        .unwrap_or(0);
    let closing = req.share_session_epoch == CLOSE_EPOCH;
    let fetching = !closing && !partitions.is_empty();
    let outcome = if fetching {
        let topics: BTreeSet<&String> = partitions.iter().map(|(t, _)| t).collect();
        let fetch = ShareFetch {
            group_id: group_id.clone(),
            member_id: member_id.clone(),
            topics: topics.into_iter().cloned().collect(),
            partitions: Some(partitions.clone()),
            max_records: usize::try_from(req.max_records)
                .unwrap_or(0)
                .min(shares::MAX_SHARE_FETCH_RECORDS),
            max_wait: Duration::from_millis(req.max_wait_ms.max(0) as u64),
            start: ShareStart::Latest,
            acks: std::mem::take(&mut acks.ranges),
        };
        shares::fetch_anywhere(&broker.core, ctx, fetch)
            .await
            .map(|a| {
                lock_duration_ms = a.lock_duration_ms;
                (a.ack_results, a.records)
            })
    } else if !acks.ranges.is_empty() || closing {
        // A closed session gives back what the member still holds, as Kafka does.
        shares::acknowledge_anywhere(
            &broker.core,
            ctx,
            &group_id,
            &member_id,
            std::mem::take(&mut acks.ranges),
            closing,
        )
        .await
        .map(|r| (r, Vec::new()))
    } else {
        Ok((Vec::new(), Vec::new()))
    };
    let (ack_results, records) = match outcome {
        Ok(out) => out,
        Err(e) => {
            return answer(
                ctx,
                request,
                ShareFetchResponse::default()
                    .with_error_code(error_code(&e))
                    .with_error_message(Some(str(e.message))),
            );
        }
    };
    apply_ack_results(&mut answers, &acks.origin, ack_results);
    // Records come by topic and partition: one topic id lookup per topic.
    let mut ids: BTreeMap<std::sync::Arc<str>, Option<uuid::Uuid>> = BTreeMap::new();
    for record in records {
        let id = *ids.entry(record.topic.clone()).or_insert_with(|| {
            metadata::topic_id(&broker.core, &record.topic)?
                .parse()
                .ok()
        });
        let Some(id) = id else {
            continue;
        };
        answers
            .entry((id, record.partition as i32))
            .or_default()
            .records
            .push(record);
    }
    let mut topics: BTreeMap<uuid::Uuid, Vec<PartitionData>> = BTreeMap::new();
    for ((id, partition), a) in answers {
        let (error_code, error_message) = match a.error {
            Some((code, message)) => (code.code(), Some(str(message))),
            None => (0, None),
        };
        let (ack_code, ack_message) = match a.ack_error {
            Some((code, message)) => (code, Some(str(message))),
            None => (0, None),
        };
        let (records, acquired) = encode_acquired(&a.records)?;
        topics.entry(id).or_default().push(
            PartitionData::default()
                .with_partition_index(partition)
                .with_error_code(error_code)
                .with_error_message(error_message)
                .with_acknowledge_error_code(ack_code)
                .with_acknowledge_error_message(ack_message)
                .with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(NO_LEADER)
                        .with_leader_epoch(NO_LEADER),
                )
                .with_records(Some(records))
                .with_acquired_records(acquired),
        );
    }
    let response = ShareFetchResponse::default()
        .with_acquisition_lock_timeout_ms(i32::try_from(lock_duration_ms).unwrap_or(i32::MAX))
        .with_responses(
            topics
                .into_iter()
                .map(|(id, partitions)| {
                    ShareFetchableTopicResponse::default()
                        .with_topic_id(id)
                        .with_partitions(partitions)
                })
                .collect(),
        );
    answer(ctx, request, response)
}

pub(super) async fn share_acknowledge(
    broker: &KafkaBroker,
    ctx: &RequestContext,
    request: &Request,
) -> Result<Response, HandlerError> {
    let req: ShareAcknowledgeRequest = request.decode_body()?;
    let fail = |code: ResponseError, message: String| {
        answer(
            ctx,
            request,
            ShareAcknowledgeResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(str(message))),
        )
    };
    let (Some(group_id), Some(member_id)) = (&req.group_id, &req.member_id) else {
        return fail(
            ResponseError::InvalidRequest,
            "a share acknowledgement names its group and member".into(),
        );
    };
    let (group_id, member_id) = (group_id.to_string(), member_id.to_string());
    if req.share_session_epoch == OPEN_EPOCH {
        return fail(
            ResponseError::InvalidShareSessionEpoch,
            "a share acknowledgement continues or closes a share session; epoch 0 opens one".into(),
        );
    }
    let mut answers = Answers::new();
    let mut acks = RequestAcks {
        ranges: Vec::new(),
        origin: Vec::new(),
    };
    for topic in &req.topics {
        let name = metadata::topic_name(&broker.core, &topic.topic_id.to_string());
        for p in &topic.partitions {
            let batches = p
                .acknowledgement_batches
                .iter()
                .map(|b: &AckBatchAck| (b.first_offset, b.last_offset, &b.acknowledge_types[..]));
            let (id, index) = (topic.topic_id, p.partition_index);
            take_acks(&mut answers, &mut acks, name.as_deref(), id, index, batches);
        }
    }
    if let Err(e) = broker.share_sessions.update(
        &group_id,
        &member_id,
        req.share_session_epoch,
        [],
        [],
        Instant::now(),
    ) {
        return fail(e.code, e.message);
    }
    let closing = req.share_session_epoch == CLOSE_EPOCH;
    let results = if acks.ranges.is_empty() && !closing {
        Vec::new()
    } else {
        match shares::acknowledge_anywhere(
            &broker.core,
            ctx,
            &group_id,
            &member_id,
            std::mem::take(&mut acks.ranges),
            closing,
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                return answer(
                    ctx,
                    request,
                    ShareAcknowledgeResponse::default()
                        .with_error_code(error_code(&e))
                        .with_error_message(Some(str(e.message))),
                );
            }
        }
    };
    apply_ack_results(&mut answers, &acks.origin, results);
    let mut topics: BTreeMap<uuid::Uuid, Vec<AckPartitionData>> = BTreeMap::new();
    for ((id, partition), a) in answers {
        let (code, message) = match (a.error, a.ack_error) {
            (Some((code, message)), _) => (code.code(), Some(str(message))),
            (None, Some((code, message))) => (code, Some(str(message))),
            (None, None) => (0, None),
        };
        topics.entry(id).or_default().push(
            AckPartitionData::default()
                .with_partition_index(partition)
                .with_error_code(code)
                .with_error_message(message)
                .with_current_leader(
                    AckLeader::default()
                        .with_leader_id(NO_LEADER)
                        .with_leader_epoch(NO_LEADER),
                ),
        );
    }
    let response = ShareAcknowledgeResponse::default().with_responses(
        topics
            .into_iter()
            .map(|(id, partitions)| {
                ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(id)
                    .with_partitions(partitions)
            })
            .collect(),
    );
    answer(ctx, request, response)
}

/// One requested partition's acknowledgement batches, added to `acks`: what is wrong
/// with them (or an unknown topic, `name` `None`) lands on the partition's answer.
/// Whether the partition's topic exists.
fn take_acks<'a>(
    answers: &mut Answers,
    acks: &mut RequestAcks,
    name: Option<&str>,
    id: uuid::Uuid,
    partition_index: i32,
    batches: impl Iterator<Item = (i64, i64, &'a [i8])>,
) -> bool {
    let Some(name) = name else {
        answers.entry((id, partition_index)).or_default().error = Some((
            ResponseError::UnknownTopicId,
            format!("no topic has id {id}"),
        ));
        return false;
    };
    if let Err(message) = add_acks(acks, name, id, partition_index, batches) {
        answers.entry((id, partition_index)).or_default().ack_error =
            Some((ResponseError::InvalidRequest.code(), message));
    }
    true
}

/// Adds one partition's acknowledgement batches to `acks`: a batch with one type applies
/// it to every offset; one with a type per offset is split into runs of one type. Gaps
/// (offsets without a record) need no acknowledgement and are dropped.
fn add_acks<'a>(
    acks: &mut RequestAcks,
    topic: &str,
    id: uuid::Uuid,
    partition_index: i32,
    batches: impl Iterator<Item = (i64, i64, &'a [i8])>,
) -> Result<(), String> {
    let partition = u32::try_from(partition_index)
        .map_err(|_| format!("partition {partition_index} is not a partition"))?;
    for (first, last, types) in batches {
        if last < first || first < 0 {
            return Err(format!("offsets {first}..={last} are not a range"));
        }
        let span = (last - first + 1) as u64;
        if types.len() != 1 && types.len() as u64 != span {
            return Err(format!(
                "an acknowledgement of offsets {first}..={last} carries {} types; it carries one, or one per offset",
                types.len()
            ));
        }
        let mut runs: Vec<(i64, i64, i8)> = Vec::new();
        if types.len() == 1 {
            runs.push((first, last, types[0]));
        } else {
            for (offset, t) in (first..=last).zip(types) {
                match runs.last_mut() {
                    Some(run) if run.2 == *t => run.1 = offset,
                    _ => runs.push((offset, offset, *t)),
                }
            }
        }
        for (first, last, t) in runs {
            let kind = match t {
                ACK_GAP => continue,
                ACK_ACCEPT => AckKind::Accept,
                ACK_RELEASE => AckKind::Release { delay_ms: 0 },
                ACK_REJECT => AckKind::Reject,
                ACK_RENEW => AckKind::Renew,
                other => return Err(format!("acknowledge type {other} is not one of 0 to 4")),
            };
            acks.ranges.push(AckRange {
                topic: topic.to_string(),
                partition,
                first,
                last,
                kind,
            });
            acks.origin.push((id, partition_index));
        }
    }
    Ok(())
}

/// Lays each acknowledgement's outcome on its partition's answer: the first failure of a
/// partition is its acknowledge error (offsets the member did not hold are
/// INVALID_RECORD_STATE, as Kafka answers them).
fn apply_ack_results(answers: &mut Answers, origin: &[(uuid::Uuid, i32)], results: Vec<AckResult>) {
    for (result, (id, partition)) in results.into_iter().zip(origin) {
        let failure = match result.outcome {
            Ok(not_held) if not_held.is_empty() => None,
            Ok(not_held) => Some((
                ResponseError::InvalidRecordState.code(),
                format!(
                    "{} of offsets {}..={} are not acquired by this member (first: {})",
                    not_held.len(),
                    result.range.first,
                    result.range.last,
                    not_held[0]
                ),
            )),
            Err(e) => Some((error_code(&e), e.message)),
        };
        let a = answers.entry((*id, *partition)).or_default();
        if a.ack_error.is_none() {
            a.ack_error = failure;
        }
    }
}

/// One partition's acquired records as RecordBatch v2 bytes (a batch per run of
/// consecutive offsets, each at its own offsets) and the acquired ranges (a range per
/// run of consecutive offsets with one delivery count).
fn encode_acquired(records: &[ShareRecord]) -> Result<(Bytes, Vec<AcquiredRecords>), HandlerError> {
    let mut bytes = BytesMut::new();
    let mut acquired: Vec<AcquiredRecords> = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let mut j = i + 1;
        while j < records.len() && records[j].record.offset == records[j - 1].record.offset + 1 {
            j += 1;
        }
        let mut builder = RecordBatchBuilder::new(Compression::None);
        for r in &records[i..j] {
            builder
                .try_push_view(weir_batch::records::RecordView {
                    key: r.record.key.as_deref(),
                    value: r.record.value.as_deref(),
                    headers: &r.record.headers,
                    timestamp: r.record.timestamp,
                })
                .map_err(|e| HandlerError::Broker { source: e.into() })?;
        }
        let mut batch = builder
            .build()
            .map_err(|e| HandlerError::Broker { source: e.into() })?;
        patch_offset_and_epoch(&mut batch, records[i].record.offset, NO_LEADER);
        bytes.extend_from_slice(&batch);
        for r in &records[i..j] {
            let count = i16::try_from(r.delivery_count).unwrap_or(i16::MAX);
            match acquired.last_mut() {
                Some(last)
                    if last.last_offset + 1 == r.record.offset && last.delivery_count == count =>
                {
                    last.last_offset = r.record.offset;
                }
                _ => acquired.push(
                    AcquiredRecords::default()
                        .with_first_offset(r.record.offset)
                        .with_last_offset(r.record.offset)
                        .with_delivery_count(count),
                ),
            }
        }
        i = j;
    }
    Ok((bytes.freeze(), acquired))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use weir_batch::{DecodedRecord, decode_records, validate_all};

    use super::*;

    fn acquired(offset: i64, delivery_count: u16) -> ShareRecord {
        ShareRecord {
            topic: Arc::from("jobs"),
            partition: 0,
            record: DecodedRecord {
                offset,
                timestamp: 1_000 + offset,
                key: Some(Bytes::from(format!("k{offset}"))),
                value: Some(Bytes::from(format!("v{offset}"))),
                headers: Vec::new(),
            },
            delivery_count,
            lock_deadline_ms: 0,
        }
    }

    #[test]
    fn acquired_records_come_back_at_their_offsets_in_one_batch_per_run() {
        let records: Vec<ShareRecord> = [(3, 1), (4, 1), (5, 2), (9, 2), (10, 2)]
            .into_iter()
            .map(|(o, c)| acquired(o, c))
            .collect();
        let (bytes, ranges) = encode_acquired(&records).unwrap();
        let headers = validate_all(&bytes).unwrap();
        assert_eq!(headers.len(), 2, "3..=5 and 9..=10");
        let mut read = Vec::new();
        let mut at = 0;
        for h in &headers {
            let batch = bytes.slice(at..at + h.total_bytes());
            at += h.total_bytes();
            read.extend(decode_records(&batch).unwrap());
        }
        let want: Vec<DecodedRecord> = records.iter().map(|r| r.record.clone()).collect();
        assert_eq!(read, want);
        let ranges: Vec<(i64, i64, i16)> = ranges
            .iter()
            .map(|r| (r.first_offset, r.last_offset, r.delivery_count))
            .collect();
        assert_eq!(ranges, vec![(3, 4, 1), (5, 5, 2), (9, 10, 2)]);
    }

    #[test]
    fn acknowledgement_batches_become_ranges_of_one_kind() {
        let mut acks = RequestAcks {
            ranges: Vec::new(),
            origin: Vec::new(),
        };
        let id = uuid::Uuid::nil();
        let per_offset = [ACK_ACCEPT, ACK_ACCEPT, ACK_GAP, ACK_RELEASE, ACK_REJECT];
        add_acks(
            &mut acks,
            "jobs",
            id,
            1,
            [(10, 14, &per_offset[..]), (20, 29, &[ACK_RENEW][..])].into_iter(),
        )
        .unwrap();
        let got: Vec<(i64, i64, AckKind)> = acks
            .ranges
            .iter()
            .map(|r| (r.first, r.last, r.kind))
            .collect();
        assert_eq!(
            got,
            vec![
                (10, 11, AckKind::Accept),
                (13, 13, AckKind::Release { delay_ms: 0 }),
                (14, 14, AckKind::Reject),
                (20, 29, AckKind::Renew),
            ]
        );
        assert_eq!(acks.origin, vec![(id, 1); 4]);
        for bad in [
            (5, 4, &[ACK_ACCEPT][..]),
            (0, 3, &[ACK_ACCEPT, ACK_ACCEPT][..]),
            (0, 0, &[9][..]),
        ] {
            assert!(add_acks(&mut acks, "jobs", id, 1, [bad].into_iter()).is_err());
        }
        assert!(add_acks(&mut acks, "jobs", id, -1, std::iter::empty()).is_err());
    }
}

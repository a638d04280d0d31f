//! A broker's lifecycle with the controller: register (starting fenced), heartbeat
//! every `heartbeat_interval_ms` with how far its metadata has caught up (the controller
//! unfences it once it has caught up), register again if the controller says its epoch
//! is stale, and, on shutdown, ask for its leaderships to move away first.
//!
//! It also keeps the broker's side of the session (`watch_lease`): when no heartbeat sent
//! in the last session timeout was answered, the controller may have fenced this broker
//! and elected other leaders, so its leaders step aside (`BrokerState::lease_lapsed`)
//! until a heartbeat is answered again (docs/replication.md § Stepping aside when cut
//! off).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::watch;

use super::ClusterNode;
use crate::controller::MetadataImage;
use crate::controller::records::{BrokerEpoch, MetadataOffset};
use crate::controller::{ControllerError, ControllerReply, ControllerRequest};
use crate::peer_log::PeerLog;

/// How heartbeat failures are keyed in their [`PeerLog`]: the active controller, whichever
/// voter that is (a call is routed to it, or through the voters in turn).
const ACTIVE_CONTROLLER: crate::partition::BrokerId = -1;

/// Pause before registering again after a failure.
const REGISTER_BACKOFF: Duration = Duration::from_millis(200);

/// This broker as the controller last answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerState {
    /// Its registration epoch; `None` until registered.
    pub broker_epoch: Option<BrokerEpoch>,
    /// Fenced brokers lead nothing and join no ISR.
    pub fenced: bool,
    /// Controlled shutdown was asked for.
    pub shutting_down: bool,
    /// The controller says it leads nothing any more and may stop.
    pub should_shutdown: bool,
    /// The controller refused this broker for good (its data directory belongs to
    /// another cluster): why.
    pub refused: Option<String>,
    /// No heartbeat sent in the last session timeout was answered: this broker's leaders
    /// step aside until one is.
    pub lease_lapsed: bool,
    /// Started, and no heartbeat answered since with the metadata caught up to the
    /// answer: its image may name it the leader of partitions that moved while it was
    /// down, so its replicas lead nothing yet (they do not refuse clients as a lapsed
    /// lease does: a broker that starts is not cut off).
    pub starting: bool,
}

impl BrokerState {
    /// The state of a broker that has just started.
    pub(crate) fn started() -> BrokerState {
        BrokerState {
            starting: true,
            ..BrokerState::default()
        }
    }

    /// Whether this broker's replicas must not lead now.
    pub fn leaders_aside(&self) -> bool {
        self.lease_lapsed || self.starting
    }
}

/// The last renewal of the lease: when the answered heartbeat (or registration) was
/// sent, and, for a heartbeat, the metadata offset below which lies everything the
/// controller had decided when it answered. A registration names none: the leaderships
/// it takes from the node's previous incarnation are written after it, and the
/// heartbeat sent right after it names an offset past them.
#[derive(Debug, Clone, Copy)]
struct Renewal {
    sent: Instant,
    through: Option<MetadataOffset>,
}

pub(super) async fn run(node: ClusterNode, mut stopping: watch::Receiver<bool>) {
    let incarnation = uuid::Uuid::new_v4().to_string();
    let heartbeat = Duration::from_millis(node.settings().controller.heartbeat_interval_ms);
    let lease = Duration::from_millis(node.settings().controller.session_timeout_ms);
    // The watchdog ends when this returns and drops it.
    let (renewed, renewals) = watch::channel(Renewal {
        sent: Instant::now(),
        through: None,
    });
    let heartbeat_failures = PeerLog::new("heartbeats to the controller");
    tokio::spawn(watch_lease(node.clone(), lease, renewals));
    loop {
        let Some((broker_epoch, sent)) = register(&node, &incarnation, &mut stopping).await else {
            return;
        };
        // The controller counts the session from when it received the answered try,
        // which is after it was sent.
        renewed.send_replace(Renewal {
            sent,
            through: None,
        });
        tracing::info!(
            node = node.node(),
            broker_epoch,
            "registered with the controller"
        );
        node.inner.broker.send_modify(|s| {
            s.broker_epoch = Some(broker_epoch);
            s.fenced = true;
        });
        let mut interval = tokio::time::interval(heartbeat);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut states = node.inner.broker.subscribe();
        let mut shutdown_asked = false;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                changed = stopping.changed() => {
                    if changed.is_err() {
                        return; // the owner is gone
                    }
                }
                // A controlled shutdown asks at once, not at the next tick: that was up
                // to a heartbeat interval (500 ms) of the time leaderships take to move.
                _ = states.wait_for(|s| s.shutting_down), if !shutdown_asked => {}
            }
            if *stopping.borrow() {
                return;
            }
            let want_shutdown = node.inner.broker.borrow().shutting_down;
            shutdown_asked |= want_shutdown;
            let request = ControllerRequest::BrokerHeartbeat {
                node: node.node(),
                broker_epoch,
                metadata_offset: node.image().next_offset() - 1,
                want_shutdown,
                metadata_level: crate::controller::records::METADATA_LEVEL,
            };
            // Tried through an election or a lost connection until an answer could
            // no longer renew the lease; the next tick sends a fresh one.
            match node.call_until(request, Instant::now() + lease).await {
                Ok((
                    ControllerReply::Heartbeat {
                        fenced,
                        should_shutdown,
                        through,
                    },
                    sent,
                )) => {
                    // The controller counts the session from when it received the
                    // answered try, which is after `sent`.
                    renewed.send_replace(Renewal {
                        sent,
                        through: Some(through),
                    });
                    heartbeat_failures.answered(ACTIVE_CONTROLLER);
                    node.inner.broker.send_if_modified(|s| {
                        let changed = s.fenced != fenced || s.should_shutdown != should_shutdown;
                        if s.fenced && !fenced {
                            tracing::info!(node = node.node(), broker_epoch, "unfenced");
                        }
                        s.fenced = fenced;
                        s.should_shutdown = should_shutdown;
                        changed
                    });
                }
                Ok((ControllerReply::Refused(ControllerError::StaleBrokerEpoch { .. }), _)) => {
                    tracing::warn!(
                        node = node.node(),
                        broker_epoch,
                        "the controller no longer knows this registration: registering again"
                    );
                    break;
                }
                Ok((other, _)) => tracing::warn!(?other, "unexpected heartbeat answer"),
                Err(e) => heartbeat_failures.failed(ACTIVE_CONTROLLER, &e),
            }
        }
    }
}

/// Steps this broker's leaders aside once `lease` has passed since the last answered
/// heartbeat was sent, and lets them lead again when the next one is answered and this
/// broker's metadata has caught up with the answer; ends when the lifecycle drops
/// `renewed`.
///
/// The controller fences a broker whose last heartbeat it received a session timeout ago,
/// and only then elects other leaders for its partitions; that heartbeat was sent before it
/// was received, so, with clocks that run at the same rate, this broker's leaders have
/// stepped aside before any leader elected in their place takes a write.
///
/// On a voter, an election seen while the lease runs may renew it too: from when this
/// voter voted for the new controller (or campaigned, if it won), which cannot fence it
/// before a session after that (`quorum/elections.rs`). Without it a controller failover
/// slower than a session less a heartbeat interval made healthy brokers step aside.
async fn watch_lease(node: ClusterNode, lease: Duration, mut renewed: watch::Receiver<Renewal>) {
    // Starting, as after a lapse: lead only from metadata that holds what the controller
    // decided while this broker was down (`BrokerState::starting`).
    let Some(through) = renewed_and_current(&mut node.subscribe(), &mut renewed, lease).await
    else {
        return;
    };
    node.inner.broker.send_modify(|s| s.starting = false);
    tracing::info!(
        node = node.node(),
        metadata_offset = through,
        "the controller answered a heartbeat and this broker's metadata caught up with the \
         answer: its replicas may lead"
    );
    let mut quorum = node.quorum().cloned();
    let mut seen = quorum.as_ref().and_then(|q| q.elected_leader());
    // The latest moment an election vouched for this broker, if later than `renewed`.
    let mut vouched: Option<Instant> = None;
    loop {
        let heartbeat = renewed.borrow_and_update().sent;
        let since = vouched.map_or(heartbeat, |v| v.max(heartbeat));
        let deadline = since + lease;
        tokio::select! {
            changed = renewed.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            elected = next_election(quorum.as_deref(), seen) => {
                let Some(elected) = elected else {
                    quorum = None; // this voter left the quorum: heartbeats alone renew
                    continue;
                };
                seen = elected;
                let at = quorum.as_ref().and_then(|q| q.elected_at()).map(Instant::from_std);
                if let Some(at) = at
                    && Instant::now() < deadline
                    && at > since
                {
                    tracing::debug!(
                        node = node.node(),
                        leader = ?seen,
                        "lease renewed by the election of the new controller"
                    );
                    vouched = Some(at);
                }
                continue;
            }
            _ = tokio::time::sleep_until(deadline) => {}
        }
        vouched = None;
        // Alone in the cluster, nobody could take over: stepping aside helps no client.
        // Looked at again each lease (brokers may join through metadata alone) or
        // renewal.
        let me = node.node();
        if !node.image().brokers().any(|b| b.node != me) {
            tokio::select! {
                changed = renewed.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(lease) => {}
            }
            continue;
        }
        // What a reader needs to tell a cut-off broker from a lease that a controller
        // failover outran: how old the last answered heartbeat is, and the election this
        // voter sees (none while one is under way).
        tracing::warn!(
            node = me,
            lease_ms = lease.as_millis() as u64,
            since_answered_heartbeat_ms = renewed.borrow().sent.elapsed().as_millis() as u64,
            elected = ?quorum.as_ref().and_then(|q| q.elected_leader()),
            "no heartbeat answered by the controller within the session timeout: this \
             broker's partition leaders step aside until one is"
        );
        set_lapsed(&node, true);
        // A lifecycle that ends (the broker stopping) renews nothing: its leaders stay
        // aside.
        let Some(through) = renewed_and_current(&mut node.subscribe(), &mut renewed, lease).await
        else {
            return;
        };
        set_lapsed(&node, false);
        tracing::info!(
            node = me,
            metadata_offset = through,
            "the controller answered a heartbeat again and this broker's metadata caught \
             up with the answer: its leaders lead again where the metadata still names them"
        );
    }
}

/// The next change of the elected metadata leader, on a voter; never, on an observer.
/// `None` once the quorum has stopped.
async fn next_election(
    quorum: Option<&crate::quorum::Quorum>,
    seen: Option<(u64, crate::partition::BrokerId)>,
) -> Option<Option<(u64, crate::partition::BrokerId)>> {
    match quorum {
        Some(q) => q.next_elected_leader(seen).await,
        None => std::future::pending().await,
    }
}

/// Waits for a renewal that leaves the lease running and for this broker's metadata to
/// reach the offset the controller had reached when it answered (`through`, returned);
/// `None` once the lifecycle is gone.
///
/// A late answer, to a heartbeat sent more than `lease` ago, renews nothing: the
/// controller may have fenced this broker since it received that heartbeat, so leading
/// again, even for the moment before the lease is found lapsed again, could take a write
/// beside the leader elected in its place.
///
/// And a fresh answer is not enough on its own: while this broker was cut off, the
/// controller fenced it and moved its leaderships, and its metadata does not hold those
/// moves yet. Leading from that image, it answered a consumer whose position was past
/// its shorter log with OFFSET_OUT_OF_RANGE, and the consumer started over from offset 0
/// (the 35-minute soak; docs/operations.md).
async fn renewed_and_current(
    images: &mut watch::Receiver<Arc<MetadataImage>>,
    renewed: &mut watch::Receiver<Renewal>,
    lease: Duration,
) -> Option<MetadataOffset> {
    loop {
        renewed.changed().await.ok()?;
        let Renewal { sent, through } = *renewed.borrow_and_update();
        let lasts_until = sent + lease;
        let Some(through) = through.filter(|_| lasts_until > Instant::now()) else {
            continue;
        };
        // Caught up before this renewal's lease ends, or wait for a later one (which
        // names an offset of its own).
        match tokio::time::timeout_at(lasts_until, images.wait_for(|i| i.next_offset() >= through))
            .await
        {
            Ok(Ok(_)) => return Some(through),
            Ok(Err(_)) => return None,
            Err(_) => {}
        }
    }
}

fn set_lapsed(node: &ClusterNode, lapsed: bool) {
    node.inner.broker.send_if_modified(|s| {
        let changed = s.lease_lapsed != lapsed;
        s.lease_lapsed = lapsed;
        changed
    });
}

/// Registers until it works: the epoch, and when the answered try was sent; `None` if
/// stopping first, or if the cluster is another one than this data directory's (logged:
/// the node can do nothing useful).
async fn register(
    node: &ClusterNode,
    incarnation: &str,
    stopping: &mut watch::Receiver<bool>,
) -> Option<(BrokerEpoch, Instant)> {
    loop {
        if *stopping.borrow() {
            return None;
        }
        let Some(request) = node.registration_request(incarnation) else {
            // A new directory: the cluster's id comes with the metadata.
            let mut images = node.subscribe();
            tokio::select! {
                _ = images.changed() => {}
                _ = tokio::time::sleep(REGISTER_BACKOFF) => {}
            }
            continue;
        };
        let deadline = Instant::now() + super::CONTROLLER_CALL_TIMEOUT;
        match node.call_until(request, deadline).await {
            Ok((reply, sent)) => {
                if let Some(epoch) = super::registered(&reply) {
                    return Some((epoch, sent));
                }
                if let ControllerReply::Refused(e @ ControllerError::InconsistentClusterId { .. }) =
                    reply
                {
                    tracing::error!(error = %e, "this data directory belongs to another cluster; the broker will not serve partitions");
                    let reason = format!(
                        "the data directory and the metadata quorum name different clusters: {e}"
                    );
                    node.inner.broker.send_modify(|s| s.refused = Some(reason));
                    return None;
                }
                tracing::warn!(?reply, "registration refused; retrying");
            }
            Err(e) => tracing::warn!(error = %e, "registration failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(REGISTER_BACKOFF) => {}
            changed = stopping.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
        }
    }
}

/// Asks for controlled shutdown and waits until the controller says this broker leads
/// nothing (or `timeout`).
pub(super) async fn controlled_shutdown(node: &ClusterNode, timeout: Duration) {
    let mut state = node.broker_state();
    if state.borrow().broker_epoch.is_none() {
        return; // never registered: nothing to move
    }
    node.inner.broker.send_modify(|s| s.shutting_down = true);
    let deadline = tokio::time::Instant::now() + timeout;
    let waited = tokio::time::timeout_at(deadline, state.wait_for(|s| s.should_shutdown))
        .await
        .is_ok_and(|r| r.is_ok());
    // The controller answers once the moves are committed, but this node's image may
    // not hold them yet (a voter applies its log on its own; an observer fetches it).
    // Until it does, this broker still believes it leads, and what waits under those
    // leaderships (acks=all writes) is not answered; a voter that then left the quorum
    // (`leave_quorum`) never applied them, and those writes waited out their request
    // timeout (found by docker_cluster: 2 s stalls when a follower voter restarted).
    let me = node.node();
    let mut images = node.subscribe();
    let applied = tokio::time::timeout_at(
        deadline,
        images.wait_for(|image| image.broker(me).is_none_or(|b| b.shutting_down || b.fenced)),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    match waited && applied {
        true => tracing::info!(
            node = node.node(),
            "controlled shutdown: leaderships moved away"
        ),
        false => tracing::warn!(
            node = node.node(),
            timeout_ms = timeout.as_millis() as u64,
            "controlled shutdown did not finish in time; stopping anyway"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::records::MetadataRecord;

    /// An image that has applied `count` records.
    fn image(count: i64) -> Arc<MetadataImage> {
        let mut image = MetadataImage::new();
        for offset in 0..count {
            let record = match offset {
                0 => MetadataRecord::ClusterCreated {
                    cluster_id: "c".into(),
                },
                _ => MetadataRecord::BrokerConfigChanged {
                    broker: None,
                    key: "k".into(),
                    value: None,
                },
            };
            image.apply(&record).expect("applies");
        }
        Arc::new(image)
    }

    fn renewal(sent: Instant, through: MetadataOffset) -> Renewal {
        Renewal {
            sent,
            through: Some(through),
        }
    }

    type Channels = (
        watch::Sender<Renewal>,
        watch::Sender<Arc<MetadataImage>>,
        tokio::task::JoinHandle<Option<MetadataOffset>>,
    );

    /// A lapsed lease waiting for `renewed_and_current`, with metadata at `applied`.
    fn waiting(lease: Duration, applied: i64) -> Channels {
        let (renewed, mut renewals) = watch::channel(renewal(Instant::now(), 0));
        let (images, mut image_updates) = watch::channel(image(applied));
        let task = tokio::spawn(async move {
            renewed_and_current(&mut image_updates, &mut renewals, lease).await
        });
        (renewed, images, task)
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    #[tokio::test]
    async fn a_late_answer_renews_no_lapsed_lease_and_a_fresh_one_does() {
        let lease = Duration::from_millis(300);
        let (renewed, _images, task) = waiting(lease, 0);
        // The answer to a heartbeat sent two leases ago.
        renewed.send_replace(renewal(Instant::now() - 2 * lease, 0));
        settle().await;
        assert!(!task.is_finished(), "a late answer renewed the lease");
        renewed.send_replace(renewal(Instant::now(), 0));
        let fresh = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(fresh.expect("a fresh answer renews").unwrap(), Some(0));
    }

    #[tokio::test]
    async fn the_leaders_lead_again_only_once_the_metadata_reaches_the_answer() {
        let (renewed, images, task) = waiting(Duration::from_secs(5), 3);
        renewed.send_replace(renewal(Instant::now(), 5));
        settle().await;
        images.send_replace(image(4));
        settle().await;
        assert!(
            !task.is_finished(),
            "led again from metadata behind what the controller had decided"
        );
        images.send_replace(image(5));
        let current = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(current.expect("caught up").unwrap(), Some(5));
    }

    #[tokio::test]
    async fn metadata_that_catches_up_after_the_renewal_ran_out_waits_for_a_fresh_one() {
        let lease = Duration::from_millis(200);
        let (renewed, images, task) = waiting(lease, 3);
        renewed.send_replace(renewal(Instant::now(), 5));
        tokio::time::sleep(lease + Duration::from_millis(100)).await;
        images.send_replace(image(5));
        settle().await;
        assert!(!task.is_finished(), "led again on a lease that had run out");
        renewed.send_replace(renewal(Instant::now(), 5));
        let current = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(current.expect("renewed and current").unwrap(), Some(5));
    }

    #[tokio::test]
    async fn a_registration_ends_no_lapse_the_heartbeat_after_it_does() {
        let (renewed, _images, task) = waiting(Duration::from_secs(5), 3);
        renewed.send_replace(Renewal {
            sent: Instant::now(),
            through: None,
        });
        settle().await;
        assert!(!task.is_finished(), "led again on a registration's answer");
        renewed.send_replace(renewal(Instant::now(), 3));
        let current = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(current.expect("renewed and current").unwrap(), Some(3));
    }

    #[tokio::test]
    async fn a_lifecycle_that_ends_renews_nothing() {
        let (renewed, _images, task) = waiting(Duration::from_secs(1), 0);
        drop(renewed);
        assert_eq!(task.await.unwrap(), None);
    }
}

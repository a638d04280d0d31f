//! `weir queue consume`'s loop: take records as a member of the share group, print each
//! and acknowledge it as `--ack` says, or run the `--exec` command for each and accept it
//! (exit 0) or release it after an exponential backoff; warn on stderr about
//! acknowledgements that were not applied. Ctrl-C or SIGTERM ends the loop between
//! records, and closing the consumer releases what was taken and not finished.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use weir_client::connection::human_duration;
use weir_client::share::MAX_RELEASE_DELAY;
use weir_client::{
    AckKind, AckMode, AckOutcome, AckStatus, Admin, ConsumerRecord, ShareConsumer,
    ShareConsumerConfig, ShareRecord,
};

use super::{Action, ConsumeConfig};
use crate::consume::Printer;
use crate::signals::StopSignals;

/// How long one poll waits for records; between polls the command checks for Ctrl-C, so
/// this bounds how late it notices.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// Offsets a warning about acknowledgements that were not applied lists before "...".
const MAX_OFFSETS_LISTED: usize = 10;

/// `weir queue consume`: see the module docs of `queue`.
pub(super) async fn consume(config: ConsumeConfig) -> anyhow::Result<()> {
    let admin = Admin::connect_with(
        &config.brokers,
        weir_client::ConnectOptions {
            timeouts: config.timeouts,
            tls: config.tls.clone(),
        },
    )
    .await
    .context("connecting to the broker")?;
    // A topic that does not exist is most likely a typo.
    for topic in &config.topics {
        admin
            .describe_topic(topic)
            .await
            .with_context(|| format!("looking up topic {topic}"))?;
    }
    let mut consumer = ShareConsumer::connect(ShareConsumerConfig {
        brokers: config.brokers.clone(),
        start: config.start,
        max_records: config.max_records,
        ack_mode: AckMode::Explicit,
        timeouts: config.timeouts,
        tls: config.tls.clone(),
        ..ShareConsumerConfig::new(config.group.clone(), config.topics.clone())
    })
    .await
    .with_context(|| format!("finding the coordinator of share group {}", config.group))?;

    // Ctrl-C (or SIGTERM, from a supervisor) ends the loop between records, so the
    // command can finish the record in hand, acknowledge what it did and release the
    // rest; a second one exits at once (the locks then expire).
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let mut stop = StopSignals::listen().context("listening for SIGTERM and Ctrl-C")?;
    let signals = tokio::spawn(async move {
        stop.recv().await;
        flag.store(true, Ordering::SeqCst);
        std::process::exit(stop.recv().await.exit_code());
    });
    let result = consume_loop(&config, &mut consumer, &interrupted).await;
    report(&consumer.take_ack_outcomes());
    // Accepts nothing by itself (explicit mode): sends what was acknowledged and releases
    // what was taken and not finished.
    let closed = consumer
        .close()
        .await
        .map(|outcomes| report(&outcomes))
        .with_context(|| {
            format!(
                "sending the last acknowledgements to share group {} (records not \
                 acknowledged are delivered again when their locks expire)",
                config.group
            )
        });
    signals.abort();
    result.and(closed)
}

async fn consume_loop(
    config: &ConsumeConfig,
    consumer: &mut ShareConsumer,
    interrupted: &AtomicBool,
) -> anyhow::Result<()> {
    let mut printer = match &config.action {
        Action::Print {
            format,
            encoding,
            key_separator,
            ..
        } => Some(Printer::with(*format, *encoding, key_separator.clone())),
        Action::Exec { .. } => None,
    };
    let mut done: u64 = 0;
    while config.count.is_none_or(|c| done < c) && !interrupted.load(Ordering::SeqCst) {
        if let Some(count) = config.count {
            // Never take more than --count still needs: extra records would be taken
            // (a delivery counted) only to be released.
            let left = u32::try_from(count - done).unwrap_or(u32::MAX);
            consumer.set_max_records(config.max_records.min(left))?;
        }
        let records = consumer
            .poll(POLL_TIMEOUT)
            .await
            .with_context(|| format!("taking records from share group {}", config.group))?;
        report(&consumer.take_ack_outcomes());
        let left = config.count.map_or(u64::MAX, |c| c - done);
        done += match (&config.action, printer.as_mut()) {
            (Action::Print { ack, .. }, Some(printer)) => {
                print_batch(consumer, printer, &records, *ack, left)?
            }
            (
                Action::Exec {
                    command,
                    backoff_base_ms,
                },
                _,
            ) => {
                exec_batch(
                    consumer,
                    &config.group,
                    command,
                    *backoff_base_ms,
                    &records,
                    left,
                    interrupted,
                )
                .await?
            }
            (Action::Print { .. }, None) => unreachable!("a printer is made for printing"),
        };
    }
    Ok(())
}

/// Prints up to `left` of `records`, then acknowledges them with `ack`; returns how many.
/// Records not printed (over `left`, or after stdout failed) are left unacknowledged:
/// `close` releases them.
fn print_batch(
    consumer: &mut ShareConsumer,
    printer: &mut Printer,
    records: &[ShareRecord],
    ack: AckKind,
    left: u64,
) -> anyhow::Result<u64> {
    let take = records
        .len()
        .min(usize::try_from(left).unwrap_or(usize::MAX));
    let records = &records[..take];
    for record in records {
        printer.print(&ConsumerRecord::from(record.clone()))?;
    }
    // Acknowledged only once on stdout: a record lost to a closed pipe is released.
    printer.flush()?;
    for record in records {
        consumer.acknowledge(record, ack)?;
    }
    Ok(take as u64)
}

/// Runs the command for each record until `left` were accepted or Ctrl-C; returns how
/// many were accepted. Each acknowledgement is sent before the next record's command
/// runs, so it lands while the record is still locked to this member.
async fn exec_batch(
    consumer: &mut ShareConsumer,
    group: &str,
    command: &str,
    backoff_base_ms: u64,
    records: &[ShareRecord],
    left: u64,
    interrupted: &AtomicBool,
) -> anyhow::Result<u64> {
    let mut accepted: u64 = 0;
    for (i, record) in records.iter().enumerate() {
        if accepted >= left || interrupted.load(Ordering::SeqCst) {
            break; // the rest is released by close
        }
        let status = run_command(command, group, record).await?;
        if status.success() {
            consumer.acknowledge(record, AckKind::Accept)?;
            accepted += 1;
        } else if interrupted.load(Ordering::SeqCst) {
            // Most likely stopped by the Ctrl-C: not its failure. Released by close, at
            // once and without a backoff.
            break;
        } else {
            let delay = retry_delay(backoff_base_ms, record.delivery_count);
            consumer.acknowledge(record, AckKind::ReleaseAfter(delay))?;
            eprintln!(
                "warning: {}/{}@{} (delivery {}): the command {}; released, to be delivered \
                 again in {} (or dead-lettered, at the group's delivery limit)",
                record.topic,
                record.partition,
                record.offset,
                record.delivery_count,
                failure(status),
                human_duration(delay)
            );
        }
        if i + 1 < records.len() {
            let outcomes = consumer.commit().await.with_context(|| {
                format!(
                    "acknowledging {}/{}@{}",
                    record.topic, record.partition, record.offset
                )
            })?;
            report(&outcomes);
        }
    }
    Ok(accepted)
}

/// `sh -c command` for one record: its value on stdin, its details in the environment.
async fn run_command(
    command: &str,
    group: &str,
    record: &ShareRecord,
) -> anyhow::Result<ExitStatus> {
    let mut process = tokio::process::Command::new("sh");
    process
        .arg("-c")
        .arg(command)
        .stdin(Stdio::piped())
        .env("WEIR_GROUP", group)
        .env("WEIR_TOPIC", &*record.topic)
        .env("WEIR_PARTITION", record.partition.to_string())
        .env("WEIR_OFFSET", record.offset.to_string())
        .env("WEIR_DELIVERY_COUNT", record.delivery_count.to_string())
        .env("WEIR_LOCK_DEADLINE_MS", record.lock_deadline_ms.to_string());
    // Not inherited from this process's own environment by mistake.
    process.env_remove("WEIR_KEY");
    if let Some(key) = record
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
        .filter(|k| !k.contains('\0'))
    {
        process.env("WEIR_KEY", key);
    }
    let mut child = process
        .spawn()
        .with_context(|| format!("starting `sh -c {command:?}`"))?;
    let stdin = child.stdin.take();
    let value = record.value.clone().unwrap_or_default();
    // Written beside the wait: a command that does not read its stdin must not block a
    // large value's write (it gets a broken pipe, which is its business).
    let feed = async move {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&value).await;
        }
    };
    let (status, ()) = tokio::join!(child.wait(), feed);
    status.with_context(|| format!("waiting for `sh -c {command:?}`"))
}

/// "exited with status 3", "was killed by signal 9".
fn failure(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exited with status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return format!("was killed by signal {signal}");
        }
    }
    format!("failed ({status})")
}

/// The release delay after the `delivery_count`th delivery failed: `base_ms` *
/// 2^(delivery_count - 1), at most [`MAX_RELEASE_DELAY`].
fn retry_delay(base_ms: u64, delivery_count: u32) -> Duration {
    let doublings = delivery_count.saturating_sub(1).min(63);
    let ms = base_ms.saturating_mul(1u64 << doublings);
    Duration::from_millis(ms).min(MAX_RELEASE_DELAY)
}

/// Warns on stderr about acknowledgements that were not (or may not have been) applied.
fn report(outcomes: &[AckOutcome]) {
    for outcome in outcomes {
        let range = if outcome.first_offset == outcome.last_offset {
            format!(
                "{}/{}@{}",
                outcome.topic, outcome.partition, outcome.first_offset
            )
        } else {
            format!(
                "{}/{}@{}..={}",
                outcome.topic, outcome.partition, outcome.first_offset, outcome.last_offset
            )
        };
        match &outcome.status {
            AckStatus::Applied { not_held, .. } if not_held.is_empty() => {}
            AckStatus::Applied {
                not_held,
                retried: false,
            } => eprintln!(
                "warning: {range}: {} not applied to offset(s) {}: this member no longer held \
                 them (the lock expired, or the coordinator moved); they will be delivered \
                 again",
                outcome.kind,
                offsets(not_held)
            ),
            AckStatus::Applied {
                not_held,
                retried: true,
            } => eprintln!(
                "warning: {range}: {} found offset(s) {} not held when it was sent again: an \
                 earlier try whose answer was lost may have applied it; those it did not \
                 reach will be delivered again",
                outcome.kind,
                offsets(not_held)
            ),
            AckStatus::Refused(error) => {
                eprintln!("warning: {range}: {} refused: {error}", outcome.kind);
            }
            AckStatus::Unknown(error) => eprintln!(
                "warning: {range}: {} may not have been applied ({error}); records it did not \
                 reach will be delivered again",
                outcome.kind
            ),
        }
    }
}

/// `3, 4, 9` or `3, 4, ... (25 offsets)`.
fn offsets(list: &[i64]) -> String {
    let shown: Vec<String> = list
        .iter()
        .take(MAX_OFFSETS_LISTED)
        .map(i64::to_string)
        .collect();
    if list.len() > MAX_OFFSETS_LISTED {
        format!("{}, ... ({} offsets)", shown.join(", "), list.len())
    } else {
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_seven_days() {
        assert_eq!(retry_delay(1_000, 1), Duration::from_secs(1));
        assert_eq!(retry_delay(1_000, 2), Duration::from_secs(2));
        assert_eq!(retry_delay(1_000, 5), Duration::from_secs(16));
        assert_eq!(retry_delay(1_000, 0), Duration::from_secs(1));
        assert_eq!(retry_delay(0, 9), Duration::ZERO);
        assert_eq!(retry_delay(1_000, 40), MAX_RELEASE_DELAY);
        assert_eq!(retry_delay(u64::MAX, u32::MAX), MAX_RELEASE_DELAY);
    }

    #[test]
    fn long_offset_lists_are_cut() {
        assert_eq!(offsets(&[3, 4, 9]), "3, 4, 9");
        let many: Vec<i64> = (0..25).collect();
        assert_eq!(
            offsets(&many),
            "0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... (25 offsets)"
        );
    }
}

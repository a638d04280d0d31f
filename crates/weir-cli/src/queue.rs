//! `weir queue`: work queues on share groups (docs/queues.md). `consume` is a member of a
//! share group ([`ShareConsumer`], explicit acknowledgement): it prints each record as
//! `weir consume` does and acknowledges it as `--ack` says, or, with `--exec`, runs a
//! command per record and accepts the record when the command succeeds or releases it
//! for a retry with exponential backoff when it fails (a minimal worker). `describe`
//! shows the group's settings and each share-partition's window; `configure` sets the
//! group's lock duration, delivery limit and dead-letter topic.
//!
//! Records the command took and did not finish (Ctrl-C, `--count` reached mid-batch, an
//! error) are released when it closes, so other members get them at once.

use std::io::Write;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use weir_client::connection::{Timeouts, human_duration};
use weir_client::share::{MAX_RECORDS_PER_POLL, MAX_RELEASE_DELAY};
use weir_client::{
    AckKind, AckMode, AckOutcome, AckStatus, Admin, ClientError, ConsumerRecord, ShareConsumer,
    ShareConsumerConfig, ShareGroupInfo, ShareGroupSettings, ShareRecord, ShareStart,
};

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::consume::{Encoding, Printer};
use crate::group::table;
use crate::output::{Format, parse_duration};

/// How long one poll waits for records; between polls the command checks for Ctrl-C, so
/// this bounds how late it notices.
const POLL_TIMEOUT: Duration = Duration::from_secs(1);
/// Records one poll takes without `--exec`, unless `--max-records` says otherwise.
const DEFAULT_PRINT_MAX_RECORDS: u32 = 500;
/// Records one poll takes with `--exec`, unless `--max-records` says otherwise: one, so a
/// slow job holds no other record locked behind it (RabbitMQ's prefetch of 1 for work
/// queues) and the other workers take them.
const DEFAULT_EXEC_MAX_RECORDS: u32 = 1;
/// `--retry-backoff-ms`' default.
const DEFAULT_RETRY_BACKOFF_MS: u64 = 1_000;
/// Offsets a warning about acknowledgements that were not applied lists before "...".
const MAX_OFFSETS_LISTED: usize = 10;

const EXAMPLES: &str = "\
Examples:
  weir queue consume jobs --group workers --start earliest
      Print each record of topic jobs and accept it, as one member of share group
      workers: any number of members share the topic's records, each record goes to one
      of them at a time, and more members than partitions is fine.
  weir queue consume jobs --group workers --ack release --count 10 --format json
      Peek: print 10 records and put them back (each peek counts as a delivery).
  weir queue describe workers
      Each share-partition's window: records available, delayed, held by members, and
      the age of the oldest unfinished one (the figure to alert on).
  weir queue configure workers --lock-duration 2m --delivery-limit 3 --dead-letter-topic jobs-dlq

Work queue (RabbitMQ: several workers on one queue, each message to one of them):
  weir topic create jobs --partitions 3
  weir queue consume jobs --group workers --exec ./process-job.sh    # in each of N terminals
  printf 'resize 1.png\\nresize 2.png\\n' | weir produce jobs
      Each worker runs the command once per record, the value on stdin. Exit 0 accepts
      the record; anything else releases it to be tried again, by any worker.

Retries with backoff (Celery's autoretry_for with retry_backoff):
  weir queue consume jobs --group workers --retry-backoff-ms 2000 \\
      --exec 'curl -fsS --data-binary @- https://hooks.example.com/job'
      A failed record is delivered again after 2 s, then 4 s, 8 s... (BASE * 2^(delivery
      - 1) ms, at most 7 days), to any worker.

Visibility timeout and dead letters (SQS):
  weir topic create jobs-dlq --partitions 1
  weir queue configure workers --lock-duration 60s --delivery-limit 4 --dead-letter-topic jobs-dlq
  weir queue consume jobs --group workers --exec ./process-job.sh
  weir consume jobs-dlq --format json          # the dead letters, with weir-dlq-* headers
      A record is locked to the worker that took it for the lock duration (SQS's
      visibility timeout; 30 s by default): if the worker dies, or its command outlives
      the lock, the record goes to another worker. After the delivery limit (SQS's
      maxReceiveCount; 5 by default) a failing record is not delivered again: it is
      copied to the dead-letter topic, with its source topic, partition, offset, delivery
      count and reason in weir-dlq-* headers (without a dead-letter topic it is dropped).";

const CONSUME_HELP: &str = "\
Without --exec each record is printed (as `weir consume` prints it) and then acknowledged
as --ack says. With --exec each record is handed to `sh -c CMD`: its value on stdin, and
in the environment WEIR_TOPIC, WEIR_PARTITION, WEIR_OFFSET, WEIR_DELIVERY_COUNT (1 the
first time), WEIR_LOCK_DEADLINE_MS (ms since the epoch), WEIR_GROUP, and WEIR_KEY (when
the key is UTF-8). Exit 0 accepts the record; any other exit (or a signal) releases it,
to be delivered again after BASE * 2^(WEIR_DELIVERY_COUNT - 1) ms (--retry-backoff-ms,
at most 7 days), until the delivery limit archives it (copied to the group's dead-letter
topic, if it has one: `weir queue configure`). The command's stdout and stderr are the
worker's.

--start only matters for the group's first read of a partition; after that the group
continues where it is. --count N stops after N records were accepted or rejected (with
--ack release: printed and released). Without it the command runs until Ctrl-C or
SIGTERM: it then lets the command in hand finish, acknowledges what it finished, releases
what it did not (to other workers, at once), and exits.

Examples:
  weir queue consume jobs --group workers --start earliest --count 100 > jobs.txt
  weir queue consume jobs retries --group workers --exec 'python3 work.py' --max-records 5
  weir queue consume jobs --group workers --ack reject --count 1      # drop one poison record

Exit status: 0 on success (also on Ctrl-C or SIGTERM, and when stdout is closed early),
1 if the group's coordinator could not be reached within --timeout, the last
acknowledgements could not be sent, or the command could not be started, 2 for bad
arguments.";

const DESCRIBE_HELP: &str = "\
START..END is the window the group works on: every offset below START is finished
(accepted or archived), and records from END up to the high watermark have not been taken
into it yet. AVAILABLE records can be delivered now, DELAYED ones later (released with a
delay, or produced with a weir-deliver-at header), ACQUIRED ones are locked to a member,
ARCHIVED-PENDING ones wait for their dead-letter copy (a missing or unavailable
dead-letter topic holds them, and START, until the copy succeeds). OLDEST-UNFINISHED is the first
record of the window not finished yet, and AGE how old it is (since its timestamp).

NOT_FOUND: no member has fetched from the group yet, and it was never configured.

Examples:
  weir queue describe workers
  weir queue describe workers --format json | jq '.partitions[] | {topic, partition, available}'";

const CONFIGURE_HELP: &str = "\
Every setting is replaced: one not given goes back to the broker's default (the broker's
share_record_lock_duration_ms and share_delivery_count_limit, 30 s and 5 unless set; no
dead-letter topic). Give all the settings the group should have. A group that has no
state yet is made, so a queue can be configured before its first worker starts. The
group is printed as `weir queue describe` prints it, once the settings are durable.

Examples:
  weir queue configure workers --dead-letter-topic jobs-dlq
  weir queue configure workers --lock-duration 5m --delivery-limit 10 --dead-letter-topic jobs-dlq
  weir queue configure workers        # back to the broker's defaults, no dead letters";

/// Work queues: consume topics as a member of a share group, acknowledging each record.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct QueueArgs {
    #[command(subcommand)]
    command: QueueCommand,
    #[command(flatten)]
    brokers: BrokerArgs,
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// Take records from topics as a member of a share group: print or run a command for
    /// each, and acknowledge each on its own.
    #[command(after_help = CONSUME_HELP)]
    Consume(ConsumeArgs),
    /// Show a share group's settings and each share-partition's window.
    #[command(after_help = DESCRIBE_HELP)]
    Describe {
        /// Share group id.
        group: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Set a share group's lock duration, delivery limit and dead-letter topic.
    #[command(after_help = CONFIGURE_HELP)]
    Configure {
        /// Share group id.
        group: String,
        /// How long a member holds a record it took before it goes to another member
        /// (e.g. 30s, 500ms, 5m; 1 ms to 7 days) [default: the broker's].
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        lock_duration: Option<Duration>,
        /// Deliveries after which a record is archived instead of delivered again (1 to
        /// 10000) [default: the broker's].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        delivery_limit: Option<u32>,
        /// An existing topic archived records are copied to [default: none, they are
        /// dropped].
        #[arg(long, value_name = "TOPIC")]
        dead_letter_topic: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

/// `weir queue consume`'s flags.
#[derive(Debug, Args)]
struct ConsumeArgs {
    /// Topics to take records from (all their partitions).
    #[arg(required = true, value_name = "TOPIC")]
    topics: Vec<String>,
    /// The share group: members of one group share the records; each group gets every
    /// record.
    #[arg(long, short = 'g', value_name = "GROUP")]
    group: String,
    /// Where the group starts on a partition it has not read yet: latest (only records
    /// produced from now on) or earliest (the log start).
    #[arg(long, value_enum, default_value_t = StartArg::Latest)]
    start: StartArg,
    /// Stop after this many records were accepted or rejected (with --ack release:
    /// printed and released).
    #[arg(long, short = 'c', value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Most records taken at once; each stays locked until it is acknowledged [default:
    /// 500, or 1 with --exec].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RECORDS_PER_POLL)))]
    max_records: Option<u32>,
    /// Run `sh -c CMD` for each record (its value on stdin, details in WEIR_* variables):
    /// exit 0 accepts the record, anything else releases it for a retry with backoff.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,
    /// How printed records are acknowledged: accept (done), release (back to the group
    /// at once, to any member), reject (archived, never delivered again).
    #[arg(long, value_enum, default_value_t = AckArg::Accept, conflicts_with = "exec")]
    ack: AckArg,
    /// With --exec: the first retry delay in ms; the Nth delivery's failure waits
    /// BASE * 2^(N-1) ms (at most 7 days).
    #[arg(long, value_name = "BASE", requires = "exec", default_value_t = DEFAULT_RETRY_BACKOFF_MS, value_parser = clap::value_parser!(u64).range(0..=MAX_RELEASE_DELAY.as_millis() as u64))]
    retry_backoff_ms: u64,
    /// Output format of printed records: text prints values, json one object per record.
    #[arg(long, value_enum, default_value_t, conflicts_with = "exec")]
    format: Format,
    /// How keys, values and header values are printed: text (UTF-8) or base64.
    #[arg(long, value_enum, default_value_t = Encoding::Text, conflicts_with = "exec")]
    encoding: Encoding,
    /// Text format: print `key<SEP>value`.
    #[arg(long, short = 'K', conflicts_with = "exec")]
    print_keys: bool,
    /// Separator between key and value for --print-keys.
    #[arg(long, default_value = "\t", value_name = "SEP")]
    key_separator: String,
}

/// `--start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StartArg {
    /// Only records produced from now on (Kafka's default).
    Latest,
    /// From the log start.
    Earliest,
}

/// `--ack`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AckArg {
    /// Done: never delivered again.
    Accept,
    /// Back to the group at once.
    Release,
    /// Archived: never delivered again.
    Reject,
}

/// What `weir queue consume` does with each record.
#[derive(Debug)]
enum Action {
    /// Print it, then acknowledge it so.
    Print {
        format: Format,
        encoding: Encoding,
        key_separator: Option<String>,
        ack: AckKind,
    },
    /// Run the command; accept on success, release after the backoff otherwise.
    Exec {
        command: String,
        backoff_base_ms: u64,
    },
}

/// `weir queue consume`, checked.
#[derive(Debug)]
struct ConsumeConfig {
    brokers: Vec<String>,
    timeouts: Timeouts,
    group: String,
    topics: Vec<String>,
    start: ShareStart,
    count: Option<u64>,
    max_records: u32,
    action: Action,
}

impl ConsumeArgs {
    fn into_config(mut self, brokers: &BrokerArgs) -> anyhow::Result<ConsumeConfig> {
        check_group(&self.group, "--group")?;
        if self.topics.iter().any(String::is_empty) {
            return Err(UsageError("a topic name is empty".to_owned()).into());
        }
        self.topics.sort();
        self.topics.dedup();
        if self.topics.len() > weir_client::share::MAX_TOPICS {
            return Err(UsageError(format!(
                "at most {} topics, not {}",
                weir_client::share::MAX_TOPICS,
                self.topics.len()
            ))
            .into());
        }
        if self.ack == AckArg::Release && self.count.is_none() {
            return Err(UsageError(
                "--ack release puts each record back at once, so without --count the same \
                 records would be printed again and again until the delivery limit archives \
                 them; add --count N"
                    .to_owned(),
            )
            .into());
        }
        if self.print_keys && self.format == Format::Json {
            return Err(UsageError(
                "--print-keys is for --format text; JSON always has the key".to_owned(),
            )
            .into());
        }
        let (action, default_max) = match self.exec {
            Some(command) if command.trim().is_empty() => {
                return Err(UsageError("--exec needs a command".to_owned()).into());
            }
            Some(command) => (
                Action::Exec {
                    command,
                    backoff_base_ms: self.retry_backoff_ms,
                },
                DEFAULT_EXEC_MAX_RECORDS,
            ),
            None => (
                Action::Print {
                    format: self.format,
                    encoding: self.encoding,
                    key_separator: self.print_keys.then_some(self.key_separator),
                    ack: match self.ack {
                        AckArg::Accept => AckKind::Accept,
                        AckArg::Release => AckKind::Release,
                        AckArg::Reject => AckKind::Reject,
                    },
                },
                DEFAULT_PRINT_MAX_RECORDS,
            ),
        };
        Ok(ConsumeConfig {
            brokers: brokers.list(),
            timeouts: brokers.timeouts(),
            group: self.group,
            topics: self.topics,
            start: match self.start {
                StartArg::Latest => ShareStart::Latest,
                StartArg::Earliest => ShareStart::Earliest,
            },
            count: self.count,
            max_records: self.max_records.unwrap_or(default_max),
            action,
        })
    }
}

/// A bad group id (given as `label`) is a usage error.
fn check_group(group: &str, label: &str) -> anyhow::Result<()> {
    weir_client::group::check_group_id(group).map_err(|e| match e {
        ClientError::Config(message) => UsageError(format!("{label}: {message}")).into(),
        other => anyhow::Error::from(other),
    })
}

/// Runs a `weir queue` subcommand.
pub async fn run(args: QueueArgs) -> anyhow::Result<()> {
    match args.command {
        QueueCommand::Consume(consume_args) => {
            consume(consume_args.into_config(&args.brokers)?).await
        }
        QueueCommand::Describe { group, format } => {
            check_group(&group, "GROUP")?;
            describe(&args.brokers, &group, format).await
        }
        QueueCommand::Configure {
            group,
            lock_duration,
            delivery_limit,
            dead_letter_topic,
            format,
        } => {
            check_group(&group, "GROUP")?;
            if lock_duration.is_some_and(|d| d < Duration::from_millis(1)) {
                return Err(UsageError("--lock-duration is at least 1ms".to_owned()).into());
            }
            if dead_letter_topic.as_deref() == Some("") {
                return Err(UsageError("--dead-letter-topic is empty".to_owned()).into());
            }
            let settings = ShareGroupSettings {
                lock_duration,
                delivery_count_limit: delivery_limit,
                dead_letter_topic,
            };
            configure(&args.brokers, &group, &settings, format).await
        }
    }
}

/// `weir queue consume`: see the module docs.
async fn consume(config: ConsumeConfig) -> anyhow::Result<()> {
    let admin = Admin::connect_with_timeouts(&config.brokers, config.timeouts)
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
        ..ShareConsumerConfig::new(config.group.clone(), config.topics.clone())
    })
    .await
    .with_context(|| format!("finding the coordinator of share group {}", config.group))?;

    // Ctrl-C (or SIGTERM, from a supervisor) ends the loop between records, so the
    // command can finish the record in hand, acknowledge what it did and release the
    // rest; a second one exits at once (the locks then expire).
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let signals = tokio::spawn(async move {
        if stop_requested().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
            if stop_requested().await.is_ok() {
                std::process::exit(130);
            }
        }
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

/// Waits for Ctrl-C or, on Unix, SIGTERM.
async fn stop_requested() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
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
            AckStatus::Applied { not_held } if not_held.is_empty() => {}
            AckStatus::Applied { not_held } => eprintln!(
                "warning: {range}: {} not applied to offset(s) {}: this member no longer held \
                 them (the lock expired, or the coordinator moved); they will be delivered \
                 again",
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

/// `weir queue describe`.
async fn describe(brokers: &BrokerArgs, group: &str, format: Format) -> anyhow::Result<()> {
    let admin = Admin::connect_with_timeouts(&brokers.list(), brokers.timeouts())
        .await
        .context("connecting to the broker")?;
    let doing = format!("describing share group {group}");
    let info = match admin.describe_share_group(group).await {
        Ok(info) => info,
        Err(error @ ClientError::NotFound(_)) => {
            return Err(anyhow::anyhow!(
                "{doing}: {error}\n  hint: a share group has state once a member fetched from \
                 it (`weir queue consume TOPIC --group {group}`)"
            ));
        }
        Err(error) => return Err(anyhow::Error::from(error).context(doing)),
    };
    let mut out = std::io::stdout().lock();
    print_share_group(&mut out, format, &info)?;
    out.flush()?;
    Ok(())
}

/// `weir queue configure`.
async fn configure(
    brokers: &BrokerArgs,
    group: &str,
    settings: &ShareGroupSettings,
    format: Format,
) -> anyhow::Result<()> {
    let admin = Admin::connect_with_timeouts(&brokers.list(), brokers.timeouts())
        .await
        .context("connecting to the broker")?;
    let doing = format!("configuring share group {group}");
    let info = match admin.configure_share_group(group, settings).await {
        Ok(info) => info,
        Err(error @ ClientError::NotFound(_)) if settings.dead_letter_topic.is_some() => {
            return Err(anyhow::anyhow!(
                "{doing}: {error}\n  hint: the dead-letter topic must exist: `weir topic \
                 create TOPIC --partitions N` makes one"
            ));
        }
        Err(error) => return Err(anyhow::Error::from(error).context(doing)),
    };
    let mut out = std::io::stdout().lock();
    print_share_group(&mut out, format, &info)?;
    out.flush()?;
    Ok(())
}

#[derive(Debug, Serialize)]
struct ShareGroupJson<'a> {
    group_id: &'a str,
    lock_duration_ms: u128,
    delivery_count_limit: u32,
    dead_letter_topic: Option<&'a str>,
    partitions: Vec<SharePartitionJson<'a>>,
}

#[derive(Debug, Serialize)]
struct SharePartitionJson<'a> {
    topic: &'a str,
    partition: u32,
    start_offset: i64,
    end_offset: i64,
    high_watermark: i64,
    available: u64,
    delayed: u64,
    acquired: u64,
    archived_pending: u64,
    oldest_unfinished_offset: Option<i64>,
    oldest_unfinished_age_ms: Option<u128>,
}

fn print_share_group(
    out: &mut impl Write,
    format: Format,
    info: &ShareGroupInfo,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let json = ShareGroupJson {
                group_id: &info.group_id,
                lock_duration_ms: info.lock_duration.as_millis(),
                delivery_count_limit: info.delivery_count_limit,
                dead_letter_topic: info.dead_letter_topic.as_deref(),
                partitions: info
                    .partitions
                    .iter()
                    .map(|p| SharePartitionJson {
                        topic: &p.topic,
                        partition: p.partition,
                        start_offset: p.start_offset,
                        end_offset: p.end_offset,
                        high_watermark: p.high_watermark,
                        available: p.available,
                        delayed: p.delayed,
                        acquired: p.acquired,
                        archived_pending: p.archived_pending,
                        oldest_unfinished_offset: p.oldest_unfinished_offset,
                        oldest_unfinished_age_ms: p.oldest_unfinished_age.map(|a| a.as_millis()),
                    })
                    .collect(),
            };
            serde_json::to_writer(&mut *out, &json)?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(out, "GROUP           {}", info.group_id)?;
            writeln!(
                out,
                "LOCK-DURATION   {}",
                human_duration(info.lock_duration)
            )?;
            writeln!(out, "DELIVERY-LIMIT  {}", info.delivery_count_limit)?;
            writeln!(
                out,
                "DEAD-LETTERS    {}",
                info.dead_letter_topic
                    .as_deref()
                    .unwrap_or("- (archived records are dropped)")
            )?;
            if info.partitions.is_empty() {
                return Ok(());
            }
            writeln!(out)?;
            let rows: Vec<[String; 11]> = info
                .partitions
                .iter()
                .map(|p| {
                    [
                        p.topic.clone(),
                        p.partition.to_string(),
                        p.start_offset.to_string(),
                        p.end_offset.to_string(),
                        p.high_watermark.to_string(),
                        p.available.to_string(),
                        p.delayed.to_string(),
                        p.acquired.to_string(),
                        p.archived_pending.to_string(),
                        p.oldest_unfinished_offset
                            .map_or_else(|| "-".to_owned(), |o| o.to_string()),
                        p.oldest_unfinished_age.map_or_else(|| "-".to_owned(), age),
                    ]
                })
                .collect();
            table(
                out,
                [
                    "TOPIC",
                    "PARTITION",
                    "START",
                    "END",
                    "HIGH-WATERMARK",
                    "AVAILABLE",
                    "DELAYED",
                    "ACQUIRED",
                    "ARCHIVED-PENDING",
                    "OLDEST-UNFINISHED",
                    "AGE",
                ],
                &[
                    false, true, true, true, true, true, true, true, true, true, true,
                ],
                &rows,
            )?;
        }
    }
    Ok(())
}

/// An age for people: `850 ms`, `42 s`, `5m 3s`, `3h 20m`, `2d 4h`.
fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{} ms", d.as_millis()),
        1..60 => format!("{s} s"),
        60..3_600 => format!("{}m {}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h {}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3_600),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use weir_client::SharePartitionInfo;

    use super::*;

    /// `weir queue ...` parsed the way main.rs parses it.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, Subcommand)]
    enum Top {
        Queue(QueueArgs),
    }

    fn parse(args: &[&str]) -> Result<QueueArgs, clap::Error> {
        let mut argv = vec!["weir", "queue"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
            Top::Queue(args) => args,
        })
    }

    fn consume_config(args: &[&str]) -> anyhow::Result<ConsumeConfig> {
        let parsed = parse(args)?;
        match parsed.command {
            QueueCommand::Consume(c) => c.into_config(&parsed.brokers),
            QueueCommand::Describe { .. } | QueueCommand::Configure { .. } => {
                anyhow::bail!("not consume")
            }
        }
    }

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
    fn consume_flags_become_a_checked_config() {
        let config = consume_config(&["consume", "b", "a", "b", "--group", "g"]).unwrap();
        assert_eq!(config.topics, ["a", "b"]);
        assert_eq!(config.start, ShareStart::Latest);
        assert_eq!(config.max_records, DEFAULT_PRINT_MAX_RECORDS);
        assert!(matches!(
            config.action,
            Action::Print {
                ack: AckKind::Accept,
                ..
            }
        ));

        let worker = consume_config(&[
            "consume",
            "jobs",
            "-g",
            "g",
            "--exec",
            "cat",
            "--retry-backoff-ms",
            "250",
            "--start",
            "earliest",
        ])
        .unwrap();
        assert_eq!(worker.max_records, DEFAULT_EXEC_MAX_RECORDS);
        assert_eq!(worker.start, ShareStart::Earliest);
        assert!(matches!(
            worker.action,
            Action::Exec {
                backoff_base_ms: 250,
                ..
            }
        ));
    }

    #[test]
    fn contradictory_or_bad_flags_are_usage_errors() {
        for args in [
            &[
                "consume", "t", "-g", "g", "--exec", "cat", "--ack", "reject",
            ][..],
            &["consume", "t", "-g", "g", "--retry-backoff-ms", "5"],
            &["consume", "t", "-g", "g", "--max-records", "0"],
            &["consume", "t", "-g", "g", "--max-records", "10001"],
            &[
                "consume", "t", "-g", "g", "--exec", "cat", "--format", "json",
            ],
            &["consume", "t"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        for args in [
            &["consume", "t", "-g", "bad group"][..],
            &["consume", "t", "-g", "g", "--ack", "release"],
            &["consume", "t", "-g", "g", "--exec", " "],
            &[
                "consume",
                "t",
                "-g",
                "g",
                "--print-keys",
                "--format",
                "json",
            ],
        ] {
            let error = consume_config(args).unwrap_err();
            assert!(
                error.downcast_ref::<UsageError>().is_some(),
                "{args:?}: {error}"
            );
        }
        assert!(
            consume_config(&["consume", "t", "-g", "g", "--ack", "release", "-c", "3"]).is_ok()
        );
    }

    #[test]
    fn ages_read_at_a_glance() {
        assert_eq!(age(Duration::from_millis(850)), "850 ms");
        assert_eq!(age(Duration::from_secs(42)), "42 s");
        assert_eq!(age(Duration::from_secs(303)), "5m 3s");
        assert_eq!(age(Duration::from_secs(12_000)), "3h 20m");
        assert_eq!(age(Duration::from_secs(187_200)), "2d 4h");
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

    #[test]
    fn a_share_group_prints_as_a_table_or_json() {
        let info = ShareGroupInfo {
            group_id: "workers".to_owned(),
            lock_duration: Duration::from_secs(30),
            delivery_count_limit: 5,
            dead_letter_topic: Some("jobs-dlq".to_owned()),
            partitions: vec![SharePartitionInfo {
                topic: "jobs".to_owned(),
                partition: 0,
                start_offset: 10,
                end_offset: 20,
                high_watermark: 25,
                available: 4,
                delayed: 2,
                acquired: 3,
                archived_pending: 0,
                oldest_unfinished_offset: Some(11),
                oldest_unfinished_age: Some(Duration::from_secs(90)),
            }],
        };
        let mut text = Vec::new();
        print_share_group(&mut text, Format::Text, &info).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.starts_with(
                "GROUP           workers\nLOCK-DURATION   30 s\nDELIVERY-LIMIT  5\n\
                 DEAD-LETTERS    jobs-dlq\n"
            ),
            "{text}"
        );
        let last = text.lines().last().unwrap();
        let cells: Vec<&str> = last.split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "jobs", "0", "10", "20", "25", "4", "2", "3", "0", "11", "1m", "30s"
            ]
        );

        let mut json = Vec::new();
        print_share_group(&mut json, Format::Json, &info).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["lock_duration_ms"], 30_000);
        assert_eq!(value["partitions"][0]["oldest_unfinished_age_ms"], 90_000);
        assert_eq!(value["partitions"][0]["available"], 4);
        assert_eq!(value["dead_letter_topic"], "jobs-dlq");
    }

    #[test]
    fn configure_flags_parse() {
        let parsed = parse(&[
            "configure",
            "workers",
            "--lock-duration",
            "2m",
            "--delivery-limit",
            "3",
            "--dead-letter-topic",
            "dlq",
        ])
        .unwrap();
        assert!(matches!(
            parsed.command,
            QueueCommand::Configure {
                lock_duration: Some(d),
                delivery_limit: Some(3),
                dead_letter_topic: Some(ref t),
                ..
            } if d == Duration::from_secs(120) && t == "dlq"
        ));
        assert!(parse(&["configure", "workers", "--delivery-limit", "0"]).is_err());
    }
}

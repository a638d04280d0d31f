//! `weir queue`: work queues on share groups (docs/queues.md). `consume` is a member of a
//! share group ([`ShareConsumer`](weir_client::ShareConsumer), explicit
//! acknowledgement): it prints each record as `weir consume` does and acknowledges it as
//! `--ack` says, or, with `--exec`, runs a command per record and accepts the record when
//! the command succeeds or releases it for a retry with exponential backoff when it fails
//! (a minimal worker). `describe` shows the group's settings and each share-partition's
//! window; `configure` sets the group's lock duration, delivery limit, dead-letter topic
//! and header filter; `list`, `reset` and `delete` administer groups (list them, move an
//! idle group's start, delete it or its state of some topics); `redrive` moves dead
//! letters back to their source topics.
//!
//! Records the command took and did not finish (Ctrl-C, `--count` reached mid-batch, an
//! error) are released when it closes, so other members get them at once.
//!
//! This file holds the command line (flags, help texts, the checks that turn flags into a
//! [`ConsumeConfig`]) and the dispatch; `consume.rs` the consume loop, `admin.rs`
//! `describe`, `configure`, `list`, `reset` and `delete`, `redrive.rs` the redrive.

mod admin;
mod consume;
mod redrive;

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use weir_client::connection::Timeouts;
use weir_client::share::filter::HeaderCondition;
use weir_client::share::{MAX_RECORDS_PER_POLL, MAX_RELEASE_DELAY};
use weir_client::{AckKind, ClientError, ShareGroupSettings, ShareResetTo, ShareStart};

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::consume::Encoding;
use crate::output::{Format, parse_duration};

/// Records one poll takes without `--exec`, unless `--max-records` says otherwise.
const DEFAULT_PRINT_MAX_RECORDS: u32 = 500;
/// Records one poll takes with `--exec`, unless `--max-records` says otherwise: one, so a
/// slow job holds no other record locked behind it (RabbitMQ's prefetch of 1 for work
/// queues) and the other workers take them.
const DEFAULT_EXEC_MAX_RECORDS: u32 = 1;
/// `--retry-backoff-ms`' default.
const DEFAULT_RETRY_BACKOFF_MS: u64 = 1_000;
/// Highest `--delivery-limit` the broker takes (weir-cluster's `MAX_DELIVERY_COUNT_LIMIT`),
/// checked here so that a value over it is a usage error, not a failed request.
const MAX_DELIVERY_LIMIT: u32 = 10_000;
/// Longest `--lock-duration` the broker takes: 7 days, its longest delivery delay (which
/// bounds a release delay too).
const MAX_LOCK_DURATION: Duration = MAX_RELEASE_DELAY;

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
  weir queue list
  weir queue reset workers --topic jobs --to-earliest
      Deliver the whole topic again (the group must be idle: stop its workers first).
  weir queue delete workers
  weir queue redrive jobs-dlq
      Send the dead letters of jobs-dlq back to jobs, once fixed (SQS's redrive).

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
dead-letter topic holds them, and START, until the copy succeeds). FILTERED counts the
records the group's header filter (FILTER; `weir queue configure --filter`) skipped since
its coordinator took the window (a failover or restart counts from 0 again); they are
finished. OLDEST-UNFINISHED is the first record of the window not finished yet, and AGE
how old it is (since its timestamp).

NOT_FOUND: no member has fetched from the group yet, and it was never configured.

Examples:
  weir queue describe workers
  weir queue describe workers --format json | jq '.partitions[] | {topic, partition, available}'";

const CONFIGURE_HELP: &str = "\
Every setting is replaced: one not given goes back to the broker's default (the broker's
share_record_lock_duration_ms and share_delivery_count_limit, 30 s and 5 unless set; no
dead-letter topic). Give all the settings the group should have. The header filter is
the exception: without --filter or --clear-filter the group keeps the one it has. A group
that has no state yet is made, so a queue can be configured before its first worker
starts. The group is printed as `weir queue describe` prints it, once the settings are
durable.

Header filters (SNS filter policies; RabbitMQ routing by headers): the group is handed
only records whose headers match every --filter; the others are skipped, finished at once
(not dead-lettered, no delivery counted), and the group's START moves past them. Each
--filter is one condition on one header:
  KEY=VALUE            the header KEY is exactly VALUE
  KEY^=PREFIX          it starts with PREFIX (KEY^= alone: the header is present)
  KEY in V1,V2,...     it is one of the values
A record without the header never matches. Values are compared as bytes, taken as
written (no trimming); the first `=` or ` in ` ends the key. At most 16 conditions and 32
values per `in`. A new filter applies to every record not delivered yet, also those
already in the group's window; records an earlier filter skipped are not brought back.
--clear-filter removes the filter: every record is delivered again from the window on.

Examples:
  weir queue configure workers --dead-letter-topic jobs-dlq
  weir queue configure workers --lock-duration 5m --delivery-limit 10 --dead-letter-topic jobs-dlq
  weir queue configure workers        # back to the broker's defaults, no dead letters
  weir queue configure mailers --filter type=email
  weir queue consume tasks --group mailers --exec ./send-email.sh
      Route only the tasks produced with the header type=email to a worker pool: the
      mailers group skips every other task (another group, say sms-senders with
      --filter type=sms, takes those).
  weir queue configure eu-workers --filter 'region^=eu-' --filter 'tier in gold,silver'
  weir queue configure mailers --clear-filter";

const RESET_HELP: &str = "\
The group must be idle: no member may hold a record under a lock that has not expired,
and no Kafka share consumer may be in the group (FAILED_PRECONDITION otherwise: stop the
workers, or wait for their locks to end). Each share-partition's in-flight window is
discarded: every record from the new start on is delivered again, with a delivery count
starting from 0, and everything below it counts as finished. A group without state is
made, so a queue can be positioned before its first worker starts.

Examples:
  weir queue reset workers --topic jobs --to-offset 1200
  weir queue reset workers --topic jobs --partition 0 --partition 2 --to-earliest
  weir queue reset workers --topic jobs --to-latest     # skip the backlog";

const PURGE_HELP: &str = "\
SQS's PurgeQueue and RabbitMQ's queue purge for a share group: every record produced so
far is skipped (counted as finished) by this group, and its workers take only records
produced from now on. It is `weir queue reset GROUP --topic TOPIC --to-latest`: the group
must be idle (no member holding a record under a lock that has not expired), and the
records stay in the topic for other groups and consumers (retention removes them).

Examples:
  weir queue purge workers --topic jobs
  weir queue purge workers --topic jobs --partition 3";

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
    /// Set a share group's lock duration, delivery limit, dead-letter topic and header
    /// filter.
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
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_DELIVERY_LIMIT)))]
        delivery_limit: Option<u32>,
        /// An existing topic archived records are copied to [default: none, they are
        /// dropped].
        #[arg(long, value_name = "TOPIC")]
        dead_letter_topic: Option<String>,
        /// Deliver only records whose headers match: KEY=VALUE, KEY^=PREFIX or
        /// `KEY in V1,V2`; repeat it for several conditions, all of which must hold
        /// [default: keep the group's filter].
        #[arg(
            long = "filter",
            value_name = "CONDITION",
            conflicts_with = "clear_filter"
        )]
        filters: Vec<HeaderCondition>,
        /// Remove the group's filter: deliver every record.
        #[arg(long)]
        clear_filter: bool,
        /// Where the group starts on a partition it has no state for, whatever its
        /// consumers ask (Kafka's share.auto.offset.reset; Kafka share consumers take
        /// latest unless the group sets it). Left out: each consumer's own --start.
        #[arg(long, value_enum, value_name = "WHERE")]
        start: Option<StartArg>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List the share groups: every broker is asked for those whose state or Kafka
    /// members it holds.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Move an idle share group's start on a topic's partitions (Kafka's
    /// kafka-share-groups --reset-offsets).
    #[command(after_help = RESET_HELP)]
    Reset {
        /// Share group id.
        group: String,
        /// The topic whose share-partitions move.
        #[arg(long, short = 't', value_name = "TOPIC")]
        topic: String,
        /// Only these partitions (repeat it) [default: every partition of the topic].
        #[arg(long = "partition", short = 'p', value_name = "P")]
        partitions: Vec<u32>,
        /// Start at this offset (a start below the log start is the log start; one past
        /// the high watermark is refused).
        #[arg(long, value_name = "OFFSET", group = "to", value_parser = clap::value_parser!(i64).range(0..))]
        to_offset: Option<i64>,
        /// Start at each partition's log start.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// Start at each partition's high watermark: skip everything produced so far.
        #[arg(long, group = "to")]
        to_latest: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Skip every record an idle share group has not finished on a topic: its workers
    /// take only records produced from now on (SQS's PurgeQueue).
    #[command(after_help = PURGE_HELP)]
    Purge {
        /// Share group id.
        group: String,
        /// The topic to purge the group's backlog of.
        #[arg(long, short = 't', value_name = "TOPIC")]
        topic: String,
        /// Only these partitions (repeat it) [default: every partition of the topic].
        #[arg(long = "partition", short = 'p', value_name = "P")]
        partitions: Vec<u32>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Delete an idle share group (its state and settings), or with --topic only its
    /// state of those topics (it then starts on them afresh, where its start says).
    Delete {
        /// Share group id.
        group: String,
        /// Forget only the group's state of this topic (repeat it) [default: delete the
        /// whole group].
        #[arg(long = "topic", short = 't', value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Move dead letters back to the topics they came from (SQS's redrive): each is
    /// produced again (acks=all) to its source partition without its weir-dlq-* headers,
    /// and marked done in a share group on the dead-letter topic, so a second redrive
    /// does not send it twice. Ends when no dead letter is left.
    Redrive {
        /// The dead-letter topic.
        topic: String,
        /// The share group that remembers what was redriven [default: weir-redrive].
        #[arg(long, short = 'g', default_value = "weir-redrive")]
        group: String,
        /// Redrive at most this many.
        #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
        count: Option<u64>,
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

impl StartArg {
    fn share_start(self) -> ShareStart {
        match self {
            StartArg::Latest => ShareStart::Latest,
            StartArg::Earliest => ShareStart::Earliest,
        }
    }
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
    tls: Option<weir_client::ClientTls>,
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
            tls: brokers.tls()?,
            group: self.group,
            topics: self.topics,
            start: self.start.share_start(),
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
            consume::consume(consume_args.into_config(&args.brokers)?).await
        }
        QueueCommand::Describe { group, format } => {
            check_group(&group, "GROUP")?;
            admin::describe(&args.brokers, &group, format).await
        }
        QueueCommand::Configure {
            group,
            lock_duration,
            delivery_limit,
            dead_letter_topic,
            filters,
            clear_filter,
            start,
            format,
        } => {
            check_group(&group, "GROUP")?;
            let mut settings =
                configure_settings(lock_duration, delivery_limit, dead_letter_topic)?;
            settings.filter = (clear_filter || !filters.is_empty()).then_some(filters);
            settings.start = start.map(StartArg::share_start);
            admin::configure(&args.brokers, &group, &settings, format).await
        }
        QueueCommand::List { format } => admin::list(&args.brokers, format).await,
        QueueCommand::Reset {
            group,
            topic,
            partitions,
            to_offset,
            to_earliest,
            to_latest,
            format,
        } => {
            check_group(&group, "GROUP")?;
            let to = match (to_offset, to_earliest, to_latest) {
                (Some(n), _, _) => ShareResetTo::Offset(n),
                (None, true, _) => ShareResetTo::Earliest,
                (None, false, true) => ShareResetTo::Latest,
                (None, false, false) => {
                    return Err(UsageError(
                        "say where: --to-offset N, --to-earliest or --to-latest".to_owned(),
                    )
                    .into());
                }
            };
            admin::reset(&args.brokers, &group, &topic, &partitions, to, format).await
        }
        QueueCommand::Purge {
            group,
            topic,
            partitions,
            format,
        } => {
            check_group(&group, "GROUP")?;
            let to = ShareResetTo::Latest;
            admin::reset(&args.brokers, &group, &topic, &partitions, to, format).await
        }
        QueueCommand::Delete { group, topics } => {
            check_group(&group, "GROUP")?;
            admin::delete(&args.brokers, &group, &topics).await
        }
        QueueCommand::Redrive {
            topic,
            group,
            count,
        } => {
            check_group(&group, "--group")?;
            redrive::redrive(&args.brokers, &topic, &group, count).await
        }
    }
}

/// `weir queue configure`'s settings, checked: a value the broker would refuse is a usage
/// error, found before connecting.
fn configure_settings(
    lock_duration: Option<Duration>,
    delivery_limit: Option<u32>,
    dead_letter_topic: Option<String>,
) -> anyhow::Result<ShareGroupSettings> {
    if lock_duration.is_some_and(|d| d < Duration::from_millis(1) || d > MAX_LOCK_DURATION) {
        return Err(UsageError(format!(
            "--lock-duration is 1ms to {}m (7 days)",
            MAX_LOCK_DURATION.as_secs() / 60
        ))
        .into());
    }
    if dead_letter_topic.as_deref() == Some("") {
        return Err(UsageError("--dead-letter-topic is empty".to_owned()).into());
    }
    Ok(ShareGroupSettings {
        lock_duration,
        delivery_count_limit: delivery_limit,
        dead_letter_topic,
        filter: None,
        start: None,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
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
            _ => anyhow::bail!("not consume"),
        }
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
            // Any non-empty group id is a group's, as in Kafka: an empty one is not.
            &["consume", "t", "-g", ""][..],
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
        let filtered = parse(&[
            "configure",
            "mailers",
            "--filter",
            "type=email",
            "--filter",
            "tier in gold,silver",
        ])
        .unwrap();
        match filtered.command {
            QueueCommand::Configure {
                filters,
                clear_filter: false,
                ..
            } => assert_eq!(
                filters.iter().map(ToString::to_string).collect::<Vec<_>>(),
                ["type=email", "tier in gold,silver"]
            ),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["configure", "g", "--filter", "type"]).is_err());
        assert!(parse(&["configure", "g", "--filter", "=x"]).is_err());
        assert!(parse(&["configure", "g", "--filter", "a=b", "--clear-filter"]).is_err());
        assert!(parse(&["configure", "g", "--clear-filter"]).is_ok());
        assert!(parse(&["configure", "workers", "--delivery-limit", "0"]).is_err());
        assert!(parse(&["configure", "workers", "--delivery-limit", "10000"]).is_ok());
        assert!(parse(&["configure", "workers", "--delivery-limit", "10001"]).is_err());
    }

    #[test]
    fn configure_values_the_broker_refuses_are_usage_errors() {
        let ms = Duration::from_millis;
        for (lock, topic) in [
            (Some(ms(0)), None),
            (Some(MAX_LOCK_DURATION + ms(1)), None),
            (None, Some(String::new())),
        ] {
            let error = configure_settings(lock, None, topic).unwrap_err();
            assert!(error.downcast_ref::<UsageError>().is_some(), "{error}");
        }
        let settings = configure_settings(Some(MAX_LOCK_DURATION), Some(3), None).unwrap();
        assert_eq!(settings.lock_duration, Some(MAX_LOCK_DURATION));
        assert_eq!(settings.delivery_count_limit, Some(3));
        assert!(configure_settings(Some(ms(1)), None, None).is_ok());
    }
}

//! `weir quota`: client quotas, bytes per second a user, a client id, or a user's client
//! id may produce and fetch, and the share of a thread's time its requests may take
//! (docs/security.md § Quotas). Text output is aligned columns;
//! `--format json` prints one JSON document on stdout.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use weir_client::{Admin, QuotaEntity, QuotaName};

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::output::Format;

const EXAMPLES: &str = "\
Examples:
  weir quota set --principal User:alice --producer-byte-rate 1048576
  weir quota set --default-principal --consumer-byte-rate 10485760
  weir quota set --principal User:alice --client-id etl --producer-byte-rate 5242880
  weir quota set --default-client-id --request-percentage 50   # half a thread each
  weir quota list
  weir quota remove --principal User:alice --producer-byte-rate
  weir quota remove --principal User:alice          # every key of user=alice

A request that takes its entity over a quota is held back until the rate is back under
it (Kafka's throttling); the most specific entity with the key applies: user and client
id, user, default user, client id, default client id. --request-percentage is the time
the entity's requests may take on the broker's threads, in percent of one thread (100 =
a whole thread; more than 100 allows several). Setting quotas needs AlterConfigs
on the cluster, listing them DescribeConfigs.";

/// Manage client quotas.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct QuotaArgs {
    #[command(subcommand)]
    command: QuotaCommand,
    // After the subcommands' own options in their help.
    #[command(flatten, next_display_order = 100)]
    brokers: BrokerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum QuotaCommand {
    /// Set quota keys of an entity.
    Set {
        #[command(flatten)]
        entity: EntityArgs,
        /// Bytes per second the entity may produce.
        #[arg(long, value_name = "BYTES")]
        producer_byte_rate: Option<u64>,
        /// Bytes per second the entity may fetch.
        #[arg(long, value_name = "BYTES")]
        consumer_byte_rate: Option<u64>,
        /// Percent of one thread's time the entity's requests may take (Kafka's
        /// request_percentage, in whole percent).
        #[arg(long, value_name = "PERCENT")]
        request_percentage: Option<u64>,
    },
    /// Remove quota keys of an entity (every key if none is named).
    Remove {
        #[command(flatten)]
        entity: EntityArgs,
        /// Remove the produce quota.
        #[arg(long)]
        producer_byte_rate: bool,
        /// Remove the fetch quota.
        #[arg(long)]
        consumer_byte_rate: bool,
        /// Remove the request-time quota.
        #[arg(long)]
        request_percentage: bool,
    },
    /// List every entity with a quota.
    List,
}

/// Whom a quota applies to.
#[derive(Debug, Args)]
struct EntityArgs {
    /// The user, by its principal (User:NAME), as ACLs name it.
    #[arg(long, value_name = "User:NAME", conflicts_with = "default_principal", value_parser = user_of)]
    principal: Option<String>,
    /// Every user without a quota of its own.
    #[arg(long)]
    default_principal: bool,
    /// The client id (Kafka's client.id).
    #[arg(long, value_name = "ID", conflicts_with = "default_client_id")]
    client_id: Option<String>,
    /// Every client id without a quota of its own.
    #[arg(long)]
    default_client_id: bool,
}

impl EntityArgs {
    fn entity(&self) -> Result<QuotaEntity, UsageError> {
        let part = |name: &Option<String>, default: bool| match (name, default) {
            (Some(n), _) => Some(QuotaName::Name(n.clone())),
            (None, true) => Some(QuotaName::Default),
            (None, false) => None,
        };
        let entity = QuotaEntity {
            user: part(&self.principal, self.default_principal),
            client_id: part(&self.client_id, self.default_client_id),
        };
        if entity.user.is_none() && entity.client_id.is_none() {
            return Err(UsageError(
                "name the entity: --principal, --default-principal, --client-id or --default-client-id"
                    .to_owned(),
            ));
        }
        Ok(entity)
    }
}

/// The user name of a `User:NAME` principal.
fn user_of(principal: &str) -> Result<String, String> {
    match principal.strip_prefix("User:") {
        Some(name) if !name.is_empty() && name != "*" => Ok(name.to_owned()),
        _ => Err(format!("{principal:?} is not a principal User:NAME")),
    }
}

const PRODUCER_BYTE_RATE: &str = "producer_byte_rate";
const CONSUMER_BYTE_RATE: &str = "consumer_byte_rate";
const REQUEST_PERCENTAGE: &str = "request_percentage";

#[derive(Debug, Serialize)]
struct QuotaJson {
    entity: String,
    values: std::collections::BTreeMap<String, u64>,
}

/// Runs a `weir quota` subcommand.
pub async fn run(args: QuotaArgs) -> anyhow::Result<()> {
    let alterations = match &args.command {
        QuotaCommand::Set {
            entity,
            producer_byte_rate,
            consumer_byte_rate,
            request_percentage,
        } => {
            let entity = entity.entity()?;
            let keys: Vec<(QuotaEntity, &str, Option<u64>)> = [
                (PRODUCER_BYTE_RATE, *producer_byte_rate),
                (CONSUMER_BYTE_RATE, *consumer_byte_rate),
                (REQUEST_PERCENTAGE, *request_percentage),
            ]
            .into_iter()
            .filter_map(|(key, value)| Some((entity.clone(), key, Some(value?))))
            .collect();
            if keys.is_empty() {
                return Err(UsageError(
                    "set at least one of --producer-byte-rate, --consumer-byte-rate and \
                     --request-percentage"
                        .into(),
                )
                .into());
            }
            Some(keys)
        }
        QuotaCommand::Remove {
            entity,
            producer_byte_rate,
            consumer_byte_rate,
            request_percentage,
        } => {
            let entity = entity.entity()?;
            let all = !producer_byte_rate && !consumer_byte_rate && !request_percentage;
            Some(
                [
                    (PRODUCER_BYTE_RATE, *producer_byte_rate || all),
                    (CONSUMER_BYTE_RATE, *consumer_byte_rate || all),
                    (REQUEST_PERCENTAGE, *request_percentage || all),
                ]
                .into_iter()
                .filter(|(_, chosen)| *chosen)
                .map(|(key, _)| (entity.clone(), key, None))
                .collect(),
            )
        }
        QuotaCommand::List => None,
    };
    let admin = Admin::connect_with(&args.brokers.list(), args.brokers.connect_options()?)
        .await
        .context("connecting to the broker")?;
    let mut out = std::io::stdout().lock();
    if let Some(alterations) = alterations {
        admin
            .alter_quotas(&alterations)
            .await
            .context("altering quotas")?;
        for (entity, key, value) in &alterations {
            match value {
                Some(v) if *key == REQUEST_PERCENTAGE => {
                    writeln!(out, "{entity}: {key} = {v}% of a thread")?
                }
                Some(v) => writeln!(out, "{entity}: {key} = {v} bytes/s")?,
                None => writeln!(out, "{entity}: {key} removed")?,
            }
        }
        return Ok(());
    }
    let quotas = admin.list_quotas().await.context("listing quotas")?;
    match args.format {
        Format::Json => {
            let json: Vec<QuotaJson> = quotas
                .iter()
                .map(|(entity, values)| QuotaJson {
                    entity: entity.to_string(),
                    values: values.iter().cloned().collect(),
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &json)?;
            writeln!(out)?;
        }
        Format::Text => {
            let width = quotas
                .iter()
                .map(|(e, _)| e.to_string().len())
                .max()
                .unwrap_or(0)
                .max("ENTITY".len());
            writeln!(out, "{:width$}  QUOTAS", "ENTITY")?;
            for (entity, values) in &quotas {
                let shown: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
                writeln!(out, "{:width$}  {}", entity.to_string(), shown.join(" "))?;
            }
        }
    }
    Ok(())
}

//! `weir acl`: add, list and remove access control lists (Kafka's model: a principal is
//! allowed or denied an operation on a resource pattern, from a host). `add` makes one
//! binding per operation; `list` and `remove` take the same filter, so a `list` shows
//! what the `remove` with the same options would remove. Text output is aligned columns;
//! `--format json` prints one JSON document on stdout.

use std::io::Write;
use std::net::IpAddr;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde::Serialize;
use weir_client::security::{CLUSTER_RESOURCE_NAME, USER_PRINCIPAL_PREFIX};
use weir_client::{
    AclBinding, AclFilter, AclOperation, AclPatternFilter, AclPatternType, AclPermission,
    AclResourceType, Admin,
};

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::output::Format;

const EXAMPLES: &str = "\
Examples:
  weir acl add --principal User:alice --operation read,describe --topic orders
  weir acl add --principal User:alice --operation read --group billing
  weir acl add --principal User:etl --operation write --topic events. --prefixed
  weir acl add --principal User:* --operation describe --topic '*'     # everyone, every topic
  weir acl add --principal User:mallory --operation all --topic orders --deny
  weir acl add --principal User:ops --operation alter,describe --cluster
  weir acl list
  weir acl list --principal User:alice --format json
  weir acl list --topic orders --match        # every binding that applies to topic orders
  weir acl remove --principal User:alice --topic orders
  weir acl remove --all                        # every binding of the cluster

A binding is: PRINCIPAL is allowed (or, with --deny, denied) OPERATION on a resource
(exactly one of --topic, --group, --transactional-id, --cluster) whose name matches,
from HOST (--host, any by default). A name matches literally (`*` stands for every
name), or with --prefixed every name that starts with it. A DENY wins over any ALLOW.
Operations: all, read, write, create, delete, alter, describe, cluster-action,
describe-configs, alter-configs, idempotent-write (Kafka's spellings, DescribeConfigs,
work too). docs/security.md has which apply to which resource and what each allows.

`list` and `remove` select bindings with the same options, each optional: a resource
name selects literal bindings of that name (with --prefixed, prefixed ones; with
--match, every binding that applies to the resource: the literal name, `*`, and
prefixes of it). `remove` prints what it removed; with no option at all it is refused
unless --all is given. Changing ACLs needs the Alter operation on the cluster, listing
them Describe.";

/// Manage ACLs (who may do what).
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct AclArgs {
    #[command(subcommand)]
    command: AclCommand,
    // After the subcommands' own options in their help.
    #[command(flatten, next_display_order = 100)]
    brokers: BrokerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum AclCommand {
    /// Allow (or deny) a principal operations on a resource: one binding per operation.
    Add(AddArgs),
    /// List the bindings the options select (every binding without options).
    List(FilterArgs),
    /// Remove the bindings the options select, printing them.
    Remove {
        /// Remove every binding of the cluster (needed when no other option is given).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

/// The resource options: at most one resource.
#[derive(Debug, Args)]
#[command(group = ArgGroup::new("resource").multiple(false), next_help_heading = "Resource")]
struct ResourceArgs {
    /// A topic name (`*`: every topic).
    #[arg(long, value_name = "NAME", group = "resource")]
    topic: Option<String>,
    /// A consumer or share group id (`*`: every group).
    #[arg(long, value_name = "ID", group = "resource")]
    group: Option<String>,
    /// A transactional id (`*`: every one).
    #[arg(long, value_name = "ID", group = "resource")]
    transactional_id: Option<String>,
    /// The cluster (for cluster operations: creating topics, managing users and ACLs).
    #[arg(long, group = "resource")]
    cluster: bool,
    /// The name is a prefix: the binding applies to every name that starts with it.
    #[arg(long)]
    prefixed: bool,
}

impl ResourceArgs {
    /// The resource type and name given, if any.
    fn resource(&self) -> Option<(AclResourceType, String)> {
        let named = |t, name: &Option<String>| name.clone().map(|n| (t, n));
        named(AclResourceType::Topic, &self.topic)
            .or_else(|| named(AclResourceType::Group, &self.group))
            .or_else(|| named(AclResourceType::TransactionalId, &self.transactional_id))
            .or_else(|| {
                self.cluster
                    .then(|| (AclResourceType::Cluster, CLUSTER_RESOURCE_NAME.to_owned()))
            })
    }
}

#[derive(Debug, Args)]
#[command(group = ArgGroup::new("one-resource").required(true).multiple(false)
    .args(["topic", "group", "transactional_id", "cluster"]))]
struct AddArgs {
    /// Who: User:NAME, or User:* for every principal (anonymous clients included).
    #[arg(long, value_name = "User:NAME", value_parser = parse_principal)]
    principal: String,
    /// What, comma-separated: one binding per operation.
    #[arg(long, value_name = "OP,..", value_delimiter = ',', required = true, value_parser = parse_operation)]
    operation: Vec<AclOperation>,
    /// From which client IP address [default: any].
    #[arg(long, value_name = "IP", value_parser = parse_host)]
    host: Option<String>,
    /// Deny instead of allow.
    #[arg(long)]
    deny: bool,
    #[command(flatten)]
    resource: ResourceArgs,
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// Only bindings for this principal (User:* selects only bindings for User:*).
    #[arg(long, value_name = "User:NAME", value_parser = parse_principal)]
    principal: Option<String>,
    /// Only bindings naming these operations (comma-separated).
    #[arg(long, value_name = "OP,..", value_delimiter = ',', value_parser = parse_operation)]
    operation: Vec<AclOperation>,
    /// Only bindings for this host (`*` selects only bindings for any host).
    #[arg(long, value_name = "IP", value_parser = parse_host)]
    host: Option<String>,
    /// Only DENY bindings.
    #[arg(long, conflicts_with = "allow")]
    deny: bool,
    /// Only ALLOW bindings.
    #[arg(long)]
    allow: bool,
    #[command(flatten)]
    resource: ResourceArgs,
    /// With a resource name: every binding that applies to that resource (its literal
    /// name, `*`, and prefixes of it), not only those of that exact pattern.
    #[arg(long, requires = "resource", conflicts_with = "prefixed")]
    r#match: bool,
}

impl FilterArgs {
    /// One filter per operation given (one for none).
    fn filters(&self) -> Vec<AclFilter> {
        let resource = self.resource.resource();
        let pattern = match (self.r#match, self.resource.prefixed, &resource) {
            (true, _, _) => Some(AclPatternFilter::Match),
            (false, true, _) => Some(AclPatternFilter::Prefixed),
            (false, false, Some(_)) => Some(AclPatternFilter::Literal),
            (false, false, None) => None,
        };
        let (resource_type, resource_name) = match resource {
            // The cluster has one name: the type says it all.
            Some((AclResourceType::Cluster, _)) => (Some(AclResourceType::Cluster), None),
            Some((t, name)) => (Some(t), Some(name)),
            None => (None, None),
        };
        let base = AclFilter {
            resource_type,
            resource_name,
            pattern,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: None,
            permission: match (self.deny, self.allow) {
                (true, _) => Some(AclPermission::Deny),
                (false, true) => Some(AclPermission::Allow),
                (false, false) => None,
            },
        };
        match self.operation.as_slice() {
            [] => vec![base],
            operations => operations
                .iter()
                .map(|&op| AclFilter {
                    operation: Some(op),
                    ..base.clone()
                })
                .collect(),
        }
    }
}

fn parse_principal(text: &str) -> Result<String, String> {
    match text.strip_prefix(USER_PRINCIPAL_PREFIX) {
        Some(name) if !name.is_empty() => Ok(text.to_owned()),
        _ => Err(format!(
            "a principal is {USER_PRINCIPAL_PREFIX}NAME (or {USER_PRINCIPAL_PREFIX}* for every \
             principal), not {text:?}"
        )),
    }
}

fn parse_operation(text: &str) -> Result<AclOperation, String> {
    text.trim().parse().map_err(|e| format!("{e}"))
}

fn parse_host(text: &str) -> Result<String, String> {
    match text == "*" || text.parse::<IpAddr>().is_ok() {
        true => Ok(text.to_owned()),
        false => Err(format!("{text:?} is not an IP address or *")),
    }
}

/// A binding as `--format json` prints it.
#[derive(Debug, Serialize)]
struct BindingJson<'a> {
    principal: &'a str,
    permission: &'static str,
    operation: &'static str,
    resource_type: &'static str,
    resource_name: &'a str,
    pattern_type: &'static str,
    host: &'a str,
}

impl<'a> From<&'a AclBinding> for BindingJson<'a> {
    fn from(acl: &'a AclBinding) -> Self {
        BindingJson {
            principal: &acl.principal,
            permission: acl.permission.as_str(),
            operation: acl.operation.as_str(),
            resource_type: acl.resource_type.as_str(),
            resource_name: &acl.resource_name,
            pattern_type: acl.pattern_type.as_str(),
            host: &acl.host,
        }
    }
}

/// Runs a `weir acl` subcommand.
pub async fn run(args: AclArgs) -> anyhow::Result<()> {
    // Everything that can be checked without the broker is checked first.
    let command = match args.command {
        AclCommand::Add(add) => {
            let (resource_type, resource_name) =
                add.resource.resource().expect("clap requires a resource");
            if add.resource.prefixed && resource_type == AclResourceType::Cluster {
                return Err(UsageError("--prefixed does not apply to --cluster".to_owned()).into());
            }
            let pattern_type = match add.resource.prefixed {
                true => AclPatternType::Prefixed,
                false => AclPatternType::Literal,
            };
            let mut operations = add.operation;
            operations.sort_unstable();
            operations.dedup();
            let bindings = operations
                .into_iter()
                .map(|operation| AclBinding {
                    resource_type,
                    resource_name: resource_name.clone(),
                    pattern_type,
                    principal: add.principal.clone(),
                    host: add.host.clone().unwrap_or_else(|| "*".to_owned()),
                    operation,
                    permission: match add.deny {
                        true => AclPermission::Deny,
                        false => AclPermission::Allow,
                    },
                })
                .collect();
            Validated::Add(bindings)
        }
        AclCommand::List(filter) => Validated::List(filter.filters()),
        AclCommand::Remove { filter, all } => {
            let filters = filter.filters();
            let empty = filters.iter().all(AclFilter::is_empty);
            match (empty, all) {
                (true, false) => {
                    return Err(UsageError(
                        "no filter given: that would remove every ACL binding; give \
                         --principal, --operation, a resource, --host, --deny or --allow, or \
                         --all to remove them all"
                            .to_owned(),
                    )
                    .into());
                }
                (false, true) => {
                    return Err(UsageError(
                        "--all removes every ACL binding and takes no filter options".to_owned(),
                    )
                    .into());
                }
                _ => Validated::Remove(filters),
            }
        }
    };
    let admin = Admin::connect_with(&args.brokers.list(), args.brokers.connect_options()?)
        .await
        .context("connecting to the broker")?;
    let format = args.format;
    let mut out = std::io::stdout().lock();
    match command {
        Validated::Add(bindings) => {
            admin
                .create_acls(&bindings)
                .await
                .context("adding ACL bindings")?;
            print_bindings(&mut out, format, Some("added"), &bindings)?;
        }
        Validated::List(filters) => {
            let mut bindings = Vec::new();
            for filter in &filters {
                bindings.extend(
                    admin
                        .list_acls(filter)
                        .await
                        .context("listing ACL bindings")?,
                );
            }
            bindings.sort();
            bindings.dedup();
            print_bindings(&mut out, format, None, &bindings)?;
        }
        Validated::Remove(filters) => {
            let removed: Vec<AclBinding> = admin
                .delete_acls(&filters)
                .await
                .context("removing ACL bindings")?
                .into_iter()
                .flatten()
                .collect();
            if removed.is_empty() && format == Format::Text {
                eprintln!("no ACL binding matched: nothing was removed");
            }
            print_bindings(&mut out, format, Some("removed"), &removed)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// A `weir acl` command after its checks.
enum Validated {
    Add(Vec<AclBinding>),
    List(Vec<AclFilter>),
    Remove(Vec<AclFilter>),
}

/// Prints `bindings`: a table, or a JSON array; with a `change` (`added`, `removed`), a
/// line saying it before the table, or a JSON object with the array under that key.
fn print_bindings(
    out: &mut impl Write,
    format: Format,
    change: Option<&str>,
    bindings: &[AclBinding],
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            let list: Vec<BindingJson<'_>> = bindings.iter().map(BindingJson::from).collect();
            match change {
                None => serde_json::to_writer(&mut *out, &list)?,
                Some(what) => serde_json::to_writer(&mut *out, &serde_json::json!({ what: list }))?,
            }
            writeln!(out)?;
        }
        Format::Text => {
            if bindings.is_empty() && change.is_some() {
                return Ok(());
            }
            let rows: Vec<[String; 6]> = bindings
                .iter()
                .map(|b| {
                    [
                        b.principal.clone(),
                        b.permission.as_str().to_uppercase(),
                        b.operation.to_string(),
                        format!("{}:{}", b.resource_type, b.resource_name),
                        b.pattern_type.to_string(),
                        b.host.clone(),
                    ]
                })
                .collect();
            let header = [
                "PRINCIPAL",
                "PERMISSION",
                "OPERATION",
                "RESOURCE",
                "PATTERN",
                "HOST",
            ];
            let widths: Vec<usize> = (0..header.len())
                .map(|i| {
                    rows.iter()
                        .map(|r| r[i].len())
                        .chain([header[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: &[&str]| {
                cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
            };
            if let Some(what) = change {
                writeln!(out, "{what} {} binding(s):", bindings.len())?;
            }
            writeln!(out, "{}", line(&header))?;
            for row in &rows {
                let cells: Vec<&str> = row.iter().map(String::as_str).collect();
                writeln!(out, "{}", line(&cells))?;
            }
        }
    }
    Ok(())
}

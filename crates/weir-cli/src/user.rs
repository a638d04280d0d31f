//! `weir user`: create (or change the password of), delete and list users, the SCRAM
//! credentials Kafka clients authenticate with. The password is read here and salted by
//! the client library: only the salt and the salted password reach the broker.
//! Text output is aligned columns; `--format json` prints one JSON document on stdout.

use std::io::{BufRead, IsTerminal, Read, Write};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use weir_client::{Admin, ScramMechanism, UserInfo};
use weir_security::scram::{
    DEFAULT_ITERATIONS, MAX_ITERATIONS, MAX_PASSWORD_BYTES, MIN_ITERATIONS,
};

use crate::UsageError;
use crate::brokers::BrokerArgs;
use crate::output::Format;

const EXAMPLES: &str = "\
Examples:
  weir user create alice                         # asks for the password twice
  printf '%s\\n' \"$ALICE_PASSWORD\" | weir user create alice --mechanism SCRAM-SHA-512
  weir user list
  weir user list alice bob --format json
  weir user delete alice --mechanism SCRAM-SHA-256   # keeps her SCRAM-SHA-512 credential
  weir user delete alice

A user is a SCRAM credential (SCRAM-SHA-256, SCRAM-SHA-512, or both) kept in the
cluster's metadata; its principal, which ACLs name, is User:NAME (see `weir acl`).
Creating a user that exists sets a new password. Changing users needs the Alter
operation on the cluster, listing them Describe.";

const CREATE_HELP: &str = "\
Examples:
  weir user create alice                         # asks for the password twice, no echo
  printf '%s\\n' \"$ALICE_PASSWORD\" | weir user create alice
  weir user create svc-billing --mechanism SCRAM-SHA-512 --iterations 16384 < password.txt

When stdin is not a terminal the password is its first line (without the line end).
The password is salted here: only the salt and the salted password (as good as the
password to SCRAM: use TLS) reach the broker. Creating a user that exists replaces
the credentials named by --mechanism and keeps its others.";

/// Manage users (SCRAM credentials).
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
    // After the subcommands' own options in their help.
    #[command(flatten, next_display_order = 100)]
    brokers: BrokerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user, or set a new password for one: reads the password from stdin, or
    /// asks for it on a terminal.
    #[command(after_help = CREATE_HELP)]
    Create {
        /// User name (its principal is User:NAME).
        name: String,
        /// The SCRAM mechanisms to make credentials for: SCRAM-SHA-256, SCRAM-SHA-512,
        /// or all.
        #[arg(long, value_name = "MECHANISM", default_value = "all", value_parser = parse_mechanisms)]
        mechanism: Mechanisms,
        #[arg(
            long,
            value_name = "N",
            default_value_t = DEFAULT_ITERATIONS,
            help = format!("PBKDF2 iterations of the credentials, {MIN_ITERATIONS} to {MAX_ITERATIONS}"),
            value_parser = clap::value_parser!(u32).range(i64::from(MIN_ITERATIONS)..=i64::from(MAX_ITERATIONS))
        )]
        iterations: u32,
    },
    /// Delete a user (every credential), or only its credential for one mechanism.
    Delete {
        /// User name.
        name: String,
        /// Remove only this mechanism's credential (SCRAM-SHA-256 or SCRAM-SHA-512).
        #[arg(long, value_name = "MECHANISM", value_parser = parse_mechanism)]
        mechanism: Option<ScramMechanism>,
    },
    /// List users with their credentials' mechanisms and iterations (never a key).
    List {
        /// Only these users [default: every user].
        names: Vec<String>,
    },
}

/// `--mechanism` of `weir user create`.
#[derive(Debug, Clone)]
struct Mechanisms(Vec<ScramMechanism>);

fn parse_mechanism(text: &str) -> Result<ScramMechanism, String> {
    ScramMechanism::from_name(&text.to_ascii_uppercase())
        .ok_or_else(|| format!("{text:?} is not SCRAM-SHA-256 or SCRAM-SHA-512"))
}

fn parse_mechanisms(text: &str) -> Result<Mechanisms, String> {
    match text.eq_ignore_ascii_case("all") {
        true => Ok(Mechanisms(ScramMechanism::ALL.to_vec())),
        false => parse_mechanism(text)
            .map(|m| Mechanisms(vec![m]))
            .map_err(|e| format!("{e}, or all")),
    }
}

#[derive(Debug, Serialize)]
struct UserJson<'a> {
    user: &'a str,
    credentials: Vec<CredentialJson<'a>>,
}

#[derive(Debug, Serialize)]
struct CredentialJson<'a> {
    mechanism: &'a str,
    iterations: u32,
}

/// Runs a `weir user` subcommand.
pub async fn run(args: UserArgs) -> anyhow::Result<()> {
    // The password is read before connecting: a typo in it should not wait on a broker.
    let password = match &args.command {
        UserCommand::Create { name, .. } => Some(read_password(name)?),
        _ => None,
    };
    let admin = Admin::connect_with(&args.brokers.list(), args.brokers.connect_options()?)
        .await
        .context("connecting to the broker")?;
    let format = args.format;
    let mut out = std::io::stdout().lock();
    match args.command {
        UserCommand::Create {
            name,
            mechanism: Mechanisms(mechanisms),
            iterations,
        } => {
            let password = password.expect("read above");
            for &mechanism in &mechanisms {
                admin
                    .upsert_user(&name, &password, mechanism, iterations)
                    .await
                    .with_context(|| {
                        format!("setting the {} credential of user {name}", mechanism.name())
                    })?;
            }
            let names: Vec<&str> = mechanisms.iter().map(|m| m.name()).collect();
            match format {
                Format::Text => writeln!(
                    out,
                    "user {name}: set {} ({iterations} iterations)",
                    names.join(", ")
                )?,
                Format::Json => {
                    let credentials = names
                        .iter()
                        .map(|m| CredentialJson {
                            mechanism: m,
                            iterations,
                        })
                        .collect();
                    let user = UserJson {
                        user: &name,
                        credentials,
                    };
                    serde_json::to_writer(&mut out, &user)?;
                    writeln!(out)?;
                }
            }
        }
        UserCommand::Delete { name, mechanism } => {
            let removed = admin
                .delete_user(&name, mechanism)
                .await
                .with_context(|| format!("deleting user {name}"))?;
            match format {
                Format::Text if mechanism.is_none() => {
                    writeln!(out, "deleted user {name} ({})", removed.join(", "))?
                }
                Format::Text => writeln!(out, "user {name}: removed {}", removed.join(", "))?,
                Format::Json => writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "user": name, "removed": removed })
                )?,
            }
        }
        UserCommand::List { names } => {
            let users = admin.list_users(&names).await.context("listing users")?;
            print_users(&mut out, format, &users)?;
            out.flush()?;
            // Users named that do not exist fail the command, after the others are shown.
            let missing: Vec<String> = users
                .iter()
                .filter_map(|u| u.credentials.as_ref().err().map(|e| e.to_string()))
                .collect();
            if !missing.is_empty() {
                anyhow::bail!("{}", missing.join("; "));
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// The password of a new credential: stdin's first line when stdin is not a terminal,
/// else asked for twice on the terminal without echo.
fn read_password(user: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {user}: "))
            .context("reading the password")?;
        let again = rpassword::prompt_password(format!("Password for {user} (again): "))
            .context("reading the password")?;
        if first != again {
            return Err(UsageError("the two passwords differ; nothing was changed".into()).into());
        }
        first
    } else {
        // A line longer than any password allowed is not read further than needed to
        // know that.
        let mut line = String::new();
        stdin
            .lock()
            .take(MAX_PASSWORD_BYTES as u64 + 3)
            .read_line(&mut line)
            .context("reading the password from stdin")?;
        let line = line.strip_suffix('\n').unwrap_or(&line);
        line.strip_suffix('\r').unwrap_or(line).to_owned()
    };
    if password.is_empty() {
        return Err(UsageError(
            "the password is empty: give it on stdin (one line) or at the prompt".into(),
        )
        .into());
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(UsageError(format!(
            "the password is longer than {MAX_PASSWORD_BYTES} bytes"
        ))
        .into());
    }
    Ok(password)
}

fn print_users(out: &mut impl Write, format: Format, users: &[UserInfo]) -> anyhow::Result<()> {
    let found = users
        .iter()
        .filter_map(|u| Some((&u.user, u.credentials.as_ref().ok()?)));
    match format {
        Format::Json => {
            let list: Vec<UserJson<'_>> = found
                .map(|(user, credentials)| UserJson {
                    user,
                    credentials: credentials
                        .iter()
                        .map(|c| CredentialJson {
                            mechanism: &c.mechanism,
                            iterations: c.iterations,
                        })
                        .collect(),
                })
                .collect();
            serde_json::to_writer(&mut *out, &list)?;
            writeln!(out)?;
        }
        Format::Text => {
            let width = users.iter().map(|u| u.user.len()).max().unwrap_or(0).max(4);
            writeln!(out, "{:<width$}  CREDENTIALS", "USER")?;
            for (user, credentials) in found {
                let credentials: Vec<String> = credentials
                    .iter()
                    .map(|c| format!("{} ({} iterations)", c.mechanism, c.iterations))
                    .collect();
                writeln!(out, "{user:<width$}  {}", credentials.join(", "))?;
            }
        }
    }
    Ok(())
}

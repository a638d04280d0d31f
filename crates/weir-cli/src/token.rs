//! `weir token`: make, list and revoke API tokens, which authenticate as their owner
//! (`--token` / WEIR_TOKEN for the CLI, `Authorization: Bearer` for the console). A
//! token's text is printed once, by `create`; the cluster keeps only its secret's
//! SHA-256. Text output is aligned columns; `--format json` prints one JSON document.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use weir_client::{Admin, TokenInfo};

use crate::brokers::BrokerArgs;
use crate::output::Format;

const EXAMPLES: &str = "\
Examples:
  weir token create ci --expires 30d --description 'deploy pipeline'
  weir token list
  weir token list ci --format json
  weir token revoke 3f9c0a5be2d14c77

  WEIR_TOKEN=weir_3f9c... weir topic list --tls-ca certs/ca.pem   # use one
  curl --cacert certs/ca.pem -H \"Authorization: Bearer $WEIR_TOKEN\" https://localhost:9293/console/

A token authenticates as its owner (User:NAME, whose ACLs apply) on gRPC and on the
admin HTTP listener (the console). A user may make, list and revoke its own tokens
(not while authenticated by a token); other users' need Alter (list: Describe) on the
cluster. Deleting a user revokes its tokens.";

const CREATE_HELP: &str = "\
Examples:
  weir token create ci --expires 30d --description 'deploy pipeline'
  weir token create ops --expires 12h
  weir token create alice                         # until revoked

Prints the token (weir_<id>_<secret>) once, on stdout: it cannot be shown again.
--expires takes minutes (m), hours (h) or days (d), at most 3650d.";

/// Manage API tokens (bearer tokens for gRPC and the console).
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
    // After the subcommands' own options in their help.
    #[command(flatten, next_display_order = 100)]
    brokers: BrokerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t, global = true)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token for a user and print it (once).
    #[command(after_help = CREATE_HELP)]
    Create {
        /// The user the token authenticates as (an existing user). Positional: --user is
        /// who runs the command.
        #[arg(value_name = "USER")]
        owner: String,
        /// How long the token is accepted: e.g. 90m, 12h, 30d [default: until revoked].
        #[arg(long, value_name = "DURATION", value_parser = parse_lifetime)]
        expires: Option<Duration>,
        /// What the token is for (shown by `list`), at most 256 bytes.
        #[arg(long, value_name = "TEXT", default_value = "")]
        description: String,
    },
    /// List tokens: id, owner, when made, when they expire (never a secret).
    List {
        /// Only this user's tokens [default: every token you may see].
        #[arg(value_name = "USER")]
        owner: Option<String>,
    },
    /// Revoke a token: it is never accepted again.
    Revoke {
        /// The token's id (the 16 hex characters after weir_, as `list` shows).
        id: String,
    },
}

/// A lifetime: a number and a unit, m, h or d.
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a lifetime: use e.g. 90m, 12h, 30d"))?;
    let seconds = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        other => return Err(format!("unknown unit {other:?}: use m, h or d")),
    };
    match Duration::from_secs(number.saturating_mul(seconds)) {
        d if d.is_zero() => Err("a token's lifetime must be above zero".into()),
        d if d > weir_broker_lifetime() => Err("a token may last at most 3650d".into()),
        d => Ok(d),
    }
}

/// The broker's limit (`weir_broker::tokens::MAX_TOKEN_LIFETIME`), checked here too so
/// a typo is a usage error.
fn weir_broker_lifetime() -> Duration {
    Duration::from_secs(3650 * 86_400)
}

#[derive(Debug, Serialize)]
struct TokenJson<'a> {
    id: &'a str,
    user: &'a str,
    created_ms: i64,
    expires_ms: Option<i64>,
    description: &'a str,
    expired: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

impl<'a> TokenJson<'a> {
    fn of(t: &'a TokenInfo, token: Option<&'a str>) -> TokenJson<'a> {
        TokenJson {
            id: &t.id,
            user: &t.user,
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
            description: &t.description,
            expired: t.expired,
            token,
        }
    }
}

/// Runs a `weir token` subcommand.
pub async fn run(args: TokenArgs) -> anyhow::Result<()> {
    let admin = Admin::connect_with(&args.brokers.list(), args.brokers.connect_options()?)
        .await
        .context("connecting to the broker")?;
    let format = args.format;
    let mut out = std::io::stdout().lock();
    match args.command {
        TokenCommand::Create {
            owner: user,
            expires,
            description,
        } => {
            let created = admin
                .create_token(&user, expires, &description)
                .await
                .with_context(|| format!("making a token for user {user}"))?;
            match format {
                Format::Text => {
                    writeln!(out, "{}", created.token)?;
                    eprintln!(
                        "token {} for user {user}{}: shown once, keep it secret",
                        created.info.id,
                        match created.info.expires_ms {
                            Some(ms) => format!(", expires {}", timestamp(ms)),
                            None => ", until revoked".to_owned(),
                        }
                    );
                }
                Format::Json => {
                    serde_json::to_writer(
                        &mut out,
                        &TokenJson::of(&created.info, Some(&created.token)),
                    )?;
                    writeln!(out)?;
                }
            }
        }
        TokenCommand::List { owner: user } => {
            let tokens = admin
                .list_tokens(user.as_deref())
                .await
                .context("listing tokens")?;
            match format {
                Format::Text => {
                    let mut rows = vec![[
                        "ID".to_owned(),
                        "USER".to_owned(),
                        "CREATED".to_owned(),
                        "EXPIRES".to_owned(),
                        "DESCRIPTION".to_owned(),
                    ]];
                    rows.extend(tokens.iter().map(|t| {
                        [
                            t.id.clone(),
                            t.user.clone(),
                            timestamp(t.created_ms),
                            match (t.expires_ms, t.expired) {
                                (Some(ms), false) => timestamp(ms),
                                (Some(ms), true) => format!("{} (expired)", timestamp(ms)),
                                (None, _) => "never".to_owned(),
                            },
                            t.description.clone(),
                        ]
                    }));
                    let widths: Vec<usize> = (0..5)
                        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
                        .collect();
                    for row in &rows {
                        let line: Vec<String> = row
                            .iter()
                            .zip(&widths)
                            .map(|(cell, w)| format!("{cell:<w$}"))
                            .collect();
                        writeln!(out, "{}", line.join("  ").trim_end())?;
                    }
                }
                Format::Json => {
                    let listed: Vec<TokenJson<'_>> =
                        tokens.iter().map(|t| TokenJson::of(t, None)).collect();
                    serde_json::to_writer(&mut out, &listed)?;
                    writeln!(out)?;
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let revoked = admin
                .revoke_token(&id)
                .await
                .with_context(|| format!("revoking token {id}"))?;
            match format {
                Format::Text => {
                    writeln!(out, "revoked token {} of user {}", revoked.id, revoked.user)?
                }
                Format::Json => {
                    serde_json::to_writer(&mut out, &TokenJson::of(&revoked, None))?;
                    writeln!(out)?;
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// Milliseconds since the Unix epoch as UTC `YYYY-MM-DD HH:MM:SS`.
fn timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_in_minutes_hours_and_days() {
        assert_eq!(parse_lifetime("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_lifetime("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_lifetime("30d"), Ok(Duration::from_secs(2_592_000)));
        for bad in ["", "30", "0d", "3651d", "1w", "d", "-1d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(1_709_210_096_000), "2024-02-29 12:34:56");
    }
}

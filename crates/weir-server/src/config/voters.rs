//! The controller voters: `id@host:port` each, checked one by one and together.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::{MAX_CONTROLLER_VOTERS, ServerConfigError, parse_host_port};

/// One controller voter: `id@host:port`, the address its internal listener is reached at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Voter {
    /// The voter's node id (0 or more).
    pub id: i32,
    /// `host:port`; IPv6 addresses in brackets.
    pub addr: String,
}

impl FromStr for Voter {
    type Err = ServerConfigError;

    fn from_str(spec: &str) -> Result<Voter, ServerConfigError> {
        let bad = |reason: String| ServerConfigError::BadVoter {
            spec: spec.to_owned(),
            reason,
        };
        let spec = spec.trim();
        let Some((id, addr)) = spec.split_once('@') else {
            return Err(bad("no '@' between the id and the address".into()));
        };
        let id: i32 = id
            .parse()
            .map_err(|_| bad(format!("the id {id:?} is not a number")))?;
        if id < 0 {
            return Err(bad(format!(
                "the id {id} is negative; node ids are 0 or more"
            )));
        }
        parse_host_port(addr).map_err(bad)?;
        Ok(Voter {
            id,
            addr: addr.to_owned(),
        })
    }
}

impl TryFrom<String> for Voter {
    type Error = ServerConfigError;

    fn try_from(spec: String) -> Result<Voter, ServerConfigError> {
        spec.parse()
    }
}

impl fmt::Display for Voter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr)
    }
}

/// Unique ids, unique addresses, at most [`MAX_CONTROLLER_VOTERS`], each well formed
/// (a `Voter` built in code has not been through `FromStr`).
pub(super) fn validate_voters(voters: &[Voter]) -> Result<(), ServerConfigError> {
    if voters.len() > MAX_CONTROLLER_VOTERS {
        return Err(ServerConfigError::TooManyVoters {
            count: voters.len(),
            max: MAX_CONTROLLER_VOTERS,
        });
    }
    let mut ids = BTreeMap::new();
    let mut addrs = BTreeMap::new();
    for voter in voters {
        let checked: Voter = voter.to_string().parse()?;
        if let Some(first) = ids.insert(voter.id, voter) {
            return Err(ServerConfigError::DuplicateVoterId {
                id: voter.id,
                first: first.to_string(),
                second: voter.to_string(),
            });
        }
        // Host names compare case-insensitively.
        if let Some(first) = addrs.insert(checked.addr.to_ascii_lowercase(), voter) {
            return Err(ServerConfigError::DuplicateVoterAddr {
                first: first.to_string(),
                second: voter.to_string(),
            });
        }
    }
    Ok(())
}

//! API tokens administered (`weir token`, the gRPC Admin calls CreateToken, ListTokens,
//! RevokeToken): a token is made here, on the broker, from the system's randomness (so
//! every token's secret has the 256 random bits that let the cluster keep only its
//! SHA-256), recorded in the metadata log without its secret, and its text returned once.
//! Checking a presented token is `authn::check_token`.
//!
//! Who may do what (`docs/security.md` § API tokens), as Kafka's delegation tokens:
//! - a user may make tokens for itself, list its own and revoke its own, except that a
//!   request authenticated by a token may make none (a stolen token cannot be turned
//!   into a longer-lived one);
//! - making or revoking another user's tokens needs Alter on the cluster, listing
//!   another user's (or every) token Describe, as for users.

use std::time::Duration;

use weir_cluster::security::{Operation, ResourceType, validate_user_name};
use weir_cluster::tokens::{MAX_TOKEN_DESCRIPTION_BYTES, StoredToken};
use weir_security::token::NewToken;

use crate::context::Principal;
use crate::{Broker, BrokerError, Reason, RequestContext, now_ms};

/// The longest a token may be made to last (ten years); without an expiry it lasts
/// until revoked.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A token as listed: never its secret nor its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenListing {
    pub id: String,
    pub owner: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub description: String,
    /// Whether it had expired when listed.
    pub expired: bool,
}

impl TokenListing {
    fn of(token: &StoredToken, now_ms: i64) -> TokenListing {
        TokenListing {
            id: token.id.clone(),
            owner: token.owner.clone(),
            created_ms: token.created_ms,
            expires_ms: token.expires_ms,
            description: token.description.clone(),
            expired: token.expired(now_ms),
        }
    }
}

/// A token just made, with its text: shown once, kept nowhere. `Debug` leaves it out.
#[derive(Clone)]
pub struct CreatedToken {
    pub listing: TokenListing,
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("listing", &self.listing)
            .finish_non_exhaustive()
    }
}

/// Whether the request's principal is `user`.
fn is(ctx: &RequestContext, user: &str) -> bool {
    matches!(&ctx.principal, Principal::User(name) if name == user)
}

/// Makes a token for `owner`, lasting `expires_in` (until revoked for `None`).
pub async fn create_token(
    broker: &Broker,
    ctx: &RequestContext,
    owner: String,
    expires_in: Option<Duration>,
    description: String,
) -> Result<CreatedToken, BrokerError> {
    if ctx.authenticated_by_token {
        broker
            .authorizer()
            .audit()
            .denied(ctx, "CreateToken", "a token for a token");
        return Err(BrokerError::new(
            Reason::NotAuthorized {
                resource_type: ResourceType::Cluster,
            },
            "a request authenticated by an API token may not make tokens: authenticate with a \
             password or a client certificate",
        ));
    }
    if !is(ctx, &owner) {
        broker.authorize_cluster(ctx, Operation::Alter)?;
    }
    validate_user_name(&owner).map_err(BrokerError::invalid)?;
    if description.len() > MAX_TOKEN_DESCRIPTION_BYTES {
        return Err(BrokerError::invalid(format!(
            "the description is {} bytes, more than {MAX_TOKEN_DESCRIPTION_BYTES}",
            description.len()
        )));
    }
    let expires_in = match expires_in {
        Some(d) if d.is_zero() || d > MAX_TOKEN_LIFETIME => {
            return Err(BrokerError::invalid(format!(
                "a token's lifetime must be above zero and at most {} days, not {d:?}",
                MAX_TOKEN_LIFETIME.as_secs() / 86_400
            )));
        }
        other => other,
    };
    let created_ms = now_ms();
    let new = NewToken::generate();
    let stored = StoredToken {
        id: new.id.clone(),
        owner,
        created_ms,
        expires_ms: expires_in.map(|d| created_ms.saturating_add(d.as_millis() as i64)),
        description,
        secret_sha256: new.secret_sha256.to_vec(),
    };
    let listing = TokenListing::of(&stored, created_ms);
    broker.registry().cluster().create_token(stored).await?;
    Ok(CreatedToken {
        listing,
        token: new.token,
    })
}

/// The tokens of `owner` (every token for `None`), sorted by owner then creation.
pub fn list_tokens(
    broker: &Broker,
    ctx: &RequestContext,
    owner: Option<&str>,
) -> Result<Vec<TokenListing>, BrokerError> {
    let own_only = match owner {
        Some(user) if is(ctx, user) => false,
        _ if broker.may(
            ctx,
            Operation::Describe,
            ResourceType::Cluster,
            weir_cluster::security::CLUSTER_RESOURCE_NAME,
        ) =>
        {
            false
        }
        // Without Describe: a user's own tokens, when it asked for no one in particular.
        None if matches!(ctx.principal, Principal::User(_)) => true,
        _ => {
            broker.authorize_cluster(ctx, Operation::Describe)?;
            false
        }
    };
    let image = broker.registry().cluster().image();
    let now = now_ms();
    let mut listed: Vec<TokenListing> = image
        .tokens()
        .filter(|t| owner.is_none_or(|o| t.owner == o))
        .filter(|t| !own_only || is(ctx, &t.owner))
        .map(|t| TokenListing::of(t, now))
        .collect();
    listed.sort_by(|a, b| (&a.owner, a.created_ms, &a.id).cmp(&(&b.owner, b.created_ms, &b.id)));
    Ok(listed)
}

/// Revokes the token `id`; the token as it was.
pub async fn revoke_token(
    broker: &Broker,
    ctx: &RequestContext,
    id: &str,
) -> Result<TokenListing, BrokerError> {
    let owner = broker
        .registry()
        .cluster()
        .image()
        .token(id)
        .map(|t| t.owner.clone());
    // Someone else's token, or none: only with Alter (so a token's existence does not
    // leak to whoever may not revoke it).
    if !owner.as_deref().is_some_and(|o| is(ctx, o)) {
        broker.authorize_cluster(ctx, Operation::Alter)?;
    }
    let revoked = broker
        .registry()
        .cluster()
        .revoke_token(id.to_owned())
        .await?;
    Ok(TokenListing::of(&revoked, now_ms()))
}

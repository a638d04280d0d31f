//! API tokens as the admin client makes, lists and revokes them (`Admin::create_token`,
//! `list_tokens`, `revoke_token`); a client presents one with
//! [`ClientTls::with_token`](crate::ClientTls::with_token).

use std::time::Duration;

use weir_proto::v1 as pb;

use crate::admin::Admin;
use crate::error::ClientError;

/// One API token as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// 16 hex characters; the token's text is `weir_<id>_<secret>`.
    pub id: String,
    /// The user it authenticates as.
    pub user: String,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// When it stops being accepted, in milliseconds since the Unix epoch; `None`: never.
    pub expires_ms: Option<i64>,
    /// What it is for, as given when it was made.
    pub description: String,
    /// Whether it had expired when listed.
    pub expired: bool,
}

impl TokenInfo {
    fn from_proto(t: pb::TokenDescription) -> TokenInfo {
        TokenInfo {
            id: t.id,
            user: t.user,
            created_ms: t.created_ms,
            expires_ms: t.expires_ms,
            description: t.description,
            expired: t.expired,
        }
    }
}

/// A token just made and its text, shown this once. `Debug` leaves the text out.
#[derive(Clone)]
pub struct CreatedToken {
    /// The token as [`Admin::list_tokens`] lists it.
    pub info: TokenInfo,
    /// `weir_<id>_<secret>`: give it to the client that is to use it; it cannot be shown
    /// again.
    pub token: String,
}

impl std::fmt::Debug for CreatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedToken")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Makes an API token for `user`, accepted for `expires_in` (until revoked for
    /// `None`) (`CreateToken`).
    pub async fn create_token(
        &self,
        user: &str,
        expires_in: Option<Duration>,
        description: &str,
    ) -> Result<CreatedToken, ClientError> {
        let answer = self
            .admin
            .clone()
            .create_token(pb::CreateTokenRequest {
                user: user.to_owned(),
                expires_in_ms: expires_in.map(|d| d.as_millis().min(u64::MAX as u128) as u64),
                description: description.to_owned(),
            })
            .await?
            .into_inner();
        let info = answer
            .token
            .map(TokenInfo::from_proto)
            .ok_or_else(|| no_token("CreateToken"))?;
        Ok(CreatedToken {
            info,
            token: answer.secret_token,
        })
    }

    /// The API tokens of `user`, or every token the caller may see (`ListTokens`).
    pub async fn list_tokens(&self, user: Option<&str>) -> Result<Vec<TokenInfo>, ClientError> {
        Ok(self
            .admin
            .clone()
            .list_tokens(pb::ListTokensRequest {
                user: user.map(str::to_owned),
            })
            .await?
            .into_inner()
            .tokens
            .into_iter()
            .map(TokenInfo::from_proto)
            .collect())
    }

    /// Revokes the API token `id` (`RevokeToken`); the token as it was.
    /// [`ClientError::NotFound`] if there is no such token.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenInfo, ClientError> {
        let answer = self
            .admin
            .clone()
            .revoke_token(pb::RevokeTokenRequest { id: id.to_owned() })
            .await?
            .into_inner();
        answer
            .token
            .map(TokenInfo::from_proto)
            .ok_or_else(|| no_token("RevokeToken"))
    }
}

fn no_token(call: &str) -> ClientError {
    ClientError::Rpc {
        code: tonic::Code::Internal,
        message: format!("the broker's {call} answer has no token description"),
    }
}

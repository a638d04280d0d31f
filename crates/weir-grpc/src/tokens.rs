//! The API token calls of the Admin service (CreateToken, ListTokens, RevokeToken):
//! decode, call `weir_broker::tokens` (which authorises and holds every rule and
//! limit), encode. The token's text appears only in CreateToken's answer.

use std::time::Duration;

use tonic::Status;
use weir_broker::RequestContext;
use weir_broker::tokens::{self as core, TokenListing};
use weir_proto::v1 as pb;

use crate::Broker;
use crate::status::broker_status;

pub(crate) async fn create_token(
    broker: &Broker,
    ctx: &RequestContext,
    req: pb::CreateTokenRequest,
) -> Result<pb::CreateTokenResponse, Status> {
    let created = core::create_token(
        &broker.core,
        ctx,
        req.user,
        req.expires_in_ms.map(Duration::from_millis),
        req.description,
    )
    .await
    .map_err(broker_status)?;
    Ok(pb::CreateTokenResponse {
        token: Some(description(created.listing)),
        secret_token: created.token,
    })
}

pub(crate) fn list_tokens(
    broker: &Broker,
    ctx: &RequestContext,
    req: pb::ListTokensRequest,
) -> Result<pb::ListTokensResponse, Status> {
    let tokens = core::list_tokens(&broker.core, ctx, req.user.as_deref())
        .map_err(broker_status)?
        .into_iter()
        .map(description)
        .collect();
    Ok(pb::ListTokensResponse { tokens })
}

pub(crate) async fn revoke_token(
    broker: &Broker,
    ctx: &RequestContext,
    req: pb::RevokeTokenRequest,
) -> Result<pb::RevokeTokenResponse, Status> {
    let revoked = core::revoke_token(&broker.core, ctx, &req.id)
        .await
        .map_err(broker_status)?;
    Ok(pb::RevokeTokenResponse {
        token: Some(description(revoked)),
    })
}

fn description(t: TokenListing) -> pb::TokenDescription {
    pb::TokenDescription {
        id: t.id,
        user: t.owner,
        created_ms: t.created_ms,
        expires_ms: t.expires_ms,
        description: t.description,
        expired: t.expired,
    }
}

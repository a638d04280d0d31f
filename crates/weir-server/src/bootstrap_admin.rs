//! The bootstrap admin (`admin_user` / `WEIR_ADMIN_USER` with `WEIR_ADMIN_PASSWORD`): the
//! first operator's way into a secured cluster. Once the controller answers, the user is
//! given SCRAM-SHA-256 and SCRAM-SHA-512 credentials for the password, unless it already
//! has ones the password verifies with, so every broker of a cluster may be started with
//! the same settings and a restart changes nothing. The user is a super user
//! ([`ServerConfig::security`](crate::ServerConfig::security)).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weir_security::scram::{DEFAULT_ITERATIONS, ScramCredential, ScramMechanism};

/// How long to wait between attempts while the controller does not answer yet.
const RETRY: Duration = Duration::from_millis(500);
/// After this many failed attempts in a row, one warning says why.
const WARN_AFTER_ATTEMPTS: u32 = 60;

/// Makes `password` `user`'s, in the background, until done or stopping.
pub(crate) fn spawn(
    core: Arc<weir_broker::Broker>,
    user: String,
    password: String,
    mut stopping: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            match ensure(&core, &user, &password).await {
                Ok(changed) => {
                    if changed {
                        tracing::info!(user, "bootstrap admin credentials set");
                    }
                    return;
                }
                Err(e) => {
                    failures += 1;
                    if failures == WARN_AFTER_ATTEMPTS {
                        tracing::warn!(user, error = %e, "cannot set the bootstrap admin's credentials yet; still trying");
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RETRY) => {}
                () = crate::until_stopping(&mut stopping) => return,
            }
        }
    });
}

/// Sets the credentials the password does not verify with; whether it set any.
async fn ensure(
    core: &weir_broker::Broker,
    user: &str,
    password: &str,
) -> Result<bool, weir_broker::BrokerError> {
    let mut changed = false;
    for mechanism in ScramMechanism::ALL {
        let current = weir_broker::security_admin::credential(core, user, mechanism);
        if current.is_some_and(|c| c.verify_password(password)) {
            continue;
        }
        let credential = ScramCredential::new(mechanism, password, DEFAULT_ITERATIONS)
            .map_err(|e| weir_broker::BrokerError::invalid(e.to_string()))?;
        core.registry()
            .cluster()
            .upsert_scram_credential(
                user.to_owned(),
                weir_broker::security_admin::stored(&credential),
            )
            .await?;
        changed = true;
    }
    Ok(changed)
}

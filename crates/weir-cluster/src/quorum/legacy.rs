//! Migration of a data directory from before replication: its `metadata.weir` becomes
//! the first committed entry of a fresh single-voter quorum (`docs/replication.md` § 1),
//! and is then renamed `metadata.weir.migrated` so it is never applied twice.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};

use crate::controller::MetadataImage;
use crate::metadata::{ClusterMetadata, METADATA_FILE};

use super::error::{QuorumError, StoreError};
use super::handle::Quorum;
use super::state_file;
use super::types::{MetadataEntry, broker_id};

/// What [`Quorum::migrate_legacy`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyMigration {
    /// No `metadata.weir` in the data directory.
    NothingToMigrate,
    /// Its cluster id, topics and partitions were committed as the quorum's image.
    Migrated { topics: usize, renamed_to: PathBuf },
    /// It had been committed already (the node stopped before renaming it): renamed now.
    AlreadyMigrated { renamed_to: PathBuf },
}

/// Elections needed at most before a single voter leads (it elects itself at once; the
/// rest is slack for a slow disk).
const LEADER_WAIT_ELECTIONS: u32 = 10;

impl Quorum {
    /// Migrates `data_dir/metadata.weir`, if there is one, into this quorum. The broker
    /// calls it right after [`Quorum::start`] and before anything proposes records (its
    /// controller would create a new cluster otherwise).
    ///
    /// Only a single-voter quorum migrates (a data directory from before replication is
    /// one node's); and only into an empty image, or one this same migration built
    /// before a crash. Anything else is refused, naming the file.
    pub async fn migrate_legacy(&self, data_dir: &Path) -> Result<LegacyMigration, QuorumError> {
        let path = data_dir.join(METADATA_FILE);
        let load_dir = data_dir.to_path_buf();
        let legacy = tokio::task::spawn_blocking(move || ClusterMetadata::load(&load_dir))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        let Some(legacy) = legacy else {
            return Ok(LegacyMigration::NothingToMigrate);
        };
        if self.voters().len() != 1 {
            return Err(QuorumError::LegacyNeedsSingleVoter {
                path,
                voters: self.voters().len(),
            });
        }

        // Lead, and have applied everything committed, before judging the image.
        let wait =
            Duration::from_millis(self.config().election_timeout_max_ms) * LEADER_WAIT_ELECTIONS;
        self.wait_for_leader(wait).await?;
        match self.raft().ensure_linearizable().await {
            Ok(_) => {}
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                return Err(QuorumError::NotLeader {
                    leader: forward.leader_id.and_then(broker_id),
                });
            }
            Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e))) => {
                unreachable!("a single voter is its own quorum: {e}")
            }
            Err(RaftError::Fatal(fatal)) => return Err(QuorumError::stopped(fatal)),
        }

        let outcome = if *self.image() == MetadataImage::default() {
            let topics = legacy.topics.len();
            let image = MetadataImage::from_legacy(legacy, self.node()).map_err(|source| {
                QuorumError::LegacyInvalid {
                    path: path.clone(),
                    source,
                }
            })?;
            self.propose_entry(MetadataEntry::Legacy(Box::new(image)))
                .await?;
            tracing::info!(path = %path.display(), topics, "metadata.weir migrated into the metadata quorum");
            LegacyMigration::Migrated {
                topics,
                renamed_to: migrated_path(data_dir),
            }
        } else if self.applied().legacy_migrated() {
            LegacyMigration::AlreadyMigrated {
                renamed_to: migrated_path(data_dir),
            }
        } else {
            return Err(QuorumError::LegacyConflict { path });
        };

        let to = migrated_path(data_dir);
        let dir = data_dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            fs::rename(&path, &to).map_err(|e| StoreError::io(&path, e))?;
            state_file::sync_dir(&dir)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
        Ok(outcome)
    }
}

fn migrated_path(data_dir: &Path) -> PathBuf {
    data_dir.join(format!("{METADATA_FILE}.migrated"))
}

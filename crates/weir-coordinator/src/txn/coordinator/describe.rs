//! DescribeTransactions and ListTransactions, read from the applied state.

use super::super::api::*;
use super::super::state::{TxnMetadata, TxnState};
use super::super::{NO_PRODUCER_ID, TxnError};
use super::TxnCoordinator;

impl TxnCoordinator {
    /// DescribeTransactions for one id.
    pub fn describe(&self, transactional_id: &str) -> Result<TxnDescription, TxnError> {
        self.check_active()?;
        Self::check_id(transactional_id)?;
        let entry = self
            .entries
            .get(transactional_id)
            .ok_or(TxnError::TransactionalIdNotFound)?;
        let m = &entry.meta;
        if m.producer_id == NO_PRODUCER_ID {
            return Err(TxnError::TransactionalIdNotFound);
        }
        Ok(TxnDescription {
            transactional_id: m.transactional_id.clone(),
            state: m.state,
            producer_id: m.producer_id,
            producer_epoch: m.producer_epoch,
            timeout_ms: m.timeout_ms,
            start_ms: m.start_ms,
            partitions: m.partitions.iter().cloned().collect(),
        })
    }

    /// ListTransactions: the ids matching `filter`, and the state names it did not know.
    pub fn list(
        &self,
        filter: &ListFilter,
        now: i64,
    ) -> Result<(Vec<TxnListing>, Vec<String>), TxnError> {
        self.check_active()?;
        let unknown: Vec<String> = filter
            .states
            .iter()
            .filter(|s| TxnState::from_name(s).is_none())
            .cloned()
            .collect();
        let listings = self
            .entries
            .values()
            .map(|e| &e.meta)
            .filter(|m| m.producer_id != NO_PRODUCER_ID && m.state != TxnState::Dead)
            .filter(|m| {
                filter.producer_ids.is_empty() || filter.producer_ids.contains(&m.producer_id)
            })
            .filter(|m| filter.states.is_empty() || filter.states.contains(m.state.name()))
            .filter(|m| {
                filter
                    .min_duration_ms
                    .is_none_or(|d| m.start_ms >= 0 && now - m.start_ms > d)
            })
            .map(|m| TxnListing {
                transactional_id: m.transactional_id.clone(),
                producer_id: m.producer_id,
                state: m.state,
            })
            .collect();
        Ok((listings, unknown))
    }

    /// The applied metadata of an id (tests, the shell's metrics).
    pub fn metadata(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.entries.get(transactional_id).map(|e| &e.meta)
    }

    /// How many ids this partition holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

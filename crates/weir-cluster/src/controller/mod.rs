//! The cluster controller: metadata records, the image they build, and the active
//! controller's logic (see `docs/replication.md` § 1).

pub mod records;

//! weir-fuzz's integration tests, one binary as in every crate of the workspace: the
//! replay of every committed fuzz input through its target function (`corpus`).

mod corpus;

//! Printers: kubectl-style tables (of the columns in `twinset_proto::columns`),
//! `describe` layouts, and the Kubernetes YAML/JSON shapes (through
//! `twinset_proto::manifest`).
pub mod claim;
pub mod describe;
pub mod format;
pub mod output;
pub mod service;
pub mod table;
pub mod tabwriter;
pub mod tree;

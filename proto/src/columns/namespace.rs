//! The Namespace columns (printers.go printNamespace).
use super::format;
use super::{Column, AGE, NAME};
use crate::v1::Namespace;
use std::time::SystemTime;

/// Namespace columns: NAME, STATUS, AGE.
pub const COLUMNS: &[Column] = &[
    NAME,
    Column::string("Status", "The namespace's phase: Active or Terminating."),
    AGE,
];

/// The cells of one namespace, matching [`COLUMNS`].
pub fn cells(ns: &Namespace, now: SystemTime) -> Vec<String> {
    let meta = ns.metadata.clone().unwrap_or_default();
    let phase = ns
        .status
        .as_ref()
        .map(|s| s.phase.clone())
        .unwrap_or_default();
    vec![
        meta.name,
        phase,
        format::age_at(&meta.creation_timestamp, now),
    ]
}

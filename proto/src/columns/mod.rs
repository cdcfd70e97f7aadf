//! The table columns of every kind, as kubectl prints them and as kube-apiserver
//! serves them in a `meta.k8s.io/v1` `Table`: one definition per kind, shared by
//! `twinset get` and the control plane's REST API.
//!
//! [`columns`] says what the columns are (kube-apiserver's names, which kubectl
//! upper-cases for its header; priority 1 for those only `-o wide` shows) and
//! [`cells`] computes one object's row, in the same order: the default columns
//! first, then the wide ones.
pub mod claim;
pub mod event;
pub mod format;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod service;
pub mod workload;

use crate::kinds::Kind;
use crate::v1::Object;
use std::time::SystemTime;

/// One column of a kind's table (a `meta.k8s.io/v1` TableColumnDefinition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The column's name as kube-apiserver returns it (`Name`, `Up-to-date`); kubectl's
    /// header is its upper-case form, see [`Column::header`].
    pub name: &'static str,
    /// The OpenAPI type of the cells: `string` or `integer` (an `integer` cell is a
    /// decimal number in [`cells`]).
    pub r#type: &'static str,
    /// `name` for the column that names the object, else empty.
    pub format: &'static str,
    /// What the column shows, for people.
    pub description: &'static str,
    /// 0 for the columns kubectl always shows, 1 for those only `-o wide` shows.
    pub priority: i32,
}

impl Column {
    /// A string column of priority 0.
    pub const fn string(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            r#type: "string",
            format: "",
            description,
            priority: 0,
        }
    }

    /// An integer column of priority 0.
    pub const fn integer(name: &'static str, description: &'static str) -> Self {
        Self {
            r#type: "integer",
            ..Self::string(name, description)
        }
    }

    /// The same column, shown only by `-o wide` (priority 1).
    pub const fn wide(self) -> Self {
        Self {
            priority: 1,
            ..self
        }
    }

    /// Whether only `-o wide` shows the column.
    pub fn is_wide(&self) -> bool {
        self.priority > 0
    }

    /// The header kubectl prints for the column: its name in upper case.
    pub fn header(&self) -> String {
        self.name.to_uppercase()
    }

    /// A cell of this column as a Table row carries it in JSON: a number for an
    /// `integer` column (kube-apiserver sends int64 there), else the string. Every
    /// integer cell [`cells`] computes is a decimal number; anything else stays a string.
    pub fn json_cell(&self, cell: String) -> serde_json::Value {
        match cell.parse::<i64>() {
            Ok(n) if self.r#type == "integer" => serde_json::Value::from(n),
            _ => serde_json::Value::String(cell),
        }
    }
}

/// The NAME column of every kind but events (where it is a wide one).
pub const NAME: Column = Column {
    format: "name",
    ..Column::string(
        "Name",
        "The object's name, unique in its namespace and kind.",
    )
};

/// The AGE column: how long ago the object was created.
pub const AGE: Column = Column::string("Age", "How long ago the object was created.");

/// Columns of kinds that only have a name and an age (bootstrap tokens).
const NAME_AGE: &[Column] = &[NAME, AGE];

/// The columns of `kind`, in kubectl's order: priority 0 ones, then priority 1 (wide) ones.
pub fn columns(kind: Kind) -> Vec<Column> {
    definitions(kind).to_vec()
}

fn definitions(kind: Kind) -> &'static [Column] {
    match kind {
        Kind::DaemonSet => workload::DAEMON_SET_COLUMNS,
        Kind::StatefulSet => workload::STATEFUL_SET_COLUMNS,
        Kind::ControllerRevision => workload::CONTROLLER_REVISION_COLUMNS,
        Kind::Pod => pod::COLUMNS,
        Kind::Node => node::COLUMNS,
        Kind::Namespace => namespace::COLUMNS,
        Kind::PersistentVolumeClaim => claim::COLUMNS,
        Kind::Service => service::COLUMNS,
        Kind::Event => event::COLUMNS,
        // Not served by `get` (see `twinset token list`); named for completeness.
        Kind::BootstrapToken => NAME_AGE,
    }
}

/// The cells of `obj` (an object of `kind`) as of now, matching [`columns`]`(kind)`.
pub fn cells(kind: Kind, obj: &Object) -> Vec<String> {
    cells_at(kind, obj, SystemTime::now())
}

/// The cells of `obj` (an object of `kind`) with ages as seen at `now`, matching
/// [`columns`]`(kind)`. An object of another kind reads as an empty one of `kind`.
pub fn cells_at(kind: Kind, obj: &Object, now: SystemTime) -> Vec<String> {
    match kind {
        Kind::DaemonSet => {
            workload::daemon_set_cells(obj.as_daemon_set().unwrap_or(&Default::default()), now)
        }
        Kind::StatefulSet => {
            workload::stateful_set_cells(obj.as_stateful_set().unwrap_or(&Default::default()), now)
        }
        Kind::ControllerRevision => workload::controller_revision_cells(
            obj.as_controller_revision().unwrap_or(&Default::default()),
            now,
        ),
        Kind::Pod => pod::cells(obj.as_pod().unwrap_or(&Default::default()), now),
        Kind::Node => node::cells(obj.as_node().unwrap_or(&Default::default()), now),
        Kind::Namespace => namespace::cells(obj.as_namespace().unwrap_or(&Default::default()), now),
        Kind::PersistentVolumeClaim => claim::cells(
            obj.as_persistent_volume_claim()
                .unwrap_or(&Default::default()),
            now,
        ),
        Kind::Service => service::cells(obj.as_service().unwrap_or(&Default::default()), now),
        Kind::Event => event::cells(obj.as_event().unwrap_or(&Default::default()), now),
        Kind::BootstrapToken => {
            let meta = obj.meta();
            vec![
                meta.name.clone(),
                format::age_at(&meta.creation_timestamp, now),
            ]
        }
    }
}

#[cfg(test)]
mod tests;

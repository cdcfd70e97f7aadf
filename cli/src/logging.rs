//! The tracing subscriber: RUST_LOG filter, logs on stderr; info by default for
//! the server roles, warn for the client verbs (whose stdout is their output).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `server_role`: control-plane, agent or up.
pub fn init(server_role: bool) {
    let default = if server_role { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(server_role)
        .try_init();
}

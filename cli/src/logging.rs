//! The tracing subscriber: RUST_LOG filter, logs on stderr; info by default for
//! the server roles, warn for the client verbs (whose stdout is their output).

use std::io::IsTerminal as _;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `server_role`: control-plane, agent or up.
pub fn init(server_role: bool) {
    // hickory logs two lines per DNS query at info: keep those out of the default.
    let default = if server_role {
        "info,hickory_server=warn"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(server_role)
        // Colour only on a terminal: log files (twinset up, systemd) stay plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

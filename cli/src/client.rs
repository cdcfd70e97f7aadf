//! The connection to the control plane for the kubectl-style verbs: where the
//! server is (flag, env, config file, default), connecting, and turning gRPC
//! statuses into kubectl's one-line error messages.
use anyhow::Context as _;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use twinset_proto::kinds::Kind;
use twinset_proto::v1::cluster_client::ClusterClient;

use crate::report::Printed;

/// The address used when nothing else names a server: `twinset up`'s default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:6443";

/// A connected Cluster client and the address it talks to.
pub struct Client {
    /// The generated gRPC client.
    pub cluster: ClusterClient<Channel>,
    /// The server address, `http://HOST:PORT`.
    pub server: String,
}

/// The client config file: `$TWINSET_CONFIG`, else `$HOME/.twinset/config`.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TWINSET_CONFIG") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".twinset").join("config"))
}

/// The client config file's contents (`{"server": "http://127.0.0.1:6443"}`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClientConfig {
    /// The control plane address.
    pub server: String,
}

/// The server to talk to: the `--server` flag or `TWINSET_SERVER`, else the config
/// file that `twinset up` wrote, else the default local address.
pub fn resolve_server(flag: Option<&str>) -> anyhow::Result<String> {
    if let Some(s) = flag.filter(|s| !s.trim().is_empty()) {
        return Ok(twinset_proto::endpoint(s.trim()));
    }
    if let Some(path) = config_path() {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let cfg: ClientConfig = serde_json::from_str(&text)
                    .with_context(|| format!("reading client config {}", path.display()))?;
                return Ok(twinset_proto::endpoint(&cfg.server));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("reading client config {}", path.display()))
            }
        }
    }
    Ok(DEFAULT_SERVER.to_string())
}

/// `HOST:PORT` of a server URL, as kubectl names the server in connection errors.
pub fn host_port(server: &str) -> &str {
    server
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
}

fn connection_refused(server: &str) -> anyhow::Error {
    Printed(format!(
        "The connection to the server {} was refused - did you specify the right host or port?",
        host_port(server)
    ))
    .into()
}

impl Client {
    /// Connects to `server` (already resolved), failing with kubectl's connection line.
    pub async fn connect(server: String) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(server.clone())
            .map_err(|e| anyhow::anyhow!("invalid server address {server:?}: {e}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let channel = endpoint.connect().await.map_err(|e| {
            tracing::debug!(error = %e, server = %server, "connect failed");
            connection_refused(&server)
        })?;
        let cluster = ClusterClient::new(channel)
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024);
        Ok(Self { cluster, server })
    }

    /// A gRPC status as kubectl's one-line error.
    pub fn error(&self, status: tonic::Status) -> anyhow::Error {
        status_error(&status, &self.server)
    }

    /// A gRPC status from a call about one named object: NotFound becomes
    /// kubectl's `Error from server (NotFound): daemonsets.apps "x" not found`.
    pub fn error_for(&self, status: tonic::Status, kind: Kind, name: &str) -> anyhow::Error {
        if status.code() == tonic::Code::NotFound {
            not_found(kind, name)
        } else {
            self.error(status)
        }
    }
}

/// kubectl's NotFound line for a named object.
pub fn not_found(kind: Kind, name: &str) -> anyhow::Error {
    Printed(format!(
        "Error from server (NotFound): {} \"{name}\" not found",
        kind.group_resource()
    ))
    .into()
}

/// The Kubernetes status reason kubectl shows in parentheses for a gRPC code.
pub fn reason(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::InvalidArgument => "BadRequest",
        Code::FailedPrecondition | Code::Aborted => "Conflict",
        Code::PermissionDenied => "Forbidden",
        Code::Unauthenticated => "Unauthorized",
        Code::Unimplemented => "MethodNotAllowed",
        Code::DeadlineExceeded => "Timeout",
        Code::ResourceExhausted => "TooManyRequests",
        Code::OutOfRange => "Expired",
        Code::Unavailable => "ServiceUnavailable",
        _ => "InternalError",
    }
}

/// Turns a gRPC status into kubectl's one-line error (`Error from server (Reason): message`).
pub fn status_error(status: &tonic::Status, server: &str) -> anyhow::Error {
    let message = one_line(status.message());
    if status.code() == tonic::Code::Unavailable
        && (message.is_empty()
            || message.contains("transport error")
            || message.contains("connect")
            || message.contains("connection"))
    {
        return connection_refused(server);
    }
    // gRPC has no code of its own for an oversize request; the API server's message says it.
    let why = if status.code() == tonic::Code::ResourceExhausted
        && message.starts_with(twinset_control_plane::api::REQUEST_TOO_LARGE)
    {
        "RequestEntityTooLarge"
    } else {
        reason(status.code())
    };
    Printed(format!("Error from server ({why}): {message}")).into()
}

/// Joins a multi-line message into one line.
pub fn one_line(s: &str) -> String {
    s.trim()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        let e = status_error(
            &tonic::Status::already_exists("pods \"x\" already exists"),
            DEFAULT_SERVER,
        );
        assert_eq!(
            e.to_string(),
            "Error from server (AlreadyExists): pods \"x\" already exists"
        );
        let e = status_error(
            &tonic::Status::unavailable("tcp connect error"),
            DEFAULT_SERVER,
        );
        assert_eq!(
            e.to_string(),
            "The connection to the server 127.0.0.1:6443 was refused - did you specify the right host or port?"
        );
        let e = not_found(Kind::DaemonSet, "x");
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): daemonsets.apps \"x\" not found"
        );
        let e = not_found(Kind::Pod, "p");
        assert_eq!(
            e.to_string(),
            "Error from server (NotFound): pods \"p\" not found"
        );
    }

    #[test]
    fn one_line_joins() {
        assert_eq!(one_line("a\n  b\n"), "a; b");
    }
}

//! The connection to the control plane for the kubectl-style verbs: where the
//! server is (flag, env, config file, default), connecting, and turning gRPC
//! statuses into kubectl's one-line error messages.
use anyhow::Context as _;
use std::path::{Path, PathBuf};
use tonic::transport::Channel;
use twinset_proto::kinds::Kind;
use twinset_proto::kubeconfig::Kubeconfig;
use twinset_proto::tls::ClientCredentials;
use twinset_proto::v1::cluster_client::ClusterClient;

use crate::report::Printed;

/// A connected Cluster client and where it talks to (a clone shares the connection).
#[derive(Clone)]
pub struct Client {
    /// The generated gRPC client.
    pub cluster: ClusterClient<Channel>,
    /// The server address, `https://HOST:PORT`.
    pub server: String,
    /// What it connected with (to open more connections like it).
    pub target: Target,
}

/// The client config file: `--config`, else `$TWINSET_CONFIG`, else
/// `$HOME/.twinset/config` (a kubeconfig).
pub fn config_path(flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = flag {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("TWINSET_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".twinset").join("config"))
}

/// Where to connect and with which credentials.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server URL, `https://HOST:PORT`.
    pub server: String,
    /// The CA to trust and the client's certificate.
    pub credentials: ClientCredentials,
}

/// Reads a kubeconfig file.
pub fn read_kubeconfig(path: &Path) -> anyhow::Result<Kubeconfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading client config {}", path.display()))?;
    Kubeconfig::parse(&text).with_context(|| format!("reading client config {}", path.display()))
}

/// The server and credentials to use: the kubeconfig (`--config`, `TWINSET_CONFIG` or
/// the one `twinset up` wrote), its server replaced by `--server`/`TWINSET_SERVER`.
pub fn resolve(server_flag: Option<&str>, config_flag: Option<&Path>) -> anyhow::Result<Target> {
    let path = config_path(config_flag).context("HOME is not set; pass --config")?;
    if !path.exists() {
        return Err(Printed(format!(
            "error: no client configuration at {}: start a local cluster with `twinset up`, or \
             point --config (or TWINSET_CONFIG) at a control plane's admin.kubeconfig",
            path.display()
        ))
        .into());
    }
    let k = read_kubeconfig(&path)?;
    let server = match server_flag.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => https(s),
        None => https(&k.server),
    };
    Ok(Target {
        server,
        credentials: k.credentials,
    })
}

/// `HOST:PORT` or `http(s)://HOST:PORT` → `https://HOST:PORT` (every connection is TLS).
pub fn https(server: &str) -> String {
    let s = server.trim().trim_end_matches('/');
    let bare = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    format!("https://{bare}")
}

/// `HOST:PORT` of a server URL, as kubectl names the server in connection errors.
pub fn host_port(server: &str) -> &str {
    server
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
}

/// kubectl's line for a connection that failed: refused, or a certificate it cannot trust.
fn connection_failed(server: &str, e: &tonic::transport::Error) -> anyhow::Error {
    let mut why = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(s) = source {
        why = s.to_string();
        source = s.source();
    }
    if why.contains("certificate") || why.contains("Certificate") {
        return Printed(format!(
            "Unable to connect to the server: tls: failed to verify certificate: {why}"
        ))
        .into();
    }
    connection_refused(server)
}

fn connection_refused(server: &str) -> anyhow::Error {
    Printed(format!(
        "The connection to the server {} was refused - did you specify the right host or port?",
        host_port(server)
    ))
    .into()
}

impl Client {
    /// Connects to the target over TLS, failing with kubectl's connection line.
    pub async fn connect(target: Target) -> anyhow::Result<Self> {
        let server = target.server.clone();
        let channel = twinset_proto::tls::connect(&server, &target.credentials)
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, server = %server, "connect failed");
                match e {
                    twinset_proto::tls::ConnectError::Tls(e) => {
                        anyhow::anyhow!("error: client configuration: {e}")
                    }
                    twinset_proto::tls::ConnectError::Transport(e) => {
                        connection_failed(&server, &e)
                    }
                }
            })?;
        let cluster = ClusterClient::new(channel)
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024);
        Ok(Self {
            cluster,
            server,
            target,
        })
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

    const DEFAULT_SERVER: &str = "https://127.0.0.1:6443";

    #[test]
    fn every_server_address_is_dialled_over_tls() {
        assert_eq!(https("127.0.0.1:6443"), "https://127.0.0.1:6443");
        assert_eq!(https("http://h:1/"), "https://h:1");
        assert_eq!(https("https://h:1"), "https://h:1");
    }

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

//! Running one probe attempt (the I/O of [`crate::probes`]): an exec command in the
//! container (through the runtime, see [`crate::runtime::exec`]), a TCP connect, or
//! an HTTP/1.1 GET over a plain TCP stream (status 200–399 passes). Every attempt is
//! bounded by the probe's `timeoutSeconds`; the failure messages read like the
//! kubelet's ("dial tcp 127.128.0.2:3306: connect: connection refused",
//! "HTTP probe failed with statuscode: 503").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::probes::{Action, Outcome};
use crate::runtime::{ExecRequest, Runtime};

/// The User-Agent of HTTP probes (the kubelet sends `kube-probe/<version>`).
pub const USER_AGENT: &str = "kube-probe/twinset";
/// Most bytes read looking for the HTTP status line.
const MAX_STATUS_LINE: usize = 8 * 1024;

/// Where exec probes run: the container's process, environment and working directory.
#[derive(Clone, Debug)]
pub struct ExecTarget {
    /// The container's main process.
    pub pid: u32,
    /// Its environment.
    pub env: Vec<(String, String)>,
    /// Its working directory.
    pub working_dir: PathBuf,
}

/// Runs one attempt of `action` (or fails with the reason it cannot run) within
/// `timeout`.
pub fn run(
    action: Result<Action, String>,
    runtime: Arc<dyn Runtime>,
    target: ExecTarget,
    timeout: Duration,
) -> BoxFuture<'static, Outcome> {
    Box::pin(async move {
        match action {
            Err(why) => Outcome::Failure(why),
            Ok(Action::Exec { command }) => exec(runtime, target, command, timeout).await,
            Ok(Action::Tcp { host, port }) => tcp(&Action::address(&host, port), timeout).await,
            Ok(Action::Http { host, port, path }) => {
                http(&Action::address(&host, port), &path, timeout).await
            }
        }
    })
}

async fn exec(
    runtime: Arc<dyn Runtime>,
    target: ExecTarget,
    command: Vec<String>,
    timeout: Duration,
) -> Outcome {
    let shown = command.join(" ");
    let req = ExecRequest {
        pid: target.pid,
        argv: command,
        env: target.env,
        working_dir: target.working_dir,
        timeout,
    };
    match runtime.exec(req).await {
        Err(e) => Outcome::Failure(e.to_string()),
        Ok(o) if o.timed_out => Outcome::Failure(format!(
            "command \"{shown}\" timed out after {}",
            fmt_secs(timeout)
        )),
        Ok(o) if o.code == Some(0) => Outcome::Success,
        Ok(o) => {
            let out = o.output.trim_end();
            Outcome::Failure(if !out.is_empty() {
                out.to_string()
            } else {
                match o.code {
                    Some(c) => format!("command \"{shown}\" exited with code {c}"),
                    None => format!("command \"{shown}\" was killed by a signal"),
                }
            })
        }
    }
}

fn fmt_secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

async fn connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {e}")),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

async fn tcp(addr: &str, timeout: Duration) -> Outcome {
    match connect(addr, timeout).await {
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::Failure(e),
    }
}

/// The status code of an HTTP response's status line (`HTTP/1.1 200 OK`).
pub fn status_code(head: &[u8]) -> Option<u16> {
    let line_end = head.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&head[..line_end]).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

async fn http(addr: &str, path: &str, timeout: Duration) -> Outcome {
    let url = format!("http://{addr}{path}");
    let attempt = async {
        let mut s = connect(addr, timeout).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write tcp {addr}: {e}"))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            if let Some(code) = status_code(&head) {
                return Ok(code);
            }
            if head.len() >= MAX_STATUS_LINE {
                return Err("malformed HTTP response: no status line".to_string());
            }
            match s.read(&mut buf).await {
                Ok(0) => return Err("malformed HTTP response: no status line".to_string()),
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("read tcp {addr}: {e}")),
            }
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Err(_) => Outcome::Failure(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
        Ok(Err(e)) => Outcome::Failure(format!("Get \"{url}\": {e}")),
        Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
        Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn status_lines_parse() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 500\r\nx"), Some(500));
        assert_eq!(status_code(b"HTTP/1.1 200 OK"), None, "incomplete");
        assert_eq!(status_code(b"SSH-2.0\r\n"), None);
    }

    /// Serves `reply` to every connection, recording each request.
    async fn server(reply: &'static str) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        (addr, rx)
    }

    #[tokio::test]
    async fn http_passes_on_2xx_and_3xx_only() {
        let (addr, mut reqs) = server("HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n").await;
        assert_eq!(
            http(&addr, "/healthz", Duration::from_secs(2)).await,
            Outcome::Success
        );
        let req = reqs.recv().await.unwrap();
        assert!(req.starts_with("GET /healthz HTTP/1.1\r\n"), "{req}");
        assert!(req.contains(&format!("Host: {addr}\r\n")), "{req}");
        let (addr, _r) = server("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert_eq!(
            http(&addr, "/", Duration::from_secs(2)).await,
            Outcome::Failure("HTTP probe failed with statuscode: 503".into())
        );
    }

    #[tokio::test]
    async fn tcp_passes_when_something_listens() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        assert_eq!(tcp(&addr, Duration::from_secs(1)).await, Outcome::Success);
        drop(l);
        let Outcome::Failure(m) = tcp(&addr, Duration::from_secs(1)).await else {
            panic!("a closed port passed");
        };
        assert!(m.starts_with(&format!("dial tcp {addr}: connect: ")), "{m}");
        let Outcome::Failure(m) = http(&addr, "/", Duration::from_secs(1)).await else {
            panic!("a closed port passed");
        };
        assert!(
            m.starts_with(&format!("Get \"http://{addr}/\": dial tcp")),
            "{m}"
        );
    }
}

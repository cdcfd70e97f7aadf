//! Watch streams that stop reading: a raw HTTP/2 client that opens Watch calls and
//! then never acknowledges their data (no WINDOW_UPDATE), the hostile reader the control
//! plane must survive. Tests and `twinset bench` use it; a real client never should.
//!
//! Each stream's data stays unread in the client until [`StalledWatches::finish`] reads
//! every stream to its end, giving back flow-control credit as it goes, and reports how
//! each one ended (its gRPC status).
//!
//! The gRPC framing it speaks ([`grpc_frame`], [`take_message`], [`status_of`]) is public
//! for `twinset bench rest`, which times raw calls the same way.

use crate::tls::ClientCredentials;
use crate::v1::WatchRequest;
use bytes::{Buf, Bytes, BytesMut};
use prost::Message;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The flow-control window the client grants: HTTP/2's initial 64 KiB, never reopened.
const WINDOW: u32 = 65_535;

/// What went wrong opening or reading the streams.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connection failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The server address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS setup or handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The HTTP/2 layer failed.
    #[error("HTTP/2: {0}")]
    H2(#[from] h2::Error),
    /// The request could not be built.
    #[error("request: {0}")]
    Http(#[from] http::Error),
    /// The streams did not end within the deadline.
    #[error("{0} of the streams did not end in time")]
    Timeout(usize),
}

/// How one stream ended: the gRPC status and how many messages came before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ending {
    /// The `grpc-status` code (0 = OK).
    pub code: i32,
    /// The `grpc-message`, percent-decoded.
    pub message: String,
    /// How many gRPC messages the stream delivered before its status.
    pub messages: usize,
}

/// Open Watch streams whose data nobody reads.
#[derive(Debug)]
pub struct StalledWatches {
    streams: Vec<(http::HeaderMap, h2::RecvStream)>,
    drivers: Vec<JoinHandle<()>>,
}

impl StalledWatches {
    /// Opens `count` Watch calls for `request` to the server at `addr` (over TLS with
    /// `credentials`, naming the server `host`), at most `per_connection` on each HTTP/2
    /// connection, and waits for every response's headers. A call the server refuses at
    /// once (trailers only) still counts: its status is what [`StalledWatches::finish`]
    /// reports.
    pub async fn open(
        addr: SocketAddr,
        host: &str,
        credentials: &ClientCredentials,
        request: &WatchRequest,
        count: usize,
        per_connection: usize,
    ) -> Result<StalledWatches, Error> {
        let body = grpc_frame(request);
        let config = credentials
            .config()
            .map_err(|e| Error::Tls(e.to_string()))?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| Error::Tls(format!("server name {host:?}: {e}")))?;
        let mut out = StalledWatches {
            streams: Vec::with_capacity(count),
            drivers: Vec::new(),
        };
        let mut left = count;
        while left > 0 {
            let here = left.min(per_connection.max(1));
            left -= here;
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|source| Error::Connect { addr, source })?;
            tcp.set_nodelay(true)
                .map_err(|source| Error::Connect { addr, source })?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| Error::Tls(e.to_string()))?;
            let (mut client, conn) = h2::client::Builder::new()
                .initial_window_size(WINDOW)
                .initial_connection_window_size(WINDOW)
                // What is unread piles up here on purpose, in frames of any size.
                .data_frame_budget(usize::MAX / 2)
                .handshake::<_, Bytes>(tls)
                .await?;
            out.drivers.push(tokio::spawn(async move {
                // Ends when the connection does (or the streams are dropped).
                let _ = conn.await;
            }));
            let mut pending = Vec::with_capacity(here);
            for _ in 0..here {
                client = client.ready().await?;
                let req = http::Request::builder()
                    .method("POST")
                    .uri(format!("https://{addr}/twinset.v1.Cluster/Watch"))
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(())?;
                let (response, mut send) = client.send_request(req, false)?;
                send.send_data(body.clone(), true)?;
                pending.push(response);
            }
            for response in futures::future::join_all(pending).await {
                let (parts, recv) = response?.into_parts();
                out.streams.push((parts.headers, recv));
            }
        }
        Ok(out)
    }

    /// How many streams are open.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is open.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Reads every stream to its end (acknowledging its data now) and reports how each
    /// ended; streams still open after `within` make it fail with [`Error::Timeout`].
    pub async fn finish(mut self, within: Duration) -> Result<Vec<Ending>, Error> {
        let streams = std::mem::take(&mut self.streams);
        let n = streams.len();
        let all = futures::future::join_all(streams.into_iter().map(|(h, s)| read_to_end(h, s)));
        match tokio::time::timeout(within, all).await {
            Ok(endings) => endings.into_iter().collect(),
            Err(_) => Err(Error::Timeout(n)),
        }
    }
}

impl Drop for StalledWatches {
    fn drop(&mut self) {
        for d in &self.drivers {
            d.abort();
        }
    }
}

/// A gRPC message frame: not compressed, 4-byte big-endian length, the message.
pub fn grpc_frame<M: Message>(request: &M) -> Bytes {
    let msg = request.encode_to_vec();
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.extend_from_slice(&[0]);
    b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    b.extend_from_slice(&msg);
    b.freeze()
}

/// Reads one stream's messages and trailers, releasing flow-control credit as it goes.
async fn read_to_end(headers: http::HeaderMap, mut recv: h2::RecvStream) -> Result<Ending, Error> {
    // A call refused at once carries its status in the headers (trailers only).
    if let Some(ending) = status_of(&headers, 0) {
        return Ok(ending);
    }
    let mut buf = BytesMut::new();
    let mut messages = 0;
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
        while take_message(&mut buf).is_some() {
            messages += 1;
        }
    }
    let trailers = recv.trailers().await?.unwrap_or_default();
    Ok(status_of(&trailers, messages).unwrap_or(Ending {
        code: 2,
        message: "the stream ended without a grpc-status".into(),
        messages,
    }))
}

/// The first whole gRPC message at the front of `buf` (its frame taken off), once all of
/// it has arrived.
pub fn take_message(buf: &mut BytesMut) -> Option<Bytes> {
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if buf.len() < 5 + len {
        return None;
    }
    buf.advance(5);
    Some(buf.split_to(len).freeze())
}

/// The gRPC status in a header block (trailers, or the headers of a trailers-only
/// answer), when there is one; `messages` is what the stream delivered before it.
pub fn status_of(h: &http::HeaderMap, messages: usize) -> Option<Ending> {
    let code = h.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = h
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some(Ending {
        code,
        message,
        messages,
    })
}

/// grpc-message is percent-encoded (RFC 3986 style) by the server.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let hex = |i: usize| b.get(i).and_then(|&c| (c as char).to_digit(16));
    let mut i = 0;
    while i < b.len() {
        if let (b'%', Some(h), Some(l)) = (b[i], hex(i + 1), hex(i + 2)) {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_messages_are_percent_decoded() {
        assert_eq!(
            percent_decode("too old resource version: 5%20(x)%25"),
            "too old resource version: 5 (x)%"
        );
        assert_eq!(percent_decode("50%"), "50%");
    }

    #[test]
    fn a_frame_is_flag_length_message() {
        let r = WatchRequest {
            kind: "Pod".into(),
            ..Default::default()
        };
        let f = grpc_frame(&r);
        assert_eq!(f[0], 0);
        assert_eq!(
            u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize,
            f.len() - 5
        );
        // Read back one message at a time, only once the whole of it is there.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&f[..f.len() - 1]);
        assert_eq!(take_message(&mut buf), None);
        buf.extend_from_slice(&f[f.len() - 1..]);
        buf.extend_from_slice(&f);
        for _ in 0..2 {
            let m = take_message(&mut buf).expect("a whole message");
            assert_eq!(WatchRequest::decode(m).unwrap(), r);
        }
        assert!(buf.is_empty());
        assert_eq!(WatchRequest::decode(&f[5..]).unwrap(), r);
    }
}

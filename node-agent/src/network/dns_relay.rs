//! A DNS relay on the node's bridge: pods in their own network namespaces cannot reach a
//! loopback address of the machine, so when the cluster DNS server listens on one (a local
//! cluster, `twinset up --pod-network bridge`) the agent answers on its bridge's gateway
//! address and passes each query on (UDP and TCP), as NodeLocal DNSCache does without the
//! cache. With a cluster DNS on the network (a lab) pods ask it directly and no relay runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long one query may wait for the upstream server's answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Queries (UDP and TCP together) in flight at once; more are dropped (the client retries).
const MAX_IN_FLIGHT: usize = 256;
/// The largest UDP message relayed (EDNS0 answers included).
const MAX_UDP: usize = 4096;

/// Binds the relay's sockets on `listen` (UDP, then TCP on the same port), so a taken
/// port fails the start.
pub async fn bind(listen: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(listen).await?;
    let tcp = TcpListener::bind(udp.local_addr()?).await?;
    Ok((udp, tcp))
}

/// Relays queries arriving on `sockets` to `upstream` until `shutdown`; every query's task
/// is tracked by `tracker`.
pub async fn run(
    sockets: (UdpSocket, TcpListener),
    upstream: SocketAddr,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let (udp, tcp) = sockets;
    let udp = Arc::new(udp);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut buf = vec![0u8; MAX_UDP];
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = udp.recv_from(&mut buf) => {
                let Ok((n, client)) = got else { continue };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
                let query = buf[..n].to_vec();
                let udp = Arc::clone(&udp);
                tracker.spawn(async move {
                    if let Ok(Ok(answer)) =
                        tokio::time::timeout(QUERY_TIMEOUT, ask_udp(&query, upstream)).await
                    {
                        let _ = udp.send_to(&answer, client).await;
                    }
                    drop(slot);
                });
            }
            got = tcp.accept() => {
                let Ok((mut client, _)) = got else { continue };
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else { continue };
                tracker.spawn(async move {
                    let relay = async {
                        let mut server = tokio::net::TcpStream::connect(upstream).await?;
                        tokio::io::copy_bidirectional(&mut client, &mut server).await
                    };
                    let _ = tokio::time::timeout(QUERY_TIMEOUT, relay).await;
                    drop(slot);
                });
            }
        }
    }
}

/// One UDP query to `upstream`, from a socket of its own (so answers never mix).
async fn ask_udp(query: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = match upstream {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(upstream).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP];
    let n = sock.recv(&mut buf).await?;
    buf.truncate(n);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn udp_and_tcp_queries_are_passed_on_and_answered() {
        // An "upstream server" that answers each message with "re:" + the message.
        let (up_udp, up_tcp) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let upstream = up_udp.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = up_udp.recv_from(&mut buf).await {
                let mut answer = b"re:".to_vec();
                answer.extend_from_slice(&buf[..n]);
                up_udp.send_to(&answer, from).await.unwrap();
            }
        });
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = up_tcp.accept().await {
                let mut buf = [0u8; 5];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(b"tcp:").await.unwrap();
                s.write_all(&buf).await.unwrap();
            }
        });
        let sockets = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let relay_at = sockets.0.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let task = tokio::spawn(run(sockets, upstream, tracker.clone(), shutdown.clone()));

        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"query", relay_at).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), client.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"re:query");

        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(relay_at).await.unwrap();
        s.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 9];
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"tcp:hello");
        drop(s);

        shutdown.cancel();
        task.await.unwrap();
        tracker.close();
        tracker.wait().await;
    }
}

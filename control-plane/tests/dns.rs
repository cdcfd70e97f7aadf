//! The cluster DNS server on 127.0.0.1 (a free port), fed from an in-memory store, asked
//! over real UDP and TCP sockets with hand-built DNS messages: the guide's MySQL names
//! resolve, a pod that is not Ready has no record until it becomes Ready, a large Service
//! is truncated over UDP and complete over TCP, and names outside the domain are refused.

use hickory_server::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RecordType};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;
use twinset_control_plane::dns::{self, DnsServer};
use twinset_control_plane::store::memory::MemoryStore;
use twinset_control_plane::store::Store;
use twinset_proto::v1::*;
use twinset_proto::Kind;

const DEADLINE: Duration = Duration::from_secs(10);

fn service(ns: &str, name: &str) -> Object {
    Object::from(Service {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            ..Default::default()
        }),
        spec: Some(ServiceSpec {
            cluster_ip: "None".into(),
            selector: BTreeMap::from([("app".to_string(), name.to_string())]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A StatefulSet-style pod: hostname = name, subdomain = the service, Running, with an IP.
fn pod(ns: &str, name: &str, service: &str, ip: &str, ready: bool) -> Object {
    Object::from(Pod {
        metadata: Some(ObjectMeta {
            name: name.into(),
            namespace: ns.into(),
            labels: BTreeMap::from([("app".to_string(), service.to_string())]),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            hostname: name.into(),
            subdomain: service.into(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: "Running".into(),
            pod_ip: ip.into(),
            pod_ips: vec![PodIp { ip: ip.into() }],
            conditions: vec![PodCondition {
                r#type: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn question(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg.metadata.recursion_desired = true;
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        msg.set_edns(e);
    }
    msg
}

async fn ask_udp_with(addr: SocketAddr, msg: &Message) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&msg.to_vec().unwrap(), addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let (n, from) = tokio::time::timeout(DEADLINE, sock.recv_from(&mut buf))
        .await
        .expect("a UDP answer in time")
        .unwrap();
    assert_eq!(from, addr);
    let answer = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(answer.metadata.id, msg.metadata.id);
    answer
}

async fn ask_udp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    ask_udp_with(addr, &question(name, qtype, false)).await
}

async fn ask_tcp(addr: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let msg = question(name, qtype, false);
    let bytes = msg.to_vec().unwrap();
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    conn.write_all(&framed).await.unwrap();
    let read = async {
        let mut len = [0u8; 2];
        conn.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        conn.read_exact(&mut buf).await.unwrap();
        buf
    };
    let buf = tokio::time::timeout(DEADLINE, read)
        .await
        .expect("a TCP answer in time");
    let answer = Message::from_vec(&buf).unwrap();
    assert_eq!(answer.metadata.id, msg.metadata.id);
    answer
}

/// The answer's addresses, sorted.
fn ips(m: &Message) -> Vec<String> {
    let mut out: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| r.data.ip_addr())
        .map(|ip| ip.to_string())
        .collect();
    out.sort();
    out
}

async fn start(
    store: Arc<dyn Store>,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let server = DnsServer::bind(store, "127.0.0.1:0".parse().unwrap(), "cluster.local")
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let token = CancellationToken::new();
    let t = token.clone();
    let task = tokio::spawn(async move { server.run(t).await.unwrap() });
    (addr, token, task)
}

async fn stop(token: CancellationToken, task: tokio::task::JoinHandle<()>) {
    token.cancel();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the DNS server stops when cancelled")
        .unwrap();
}

#[tokio::test]
async fn the_guides_mysql_names_resolve_and_follow_readiness() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(1000));
    store.create(service("database", "mysql")).await.unwrap();
    store
        .create(pod("database", "mysql-db-0", "mysql", "127.128.0.2", true))
        .await
        .unwrap();
    store
        .create(pod("database", "mysql-db-1", "mysql", "127.128.1.2", false))
        .await
        .unwrap();
    store
        .create(pod("database", "mysql-db-2", "mysql", "127.128.2.2", true))
        .await
        .unwrap();
    let (addr, token, task) = start(store.clone()).await;

    // A ready pod: its IP, authoritative, TTL 5 s.
    let m = ask_udp(
        addr,
        "mysql-db-0.mysql.database.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(ips(&m), ["127.128.0.2"]);
    assert_eq!(m.answers[0].ttl, dns::TTL);

    // Any case.
    let m = ask_udp(
        addr,
        "MYSQL-DB-2.Mysql.Database.SVC.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(ips(&m), ["127.128.2.2"]);

    // A pod that is not Ready has no record, and is not in the Service's list.
    let m = ask_udp(
        addr,
        "mysql-db-1.mysql.database.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1, "negative answers carry the SOA");
    let m = ask_udp(addr, "mysql.database.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ips(&m), ["127.128.0.2", "127.128.2.2"]);

    // It becomes Ready: the record shows up promptly.
    let mut p1 = store.get(Kind::Pod, "database", "mysql-db-1").unwrap();
    let became_ready = std::time::Instant::now();
    p1.as_pod_mut().unwrap().status.as_mut().unwrap().conditions[0].status = "True".into();
    store.update(p1, None).await.unwrap();
    loop {
        let m = ask_udp(
            addr,
            "mysql-db-1.mysql.database.svc.cluster.local.",
            RecordType::A,
        )
        .await;
        if ips(&m) == ["127.128.1.2"] {
            break;
        }
        assert!(
            became_ready.elapsed() < Duration::from_secs(2),
            "mysql-db-1 still unresolved: {:?}",
            m.metadata.response_code
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = ask_udp(addr, "mysql.database.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ips(&m), ["127.128.0.2", "127.128.1.2", "127.128.2.2"]);

    // Over TCP too.
    let m = ask_tcp(addr, "mysql.database.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ips(&m), ["127.128.0.2", "127.128.1.2", "127.128.2.2"]);

    // AAAA for an existing name: NOERROR, no data.
    let m = ask_udp(
        addr,
        "mysql-db-0.mysql.database.svc.cluster.local.",
        RecordType::AAAA,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());

    // Outside the cluster domain: refused (no recursion).
    let m = ask_udp(addr, "example.com.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    // The pod is deleted: its name goes.
    store
        .delete(Kind::Pod, "database", "mysql-db-2", None)
        .await
        .unwrap();
    let deleted = std::time::Instant::now();
    loop {
        let m = ask_udp(
            addr,
            "mysql-db-2.mysql.database.svc.cluster.local.",
            RecordType::A,
        )
        .await;
        if m.metadata.response_code == ResponseCode::NXDomain {
            break;
        }
        assert!(
            deleted.elapsed() < Duration::from_secs(2),
            "mysql-db-2 still resolves"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    stop(token, task).await;
}

#[tokio::test]
async fn a_large_service_is_truncated_over_udp_and_whole_over_tcp() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(1000));
    store.create(service("default", "big")).await.unwrap();
    for i in 0..100u32 {
        store
            .create(pod(
                "default",
                &format!("big-{i}"),
                "big",
                &format!("127.130.{}.{}", i / 200, 2 + i % 200),
                true,
            ))
            .await
            .unwrap();
    }
    let (addr, token, task) = start(store).await;
    let name = "big.default.svc.cluster.local.";
    let m = ask_udp(addr, name, RecordType::A).await;
    assert!(m.metadata.truncation, "100 A records do not fit 512 bytes");
    let m = ask_udp_with(addr, &question(name, RecordType::A, true)).await;
    assert!(m.edns.is_some(), "EDNS is echoed");
    let m = ask_tcp(addr, name, RecordType::A).await;
    assert!(!m.metadata.truncation);
    assert_eq!(ips(&m).len(), 100);
    stop(token, task).await;
}

#[tokio::test]
async fn serve_refuses_a_bad_domain_and_a_taken_port() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10));
    let err = dns::serve(
        store.clone(),
        "127.0.0.1:0".parse().unwrap(),
        "not a domain",
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, dns::Error::Domain(_)), "{err}");

    let first = DnsServer::bind(
        store.clone(),
        "127.0.0.1:0".parse().unwrap(),
        "cluster.local",
    )
    .await
    .unwrap();
    let err = dns::serve(
        store,
        first.local_addr(),
        "cluster.local",
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, dns::Error::Bind { .. }), "{err}");
    assert!(
        err.to_string().contains(&first.local_addr().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn serve_stops_when_cancelled() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(10));
    let token = CancellationToken::new();
    let task = tokio::spawn(dns::serve(
        store,
        "127.0.0.1:0".parse().unwrap(),
        "cluster.local",
        token.clone(),
    ));
    token.cancel();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("serve returns once cancelled")
        .unwrap()
        .unwrap();
}

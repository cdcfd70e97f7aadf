//! Joining, in process: the token calls of the Cluster service and the Bootstrap service
//! driven directly over a memory store, with CSRs made by rcgen as an agent makes them.
//! A token lets a node join once per use; a second key for a joined name is refused
//! until the node is deleted; every bad token is refused and leaves the store as it was;
//! and the generic Cluster calls never serve the token records.

use futures::StreamExt;
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Status};
use twinset_control_plane::api::authz::as_node;
use twinset_control_plane::api::bootstrap::{BootstrapService, DEFAULT_NODE_CERT_TTL};
use twinset_control_plane::api::cluster::ClusterService;
use twinset_control_plane::api::nodes::NodesService;
use twinset_control_plane::api::Ctx;
use twinset_control_plane::controllers::node_lifecycle::{ready_status, Heartbeats};
use twinset_control_plane::join::pin::{cert_key_sha256, NODE_KEY_ANNOTATION};
use twinset_control_plane::pki::ClusterCa;
use twinset_control_plane::store::memory::MemoryStore;
use twinset_control_plane::store::Store;
use twinset_proto::token::{sha256_hex, Token};
use twinset_proto::v1::bootstrap_server::Bootstrap;
use twinset_proto::v1::cluster_server::Cluster;
use twinset_proto::v1::nodes_server::Nodes;
use twinset_proto::v1::{
    ApplyRequest, BootstrapToken, CaCertificateRequest, CreateTokenRequest, DeleteRequest,
    DeleteTokenRequest, GetRequest, JoinRequest, JoinResponse, ListRequest, ListTokensRequest,
    Namespace, Node, Object, ObjectKey, ObjectMeta, RegisterRequest, WatchRequest,
};
use twinset_proto::Kind;

struct Fixture {
    store: Arc<dyn Store>,
    ca: Arc<ClusterCa>,
    cluster: ClusterService,
    nodes: NodesService,
    bootstrap: BootstrapService,
    clock: Arc<Mutex<SystemTime>>,
    _dir: tempfile::TempDir,
}

/// The services' shared context over `store` (the one place a new Ctx field is added).
fn ctx(store: Arc<dyn Store>) -> Ctx {
    Ctx {
        store,
        shutdown: CancellationToken::new(),
        heartbeats: Arc::new(Heartbeats::default()),
        ipam: twinset_control_plane::ipam::Ipam::new("10.0.0.0/16", 24).unwrap(),
        register_lock: Arc::default(),
        status_write_interval: Duration::from_secs(30),
        max_request_bytes: twinset_control_plane::api::DEFAULT_MAX_REQUEST_BYTES,
        watch_slots: twinset_control_plane::api::slots::WatchSlots::new(10, 10, 10),
        pod_ranges: twinset_control_plane::pod_ranges::cell(),
        cluster_cidr: "10.0.0.0/16".into(),
        replace_after: Duration::from_secs(6),
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(ClusterCa::load_or_create(&dir.path().join("pki")).unwrap());
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(1000));
    let clock = Arc::new(Mutex::new(SystemTime::now()));
    let read = clock.clone();
    Fixture {
        cluster: ClusterService::new(ctx(store.clone())).with_ca_hash(ca.hash()),
        nodes: NodesService::new(ctx(store.clone())),
        bootstrap: BootstrapService::new(store.clone(), ca.clone(), DEFAULT_NODE_CERT_TTL)
            .with_clock(Arc::new(move || *read.lock().unwrap())),
        store,
        ca,
        clock,
        _dir: dir,
    }
}

/// What an agent sends: a fresh P-256 key and a CSR for it.
fn csr() -> (KeyPair, Vec<u8>) {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    (key, csr.der().to_vec())
}

impl Fixture {
    async fn token(&self, ttl_seconds: i64, uses: i32, node: &str) -> String {
        self.cluster
            .create_token(Request::new(CreateTokenRequest {
                ttl_seconds,
                uses,
                node: node.into(),
                description: String::new(),
            }))
            .await
            .unwrap()
            .into_inner()
            .token
    }

    async fn join(&self, token: &str, node: &str, csr: &[u8]) -> Result<JoinResponse, Status> {
        self.bootstrap
            .join(Request::new(JoinRequest {
                token: token.into(),
                node_name: node.into(),
                csr_der: csr.to_vec(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    fn node(&self, name: &str) -> Option<Node> {
        self.store
            .get(Kind::Node, "", name)
            .and_then(Object::into_node)
    }

    fn uses_left(&self, token: &str) -> Option<i32> {
        let id = Token::parse(token).unwrap().id().to_string();
        self.store
            .get(Kind::BootstrapToken, "", &id)
            .and_then(Object::into_bootstrap_token)
            .and_then(|t| t.spec)
            .and_then(|s| s.uses_left)
    }

    /// Joins that must be refused with `code` and a message containing `says`, leaving
    /// the store exactly as it was.
    async fn refused(&self, token: &str, node: &str, csr: &[u8], code: Code, says: &str) {
        let before = self.store.current_revision();
        let err = self.join(token, node, csr).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(
            err.message().contains(says),
            "{:?} lacks {says:?}",
            err.message()
        );
        assert_eq!(
            self.store.current_revision(),
            before,
            "a refused join stores nothing ({says})"
        );
    }
}

/// The certificate's subject CN and its public key's hash.
fn read_cert(pem: &str) -> (String, String) {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap()
        .to_string();
    (cn, cert_key_sha256(&pem.contents).unwrap())
}

#[tokio::test]
async fn a_token_joins_a_node_whose_name_is_then_pinned_to_its_key() {
    let f = fixture();
    let ca_pem = f
        .bootstrap
        .ca_certificate(Request::new(CaCertificateRequest {}))
        .await
        .unwrap()
        .into_inner()
        .ca_pem;
    assert_eq!(ca_pem, f.ca.cert_pem());

    let token = f.token(3600, 3, "").await;
    let (key1, csr1) = csr();
    let joined = f.join(&token, "node1", &csr1).await.unwrap();
    assert_eq!(joined.ca_pem, f.ca.cert_pem());
    let (cn, key_hash) = read_cert(&joined.certificate_pem);
    assert_eq!(cn, "system:node:node1");
    assert_eq!(
        key_hash,
        sha256_hex(&rcgen::PublicKeyData::subject_public_key_info(&key1))
    );
    // Beside it, the serving certificate of the agent's endpoint, for the same key.
    assert_eq!(
        read_cert(&joined.serving_certificate_pem),
        (cn, key_hash.clone())
    );
    assert_eq!(f.uses_left(&token), Some(2));

    // The joined node is pinned, and not ready until its agent registers.
    let node = f.node("node1").unwrap();
    let pin = node.metadata.as_ref().unwrap().annotations[NODE_KEY_ANNOTATION].clone();
    assert_eq!(pin, key_hash);
    assert_eq!(ready_status(&node), "Unknown");
    let registered = f
        .nodes
        .register(as_node(
            "node1",
            &key_hash,
            RegisterRequest {
                node: Some(Node {
                    metadata: Some(ObjectMeta {
                        name: "node1".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .node
        .unwrap();
    assert_eq!(ready_status(&registered), "True");
    assert_eq!(
        registered.metadata.as_ref().unwrap().annotations[NODE_KEY_ANNOTATION],
        pin,
        "registration keeps the pin"
    );
    assert!(
        registered.spec.as_ref().unwrap().taints.is_empty(),
        "registration clears the not-ready taint"
    );

    // The same key may join again (a lost certificate); another key may not.
    f.join(&token, "node1", &csr1).await.unwrap();
    assert_eq!(f.uses_left(&token), Some(1));
    let (_, csr2) = csr();
    f.refused(
        &token,
        "node1",
        &csr2,
        Code::AlreadyExists,
        "node \"node1\" is already joined with another key; delete it first (twinset delete node node1)",
    )
    .await;
    assert_eq!(f.uses_left(&token), Some(1), "the refusal took no use");

    // Deleting the node releases the name.
    f.cluster
        .delete(Request::new(DeleteRequest {
            key: Some(ObjectKey {
                kind: "node".into(),
                namespace: String::new(),
                name: "node1".into(),
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let rejoined = f.join(&token, "node1", &csr2).await.unwrap();
    let (_, key2_hash) = read_cert(&rejoined.certificate_pem);
    assert_ne!(key2_hash, key_hash);
    assert_eq!(
        f.node("node1").unwrap().metadata.unwrap().annotations[NODE_KEY_ANNOTATION],
        key2_hash
    );
    assert_eq!(f.uses_left(&token), Some(0));
}

#[tokio::test]
async fn bad_tokens_are_refused_and_nothing_is_stored() {
    let f = fixture();
    let (_, csr) = csr();
    let good = f.token(3600, 0, "").await;
    let t = Token::parse(&good).unwrap();
    let id = t.id().to_string();
    let unauth = Code::Unauthenticated;

    // Wrong secret (same id), and an unknown id: the same words.
    let wrong_secret = format!("TS1{}::{id}.{}", t.ca_hash(), "a".repeat(26));
    f.refused(
        &wrong_secret,
        "node1",
        &csr,
        unauth,
        &format!("token {id} is not valid"),
    )
    .await;
    let unknown = format!("TS1{}::zzzzzz.{}", t.ca_hash(), "a".repeat(26));
    f.refused(&unknown, "node1", &csr, unauth, "token zzzzzz is not valid")
        .await;
    // Not a token at all; the secret never appears in the message.
    f.refused("hello", "node1", &csr, unauth, "must start with TS1")
        .await;

    // Made for another CA.
    let other_ca = good.replacen(t.ca_hash(), &sha256_hex(b"another CA"), 1);
    f.refused(
        &other_ca,
        "node1",
        &csr,
        unauth,
        "the token was made for another cluster CA",
    )
    .await;

    // Expired: a TTL of a second, and the clock moved on.
    let short = f.token(1, 0, "").await;
    *f.clock.lock().unwrap() += Duration::from_secs(3);
    let short_id = Token::parse(&short).unwrap().id().to_string();
    f.refused(
        &short,
        "node1",
        &csr,
        unauth,
        &format!("token {short_id} has expired"),
    )
    .await;

    // Used up.
    let once = f.token(3600, 1, "").await;
    let once_id = Token::parse(&once).unwrap().id().to_string();
    f.join(&once, "node1", &csr).await.unwrap();
    let (_, other) = self::csr();
    f.refused(
        &once,
        "node2",
        &other,
        unauth,
        &format!("token {once_id} has been used up"),
    )
    .await;

    // For another node.
    let for_node2 = f.token(3600, 0, "node2").await;
    let n2_id = Token::parse(&for_node2).unwrap().id().to_string();
    f.refused(
        &for_node2,
        "node3",
        &other,
        unauth,
        &format!("token {n2_id} is for node \"node2\", not \"node3\""),
    )
    .await;

    // A bad CSR or node name is an invalid argument, also with nothing stored.
    f.refused(
        &good,
        "node3",
        b"not a csr",
        Code::InvalidArgument,
        "certificate signing request",
    )
    .await;
    f.refused(&good, "Node_3", &other, Code::InvalidArgument, "node name")
        .await;
    // A deleted token is refused like an unknown one.
    f.cluster
        .delete_token(Request::new(DeleteTokenRequest { id: id.clone() }))
        .await
        .unwrap();
    f.refused(
        &good,
        "node3",
        &other,
        unauth,
        &format!("token {id} is not valid"),
    )
    .await;
    assert!(f.node("node2").is_none() && f.node("node3").is_none());
}

#[tokio::test]
async fn the_generic_cluster_calls_never_serve_tokens() {
    let f = fixture();
    let token = f.token(3600, 0, "").await;
    let id = Token::parse(&token).unwrap().id().to_string();
    let listed = f
        .cluster
        .list_tokens(Request::new(ListTokensRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.tokens.len(), 1);
    assert_eq!(listed.tokens[0].id, id);

    for kind in ["BootstrapToken", "bootstraptokens", "bootstraptoken"] {
        let key = ObjectKey {
            kind: kind.into(),
            namespace: String::new(),
            name: id.clone(),
        };
        let err = f
            .cluster
            .get(Request::new(GetRequest {
                key: Some(key.clone()),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains("doesn't have a resource type"));
        let err = f
            .cluster
            .list(Request::new(ListRequest {
                kind: kind.into(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = f
            .cluster
            .delete(Request::new(DeleteRequest {
                key: Some(key),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = f
            .cluster
            .watch(Request::new(WatchRequest {
                kind: kind.into(),
                ..Default::default()
            }))
            .await
            .err()
            .expect("a watch of tokens is refused");
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    // Applying one (a client could build the variant by hand) is refused too.
    let forged = Object::from(BootstrapToken {
        metadata: Some(ObjectMeta {
            name: "abcdef".into(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let err = f
        .cluster
        .apply(Request::new(ApplyRequest {
            object: Some(forged),
            dry_run: false,
            create_only: false,
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(f.store.get(Kind::BootstrapToken, "", "abcdef").is_none());

    // A watch of every kind passes other changes and never a token's.
    let mut watch = f
        .cluster
        .watch(Request::new(WatchRequest::default()))
        .await
        .unwrap()
        .into_inner();
    f.token(3600, 0, "").await;
    f.store
        .create(Object::from(Namespace {
            metadata: Some(ObjectMeta {
                name: "after".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the namespace's change arrives")
        .unwrap()
        .unwrap();
    assert_eq!(first.object.unwrap().kind(), Kind::Namespace);
}

#[tokio::test]
async fn a_node_that_fences_later_than_replace_after_gets_a_warning_event() {
    let f = fixture();
    let token = f.token(3600, 2, "").await;
    let mut warned = Vec::new();
    for (name, within) in [("late", "9000"), ("prompt", "5000")] {
        let (key, csr) = csr();
        f.join(&token, name, &csr).await.unwrap();
        let key_hash = sha256_hex(&rcgen::PublicKeyData::subject_public_key_info(&key));
        let mut meta = ObjectMeta {
            name: name.into(),
            ..Default::default()
        };
        meta.annotations.insert(
            twinset_proto::fencing::FENCE_WITHIN_ANNOTATION.into(),
            within.into(),
        );
        f.nodes
            .register(as_node(
                name,
                &key_hash,
                RegisterRequest {
                    node: Some(Node {
                        metadata: Some(meta),
                        ..Default::default()
                    }),
                },
            ))
            .await
            .unwrap();
        warned = f
            .store
            .list(Kind::Event, None)
            .0
            .into_iter()
            .filter_map(Object::into_event)
            .filter(|e| e.reason == "FencesTooLate")
            .collect::<Vec<_>>();
    }
    assert_eq!(
        warned.len(),
        1,
        "only the late node is warned about: {warned:?}"
    );
    let ev = &warned[0];
    assert_eq!(ev.r#type, "Warning");
    assert_eq!(
        ev.involved_object
            .as_ref()
            .map(|o| (o.kind.as_str(), o.name.as_str())),
        Some(("Node", "late"))
    );
    assert!(
        ev.message
            .starts_with("node late fences its pods within 9s"),
        "{}",
        ev.message
    );
}

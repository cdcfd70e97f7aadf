//! Size limits as the API server's: a write request over `--max-request-bytes` (default
//! 1.5 MiB, etcd's limit) and annotations over 256 KiB are refused with Kubernetes'
//! messages, through the CLI and over raw gRPC, and the store does not move.

use twinset_e2e::Cluster;
use twinset_proto::v1;

const DS: &str = include_str!("../../deploy/examples/daemonset.yaml");

/// The guide's DaemonSet with `args` of `arg_bytes` bytes on its container, or with an
/// annotation of `annotation_bytes` bytes.
fn daemonset(arg_bytes: usize, annotation_bytes: usize) -> String {
    let mut m = DS.to_string();
    if arg_bytes > 0 {
        m = m.replace(
            "        image: datadog/agent:latest\n",
            &format!(
                "        image: datadog/agent:latest\n        args: [\"{}\"]\n",
                "x".repeat(arg_bytes)
            ),
        );
        assert!(m.len() > arg_bytes, "the manifest did not take the args");
    }
    if annotation_bytes > 0 {
        m = m.replacen(
            "  namespace: kube-system\n",
            &format!(
                "  namespace: kube-system\n  annotations:\n    note: \"{}\"\n",
                "a".repeat(annotation_bytes)
            ),
            1,
        );
        assert!(
            m.len() > annotation_bytes,
            "the manifest did not take the annotation"
        );
    }
    m
}

/// Applies `manifest` through the CLI and expects a one-line refusal containing `says`.
fn cli_refuses(c: &Cluster, manifest: &str, says: &str) {
    let before = c.store_revision();
    let out = c.apply(manifest);
    let err = out.failed().trim().to_string();
    assert_eq!(err.lines().count(), 1, "not one line: {out}");
    assert!(err.contains(says), "expected {says:?} in: {err}");
    assert!(
        err.len() < 1024,
        "the message repeats the oversize input: {} bytes",
        err.len()
    );
    assert_eq!(c.store_revision(), before, "the store moved: {out}");
}

/// The guide's DaemonSet as an object, changed by `edit` after the CLI's checks would
/// have run (a client in another language sends whatever it likes).
fn object(edit: impl FnOnce(&mut v1::Object)) -> v1::Object {
    let mut object = twinset_proto::manifest::decode(DS)
        .expect("the guide's manifest decodes")
        .into_iter()
        .next()
        .expect("one object");
    edit(&mut object);
    object
}

/// Sends `object` to Cluster.Apply directly and returns the refusal.
fn grpc_refusal(c: &Cluster, object: v1::Object) -> tonic::Status {
    let before = c.store_revision();
    let status = c.grpc(|mut client| async move {
        client
            .apply(v1::ApplyRequest {
                object: Some(object),
                dry_run: false,
                create_only: false,
            })
            .await
            .expect_err("the apply is refused")
    });
    assert_eq!(c.store_revision(), before, "the store moved");
    status
}

#[test]
fn a_two_mib_object_is_refused_as_too_large() {
    let c = Cluster::start(0);
    let manifest = daemonset(2 * 1024 * 1024, 0);
    cli_refuses(
        &c,
        &manifest,
        "Error from server (RequestEntityTooLarge): error when creating",
    );
    cli_refuses(&c, &manifest, "Request entity too large: limit is 1572864");
    let big = twinset_proto::manifest::decode(&manifest)
        .expect("an oversize object is valid")
        .remove(0);
    let status = grpc_refusal(&c, big);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        "Request entity too large: limit is 1572864"
    );
    // Just under the limit is stored.
    let out = c.apply(&daemonset(1024 * 1024, 0));
    assert!(out.stdout.contains("created"), "{out}");
}

#[test]
fn annotations_over_256_kib_are_refused() {
    let c = Cluster::start(0);
    let manifest = daemonset(0, 300 * 1024);
    let says = "metadata.annotations: Too long: must have at most 262144 bytes";
    cli_refuses(&c, &manifest, says);
    let status = grpc_refusal(
        &c,
        object(|o| {
            o.meta_mut()
                .annotations
                .insert("note".into(), "a".repeat(300 * 1024));
        }),
    );
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains(says), "{}", status.message());
}

#[test]
fn a_name_over_253_characters_names_the_limit() {
    let c = Cluster::start(0);
    let manifest = DS.replacen(
        "name: node-monitor",
        &format!("name: {}", "n".repeat(254)),
        1,
    );
    cli_refuses(&c, &manifest, "must be no more than 253 characters");
    let status = grpc_refusal(&c, object(|o| o.meta_mut().name = "n".repeat(254)));
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("must be no more than 253 characters"),
        "{}",
        status.message()
    );
}

/// Sends `body` as a Cluster.Apply request and returns the refusal.
fn raw_apply(c: &Cluster, body: Vec<u8>) -> tonic::Status {
    twinset_e2e::raw_grpc::raw_apply(&c.target(), body).expect_err("the request is refused")
}

#[test]
fn undecodable_and_oversize_requests_are_refused_in_the_apis_words() {
    let c = Cluster::start(0);
    let before = c.store_revision();
    // Field 1 (the object) says 5 bytes follow; one does.
    let status = raw_apply(&c, vec![0x0a, 0x05, 0x01]);
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .starts_with("the request is not a valid twinset.v1 message"),
        "{}",
        status.message()
    );
    // Over the transport's own limit (4 MiB): still the API server's 413, not the
    // library's words.
    let big = prost::Message::encode_to_vec(&v1::ApplyRequest {
        object: Some(object(|o| {
            o.meta_mut()
                .annotations
                .insert("note".into(), "a".repeat(5 * 1024 * 1024));
        })),
        dry_run: false,
        create_only: false,
    });
    let status = raw_apply(&c, big);
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        "Request entity too large: limit is 1572864"
    );
    assert_eq!(c.store_revision(), before, "the store moved");
}

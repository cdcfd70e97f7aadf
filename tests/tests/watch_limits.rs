//! Watch streams are bounded per connection and per user: over
//! `--max-watches-per-connection`, or over `--max-watches-per-user` summed over all the
//! connections of one certificate's user, a new Watch fails with RESOURCE_EXHAUSTED naming
//! the bound, and a stream that ends gives its slot back.

use twinset_e2e::cluster::Options;
use twinset_e2e::{timeout, Cluster};
use twinset_proto::v1::{self, cluster_client::ClusterClient};

type Client = ClusterClient<tonic::transport::Channel>;
type Stream = tonic::Response<tonic::Streaming<v1::WatchEvent>>;

/// Opens a Watch on Namespaces over `c`'s connection.
async fn watch(mut c: Client) -> Result<Stream, tonic::Status> {
    c.watch(v1::WatchRequest {
        kind: "Namespace".into(),
        ..Default::default()
    })
    .await
}

/// Opens a Watch over `c` once the server has given back a slot that a dropped stream
/// held: RESOURCE_EXHAUSTED until then; panics if that takes longer than the suite's
/// deadline or the refusal is anything else.
async fn watch_once_a_slot_is_back(c: &Client) -> Stream {
    let deadline = tokio::time::Instant::now() + timeout();
    loop {
        match watch(c.clone()).await {
            Ok(s) => return s,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the slot never came back: {e:?}"),
        }
    }
}

#[test]
fn watches_over_the_per_connection_bound_are_refused() {
    let c = Cluster::control_plane_only_with(&Options {
        control_plane_flags: vec!["--max-watches-per-connection".into(), "3".into()],
        ..Default::default()
    });
    let target = c.target();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let client = target.cluster().await.expect("connect");
        let mut open = Vec::new();
        for _ in 0..3 {
            open.push(watch(client.clone()).await.expect("within the bound"));
        }
        let refused = watch(client.clone()).await.expect_err("over the bound");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "too many watches on this connection: at most 3 at once"
        );
        // One stream ends: its slot comes back once the server has seen it go.
        drop(open.pop());
        open.push(watch_once_a_slot_is_back(&client).await);
        assert_eq!(open.len(), 3);
    });
}

#[test]
fn watches_over_the_per_user_bound_are_refused_on_any_connection() {
    let c = Cluster::control_plane_only_with(&Options {
        control_plane_flags: vec![
            "--max-watches-per-user".into(),
            "3".into(),
            "--max-watches-per-connection".into(),
            "10".into(),
        ],
        ..Default::default()
    });
    let target = c.target();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        // Two connections with the same admin certificate.
        let first = target.cluster().await.expect("connect");
        let second = target.cluster().await.expect("connect a second time");
        let mut open = Vec::new();
        for _ in 0..3 {
            open.push(watch(first.clone()).await.expect("within the bound"));
        }
        let refused = watch(second.clone())
            .await
            .expect_err("over the user's bound, on a connection of its own");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            refused.message(),
            "too many watches for user \"admin\": at most 3 at once"
        );
        // One stream on the first connection ends: the second may take its slot.
        drop(open.pop());
        open.push(watch_once_a_slot_is_back(&second).await);
        assert_eq!(open.len(), 3);
        // And the user is at its bound again, on either connection.
        for client in [&first, &second] {
            let refused = watch(client.clone()).await.expect_err("over the bound");
            assert_eq!(
                refused.message(),
                "too many watches for user \"admin\": at most 3 at once"
            );
        }
    });
}

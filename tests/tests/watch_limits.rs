//! Watch streams are bounded per connection: over `--max-watches-per-connection` a new
//! Watch fails with RESOURCE_EXHAUSTED naming the bound, and a stream that ends gives
//! its slot back.

use twinset_e2e::cluster::Options;
use twinset_e2e::{timeout, Cluster};
use twinset_proto::v1::{self, cluster_client::ClusterClient};

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
        let watch = |mut c: ClusterClient<tonic::transport::Channel>| async move {
            c.watch(v1::WatchRequest {
                kind: "Namespace".into(),
                ..Default::default()
            })
            .await
        };
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
        let deadline = tokio::time::Instant::now() + timeout();
        loop {
            match watch(client.clone()).await {
                Ok(s) => {
                    open.push(s);
                    break;
                }
                Err(e) if tokio::time::Instant::now() < deadline => {
                    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("the slot never came back: {e:?}"),
            }
        }
        assert_eq!(open.len(), 3);
    });
}

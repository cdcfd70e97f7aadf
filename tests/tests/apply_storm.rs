//! Acknowledged means durable under load: eight clients apply Namespaces as fast as the
//! control plane answers, the control plane is SIGKILLed in the middle of the storm, and
//! after its restart every write it acknowledged is there. Five rounds.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use twinset_e2e::{timeout, wait_for, Cluster, Target};
use twinset_proto::v1;

const CLIENTS: usize = 8;
const ROUNDS: usize = 5;
/// Acknowledged writes per round before the kill (the storm goes on past it).
const BEFORE_KILL: usize = 200;

fn namespace(name: &str) -> v1::Object {
    twinset_proto::manifest::decode(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
    ))
    .expect("a namespace manifest")
    .remove(0)
}

/// Runs `CLIENTS` clients until each gets its first error (the kill), recording every
/// acknowledged name.
fn storm(target: Target, round: usize, acked: Arc<Mutex<Vec<String>>>, count: Arc<AtomicUsize>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let (target, acked, count) = (target.clone(), acked.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                let Ok(mut c) = target.cluster().await else {
                    return;
                };
                for n in 0.. {
                    let name = format!("storm-{round}-{client}-{n}");
                    let applied = c
                        .apply(v1::ApplyRequest {
                            object: Some(namespace(&name)),
                            dry_run: false,
                            create_only: false,
                        })
                        .await;
                    if applied.is_err() {
                        return;
                    }
                    acked.lock().expect("acked").push(name);
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.expect("client task");
        }
    });
}

#[test]
fn no_acknowledged_write_is_lost_across_sigkills_during_an_apply_storm() {
    let mut c = Cluster::control_plane_only();
    let mut all_acked = BTreeSet::new();
    for round in 0..ROUNDS {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let clients = {
            let (target, acked, count) = (c.target(), acked.clone(), count.clone());
            std::thread::spawn(move || storm(target, round, acked, count))
        };
        wait_for(
            "the storm's first acknowledgements",
            timeout(),
            || match count.load(Ordering::Relaxed) {
                n if n >= BEFORE_KILL => Ok(()),
                n => Err(format!("{n} acknowledged")),
            },
        );
        c.kill_control_plane();
        clients.join().expect("the clients end at the kill");
        c.restart_control_plane();

        all_acked.extend(acked.lock().expect("acked").drain(..));
        let stored: BTreeSet<String> = c.grpc(|mut client| async move {
            client
                .list(v1::ListRequest {
                    kind: "Namespace".into(),
                    ..Default::default()
                })
                .await
                .expect("list namespaces")
                .into_inner()
                .items
                .iter()
                .map(|o| o.meta().name.clone())
                .collect()
        });
        let lost: Vec<&String> = all_acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            all_acked.len(),
            lost.iter().take(5).collect::<Vec<_>>()
        );
    }
    assert!(all_acked.len() >= ROUNDS * BEFORE_KILL);
}

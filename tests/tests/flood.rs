//! Fairness under a flood of clients: the Cluster service's in-flight bounds
//! (`--max-requests-inflight`, `--max-mutating-requests-inflight`) refuse what is over
//! them at once with the API server's 429 text, and agents (the Nodes service, never
//! counted) keep their nodes Ready throughout.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::Code;
use twinset_e2e::{timeout, wait_for, Cluster, Options, Target};
use twinset_proto::v1::{self, object};

const TOO_MANY: &str = "Too many requests, please try again later.";
const CLIENTS: usize = 64;

fn namespace(name: &str, label: usize) -> v1::Object {
    twinset_proto::manifest::decode(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    round: \"{label}\"\n"
    ))
    .expect("a namespace manifest")
    .remove(0)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Every Ready condition of a node seen on a Nodes watch that was not True, and the
/// watch's failure if it failed.
#[derive(Default)]
struct NodeWatch {
    not_ready: Vec<String>,
    events: usize,
    error: Option<String>,
}

/// Lists nodes and watches them from the list's revision until `stop`, recording every
/// node whose Ready condition is not True (in the list or in any event).
async fn watch_nodes(server: Target, seen: Arc<Mutex<NodeWatch>>, stop: Arc<AtomicBool>) {
    let record = |o: &v1::Object, seen: &Mutex<NodeWatch>| {
        let Some(object::Kind::Node(n)) = &o.kind else {
            return;
        };
        let ready = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.r#type == "Ready"));
        let mut s = seen.lock().expect("node watch");
        s.events += 1;
        match ready {
            Some(c) if c.status == "True" => {}
            other => s.not_ready.push(format!(
                "{}: {:?}",
                o.meta().name,
                other.map(|c| (&c.status, &c.reason, &c.message))
            )),
        }
    };
    let result: Result<(), String> = async {
        let mut c = server.cluster().await?;
        let list = c
            .list(v1::ListRequest {
                kind: "Node".into(),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        for o in &list.items {
            record(o, &seen);
        }
        let mut stream = c
            .watch(v1::WatchRequest {
                kind: "Node".into(),
                resource_version: list.resource_version,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        while !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(100), stream.message()).await {
                Err(_) => continue,
                Ok(Ok(Some(ev))) => {
                    if let Some(o) = &ev.object {
                        record(o, &seen);
                    }
                }
                Ok(Ok(None)) => return Err("the node watch ended".into()),
                Ok(Err(s)) => return Err(format!("the node watch failed: {s}")),
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        seen.lock().expect("node watch").error = Some(e);
    }
}

/// What a flood did.
#[derive(Default, Debug)]
struct Tally {
    writes: usize,
    lists: usize,
    refused: usize,
    failures: Vec<String>,
}

/// `CLIENTS` clients, each on its own connection, applying (creating, then updating
/// the label of) a few Namespaces of their own and listing Namespaces, until `stop`.
async fn flood(server: Target, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (server, stop, tally) = (server.clone(), stop.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = match server.cluster().await {
                Ok(c) => c,
                Err(e) => {
                    tally.lock().expect("tally").failures.push(e.to_string());
                    return;
                }
            };
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let result = if n.is_multiple_of(4) {
                    c.list(v1::ListRequest {
                        kind: "Namespace".into(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| false)
                } else {
                    c.apply(v1::ApplyRequest {
                        object: Some(namespace(&format!("flood-{client}-{}", n % 3), n)),
                        dry_run: false,
                        create_only: false,
                    })
                    .await
                    .map(|_| true)
                };
                let mut t = tally.lock().expect("tally");
                match result {
                    Ok(true) => t.writes += 1,
                    Ok(false) => t.lists += 1,
                    Err(s) if s.code() == Code::ResourceExhausted && s.message() == TOO_MANY => {
                        t.refused += 1
                    }
                    Err(s) => t.failures.push(s.to_string()),
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("flood client");
    }
}

#[test]
fn nodes_stay_ready_while_clients_flood_the_cluster_service() {
    // The harness runs every control plane with a short node grace (`--node-grace 2s`)
    // and agents heartbeating every 200 ms.
    let c = Cluster::start(2);
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(NodeWatch::default()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let watcher = {
        let (server, seen, stop) = (c.target(), seen.clone(), stop.clone());
        std::thread::spawn(move || runtime().block_on(watch_nodes(server, seen, stop)))
    };
    wait_for("the node watch to list both nodes", timeout(), || {
        let s = seen.lock().expect("node watch");
        match (&s.error, s.events) {
            (Some(e), _) => Err(e.clone()),
            (None, n) if n >= 2 => Ok(()),
            (None, n) => Err(format!("{n} nodes seen")),
        }
    });
    let flooding = {
        let (server, stop, tally) = (c.target(), stop.clone(), tally.clone());
        std::thread::spawn(move || runtime().block_on(flood(server, stop, tally)))
    };
    // The flood lasts until it has done a good deal of work and several node graces
    // have passed (a node falling silent for one grace would have gone Unknown).
    let started = std::time::Instant::now();
    wait_for("the flood to do its work", timeout(), || {
        let t = tally.lock().expect("tally");
        if !t.failures.is_empty() {
            return Ok(());
        }
        if t.writes >= 2_000 && started.elapsed() >= Duration::from_secs(6) {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    stop.store(true, Ordering::Relaxed);
    flooding.join().expect("flood thread");
    watcher.join().expect("node watch thread");

    let t = tally.lock().expect("tally");
    eprintln!("flood of {CLIENTS} clients: {t:?}");
    assert!(
        t.failures.is_empty(),
        "flood calls failed: {:?}",
        t.failures
    );
    assert!(t.writes >= 2_000 && t.lists > 0, "{t:?}");
    let s = seen.lock().expect("node watch");
    assert_eq!(s.error, None);
    assert!(
        s.not_ready.is_empty(),
        "nodes were not Ready during the flood: {:?}",
        s.not_ready
    );
    c.wait_nodes_ready(&["node1".into(), "node2".into()]);
}

#[test]
fn writes_over_the_mutating_bound_are_refused_at_once_and_the_rest_acknowledged() {
    let mut c = Cluster::control_plane_only_with(&Options {
        control_plane_flags: vec!["--max-mutating-requests-inflight".into(), "2".into()],
        ..Options::default()
    });
    c.add_agent("node1", &[]);

    // Bursts of CLIENTS concurrent applies, each client on its own connection and all
    // released at once, until some are refused.
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let refused: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let other: Arc<Mutex<Vec<String>>> = Arc::default();
    let rounds = AtomicUsize::new(0);
    wait_for("a burst with refusals", timeout(), || {
        let round = rounds.fetch_add(1, Ordering::Relaxed);
        let server = c.target();
        let (acked, refused_now, other_now) = (acked.clone(), refused.clone(), other.clone());
        runtime().block_on(async move {
            let mut clients = Vec::new();
            for _ in 0..CLIENTS {
                clients.push(server.cluster().await.expect("connect"));
            }
            let go = Arc::new(tokio::sync::Barrier::new(CLIENTS));
            let mut tasks = Vec::new();
            for (i, mut client) in clients.into_iter().enumerate() {
                let go = go.clone();
                let (acked, refused, other) =
                    (acked.clone(), refused_now.clone(), other_now.clone());
                tasks.push(tokio::spawn(async move {
                    let name = format!("burst-{round}-{i}");
                    go.wait().await;
                    let r = client
                        .apply(v1::ApplyRequest {
                            object: Some(namespace(&name, 0)),
                            dry_run: false,
                            create_only: false,
                        })
                        .await;
                    match r {
                        Ok(_) => {
                            acked.lock().expect("acked").insert(name);
                        }
                        Err(s)
                            if s.code() == Code::ResourceExhausted && s.message() == TOO_MANY =>
                        {
                            refused.lock().expect("refused").insert(name);
                        }
                        Err(s) => other.lock().expect("other").push(format!("{name}: {s}")),
                    }
                }));
            }
            for t in tasks {
                t.await.expect("burst client");
            }
        });
        let other = other.lock().expect("other");
        if !other.is_empty() {
            panic!("writes failed other than by the bound: {other:?}");
        }
        match refused.lock().expect("refused").len() {
            0 => Err(format!("round {round}: none refused")),
            _ => Ok(()),
        }
    });

    // Every acknowledged write is stored; no refused one left anything behind.
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
            .filter(|n| n.starts_with("burst-"))
            .collect()
    });
    let acked = acked.lock().expect("acked").clone();
    let refused = refused.lock().expect("refused").clone();
    assert!(!acked.is_empty(), "some writes get through");
    assert_eq!(
        stored, acked,
        "stored burst namespaces are exactly the acknowledged ones"
    );
    assert!(refused.is_disjoint(&stored));

    // The CLI says it as kubectl does, while a flood keeps the bound spent; meanwhile
    // the agent's node stays Ready throughout (a Nodes watch sees nothing else).
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(NodeWatch::default()));
    let watcher = {
        let (server, seen, stop) = (c.target(), seen.clone(), stop.clone());
        std::thread::spawn(move || runtime().block_on(watch_nodes(server, seen, stop)))
    };
    wait_for("the node watch to list node1", timeout(), || {
        let s = seen.lock().expect("node watch");
        match (&s.error, s.events) {
            (Some(e), _) => Err(e.clone()),
            (None, n) if n >= 1 => Ok(()),
            (None, n) => Err(format!("{n} nodes seen")),
        }
    });
    let started = std::time::Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let flooding = {
        let (server, stop, tally) = (c.target(), stop.clone(), tally.clone());
        std::thread::spawn(move || runtime().block_on(flood(server, stop, tally)))
    };
    let manifest = c.write_manifest(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: from-the-cli\n  labels:\n    try: \"1\"\n",
    );
    let manifest = manifest.to_string_lossy().into_owned();
    // kubectl's words for a create refused by the server.
    let line = format!(
        "Error from server (TooManyRequests): error when creating \"{manifest}\": {TOO_MANY}"
    );
    let refused_cli = twinset_e2e::wait::try_wait_for(timeout(), || {
        let out = c.run(&["apply", "-f", &manifest]);
        if out.stderr.contains("TooManyRequests") {
            Ok(out)
        } else {
            Err(format!("{out}"))
        }
    });
    // The flood goes on for a few node graces (2 s in the harness) with the budget spent.
    wait_for("the flood to outlast a few node graces", timeout(), || {
        let t = tally.lock().expect("tally");
        if !t.failures.is_empty() || started.elapsed() >= Duration::from_secs(6) {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        }
    });
    stop.store(true, Ordering::Relaxed);
    flooding.join().expect("flood thread");
    watcher.join().expect("node watch thread");
    let out = refused_cli.unwrap_or_else(|last| panic!("the CLI was never refused: {last}"));
    assert_eq!(out.stderr.trim(), line, "{out}");
    assert!(!out.success(), "{out}");
    let t = tally.lock().expect("tally");
    eprintln!("flood of {CLIENTS} clients over a mutating bound of 2: {t:?}");
    assert!(
        t.refused > 0 && t.writes > 0 && t.failures.is_empty(),
        "{t:?}"
    );
    let s = seen.lock().expect("node watch");
    assert_eq!(s.error, None);
    assert!(
        s.not_ready.is_empty(),
        "node1 was not Ready during the flood: {:?}",
        s.not_ready
    );
    c.wait_nodes_ready(&["node1".into()]);
}

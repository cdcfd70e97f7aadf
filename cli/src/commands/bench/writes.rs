//! `bench writes`: durable writes per second and their latency at several client counts,
//! first with no watchers, then with idle watchers (streams open on a kind nothing
//! writes) and then with stalled ones (streams on the written kind whose client never
//! reads: the raw HTTP/2 readers of [`twinset_proto::stalled`]). One run, so the three
//! rows compare as ratios.
//!
//! Each client has its own connection and updates its own Namespace's annotation in a
//! loop; every update is acknowledged only once durable, so writes/s is the store's
//! durable write rate under that many concurrent writers.

use super::{ms, Stats};
use crate::args::BenchArgs;
use crate::client::{host_port, Client};
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use twinset_proto::stalled::StalledWatches;
use twinset_proto::v1::{self, Namespace, Object, ObjectMeta, UpdateRequest, WatchRequest};

/// Watch streams per HTTP/2 connection (within the server's per-connection bound).
const PER_CONNECTION: usize = 500;

/// The namespaces the writers update: `bench-writes-<client>`.
fn namespace(client: usize) -> String {
    format!("bench-writes-{client}")
}

/// Which watchers are open during a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watchers {
    None,
    /// Streams on Pods in a namespace nothing writes: each write costs them a filter test.
    Idle,
    /// Streams on Namespaces that never read: every write matches them.
    Stalled,
}

impl Watchers {
    fn label(self, n: usize) -> String {
        match self {
            Watchers::None => "none".into(),
            Watchers::Idle => format!("{n} idle"),
            Watchers::Stalled => format!("{n} stalled"),
        }
    }
}

/// Runs every row and prints a table.
pub async fn run(client: &mut Client, args: &BenchArgs) -> anyhow::Result<()> {
    let counts = parse_clients(&args.clients)?;
    let max = counts.iter().copied().max().unwrap_or(1);
    let addr = resolve(&client.server).await?;
    let host = host_port(&client.server)
        .rsplit_once(':')
        .map_or("localhost", |(h, _)| h)
        .trim_matches(['[', ']'])
        .to_string();
    for k in 0..max {
        ensure_namespace(client, k).await?;
    }
    println!(
        "durable writes (Update of one Namespace per client), {} s per row",
        args.duration.as_secs_f64()
    );
    println!(
        "{:>7}  {:>13}  {:>9}  {:>8}  {:>8}",
        "clients", "watchers", "writes/s", "p50 ms", "p99 ms"
    );
    for &clients in &counts {
        for mode in [Watchers::None, Watchers::Idle, Watchers::Stalled] {
            let watch = match mode {
                Watchers::None => None,
                Watchers::Idle => Some(WatchRequest {
                    kind: "Pod".into(),
                    namespace: "bench-writes-idle".into(),
                    ..Default::default()
                }),
                Watchers::Stalled => Some(WatchRequest {
                    kind: "Namespace".into(),
                    ..Default::default()
                }),
            };
            let open = match &watch {
                Some(req) => Some(
                    StalledWatches::open(
                        addr,
                        &host,
                        &client.target.credentials,
                        req,
                        args.watchers,
                        PER_CONNECTION,
                    )
                    .await
                    .context("opening the watchers")?,
                ),
                None => None,
            };
            let (n, samples) = drive(&client.target, clients, args.duration).await?;
            let stats = Stats::of(&samples).context("no write finished")?;
            println!(
                "{:>7}  {:>13}  {:>9.0}  {:>8.2}  {:>8.2}",
                clients,
                mode.label(args.watchers),
                n as f64 / args.duration.as_secs_f64(),
                ms(stats.median),
                ms(stats.p99)
            );
            if let (Some(open), Watchers::Stalled) = (open, mode) {
                report_endings(open).await?;
            }
        }
    }
    Ok(())
}

/// How the stalled streams ended (read now): they should all have ended "too old".
async fn report_endings(open: StalledWatches) -> anyhow::Result<()> {
    let endings = open
        .finish(Duration::from_secs(60))
        .await
        .context("reading the stalled streams")?;
    let too_old = endings
        .iter()
        .filter(|e| e.message.starts_with("too old resource version"))
        .count();
    println!(
        "{:>7}  {:>13}  ({too_old} of {} stalled streams had ended \"too old\")",
        "",
        "",
        endings.len()
    );
    Ok(())
}

/// `clients` concurrent writers for `duration`: how many writes were acknowledged and
/// each one's latency.
async fn drive(
    target: &crate::client::Target,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let end = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..clients {
        let mut c = Client::connect(target.clone()).await?;
        tasks.spawn(async move {
            let mut samples = Vec::new();
            let mut i = 0u64;
            while Instant::now() < end {
                i += 1;
                let start = Instant::now();
                c.cluster
                    .update(UpdateRequest {
                        object: Some(object(k, i)),
                    })
                    .await
                    .map_err(|s| c.error(s))?;
                samples.push(start.elapsed());
            }
            anyhow::Ok(samples)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    Ok((all.len(), all))
}

/// Client `k`'s Namespace with write number `i` in an annotation.
fn object(k: usize, i: u64) -> Object {
    Object::from(Namespace {
        metadata: Some(ObjectMeta {
            name: namespace(k),
            annotations: [("bench/write".to_string(), i.to_string())].into(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

async fn ensure_namespace(client: &mut Client, k: usize) -> anyhow::Result<()> {
    let res = client
        .cluster
        .apply(v1::ApplyRequest {
            object: Some(object(k, 0)),
            ..Default::default()
        })
        .await;
    res.map(drop).map_err(|s| client.error(s))
}

/// "1,8,64" → [1, 8, 64].
fn parse_clients(s: &str) -> anyhow::Result<Vec<usize>> {
    let counts: Vec<usize> = s
        .split(',')
        .map(|p| p.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--clients {s:?}: expected counts like 1,8,64"))?;
    if counts.is_empty() || counts.contains(&0) {
        bail!("--clients {s:?}: every count must be at least 1");
    }
    Ok(counts)
}

/// The server's socket address, for the raw HTTP/2 watchers.
async fn resolve(server: &str) -> anyhow::Result<SocketAddr> {
    let hp = host_port(server);
    tokio::net::lookup_host(hp)
        .await
        .with_context(|| format!("resolving {hp}"))?
        .next()
        .with_context(|| format!("{hp} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_counts_parse() {
        assert_eq!(parse_clients("1,8, 64").unwrap(), [1, 8, 64]);
        assert!(parse_clients("0").is_err());
        assert!(parse_clients("a").is_err());
    }
}

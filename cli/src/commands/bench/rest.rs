//! `bench rest`: the Kubernetes REST API beside gRPC, on the same TLS port, in one run.
//! Loads `--replicas` pods (default 1000) into the namespace `bench-rest`, bound to a node
//! that does not exist (so no agent runs them and nothing else writes them), then times,
//! alternating the two APIs round by round over one warm HTTP/2 connection:
//! - a list of every pod: REST as `kubectl get pods -A` sends it (`GET /api/v1/pods?limit=500`
//!   with kubectl's Table Accept header, following `continue` when the server pages), and
//!   gRPC `Cluster.List`;
//! - a watch that delivers one event per pod: both from the revision before the pods were
//!   made, until the last event has arrived (REST: JSON lines of `?watch=1`; gRPC:
//!   `Cluster.Watch` messages).
//!
//! Times are taken at the client on loopback, from sending the request to the last byte
//! wanted, over a connection that is already open; both requests are raw HTTP/2 (no
//! decoding inside the timed part for either API), so they are the server's time plus
//! the same loopback transport for both. Afterwards the pods are deleted at once.

use super::{ms, Stats};
use crate::args::BenchArgs;
use crate::client::Client;
use anyhow::{bail, ensure, Context};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use prost::Message;
use std::time::{Duration, Instant};
use tonic::body::Body;
use tonic::transport::Channel;
use tower::ServiceExt;
use twinset_proto::stalled::{grpc_frame, status_of, take_message};
use twinset_proto::v1::cluster_client::ClusterClient;
use twinset_proto::v1::{
    self, ApplyRequest, Container, DeleteRequest, ListRequest, ListResponse, Object, ObjectKey,
    ObjectMeta, PodSpec, WatchEvent, WatchRequest,
};

/// The namespace the benchmark's pods live in.
const NAMESPACE: &str = "bench-rest";
/// The node the pods are bound to: none by that name exists, so no agent runs them, and a
/// delete removes them at once.
const NOWHERE: &str = "bench-rest-nowhere";
/// What `kubectl get` sends as Accept: a Table, in either version, else plain JSON.
const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,\
                            application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
/// Concurrent writers while loading and deleting the pods.
const WRITERS: usize = 16;
/// Rounds of each kind before the timed ones (connection, caches, allocator warm).
const WARM_UP: usize = 3;

/// Runs the benchmark and prints its table.
pub async fn run(client: &mut Client, args: &BenchArgs) -> anyhow::Result<()> {
    let pods = args.replicas.unwrap_or(1000) as usize;
    ensure!(pods > 0, "--replicas must be at least 1");
    let lists = args.runs.unwrap_or(200).max(1);
    let watches = lists.div_ceil(4);
    let channel = twinset_proto::tls::connect(&client.server, &client.target.credentials)
        .await
        .with_context(|| format!("connecting to {}", client.server))?;

    remove_pods(client).await?;
    let since = list_namespace(client).await?.resource_version;
    load(&channel, pods).await?;
    let all = list_namespace(client).await?.items.len();
    ensure!(
        all == pods,
        "{all} pods in {NAMESPACE} after loading {pods}: something else writes there"
    );

    let result = measure(&channel, pods, &since, lists, watches).await;
    remove_pods(client).await?;
    let m = result?;
    println!(
        "REST beside gRPC on one TLS port: {pods} pods in {NAMESPACE} ({} in all namespaces), \
         {lists} list rounds, {watches} watch rounds, alternating; client-side times on \
         loopback over one warm HTTP/2 connection",
        m.listed
    );
    println!(
        "{:<52}  {:>8}  {:>8}  {:>9}",
        "", "p50 ms", "p99 ms", "bytes"
    );
    let row = |what: &str, s: &Stats, bytes: usize| {
        println!(
            "{what:<52}  {:>8.2}  {:>8.2}  {bytes:>9}",
            ms(s.median),
            ms(s.p99)
        );
    };
    let ratio = |what: &str, rest: &Stats, grpc: &Stats| {
        println!(
            "{what:<52}  {:>7.2}×  {:>7.2}×",
            rest.median.as_secs_f64() / grpc.median.as_secs_f64(),
            rest.p99.as_secs_f64() / grpc.p99.as_secs_f64()
        );
    };
    row(
        "list  REST GET /api/v1/pods?limit=500 (Table)",
        &m.rest_list,
        m.rest_list_bytes,
    );
    row(
        "list  gRPC Cluster.List (Pods, all namespaces)",
        &m.grpc_list,
        m.grpc_list_bytes,
    );
    ratio("list  REST / gRPC", &m.rest_list, &m.grpc_list);
    let events = format!("{pods} events");
    row(
        &format!("watch REST ?watch=1 JSON lines, {events}"),
        &m.rest_watch,
        m.rest_watch_bytes,
    );
    row(
        &format!("watch gRPC Cluster.Watch, {events}"),
        &m.grpc_watch,
        m.grpc_watch_bytes,
    );
    ratio("watch REST / gRPC", &m.rest_watch, &m.grpc_watch);
    Ok(())
}

/// The figures of one run.
struct Measured {
    /// How many pods the lists returned (every namespace).
    listed: usize,
    rest_list: Stats,
    rest_list_bytes: usize,
    grpc_list: Stats,
    grpc_list_bytes: usize,
    rest_watch: Stats,
    rest_watch_bytes: usize,
    grpc_watch: Stats,
    grpc_watch_bytes: usize,
}

/// The timed rounds, lists then watches.
async fn measure(
    channel: &Channel,
    pods: usize,
    since: &str,
    lists: usize,
    watches: usize,
) -> anyhow::Result<Measured> {
    let (rest_list, grpc_list, (rest_list_bytes, rows), (grpc_list_bytes, listed)) = alternate(
        lists,
        || rest_list_once(channel),
        || grpc_list_once(channel),
    )
    .await?;
    ensure!(
        rows == listed,
        "the REST Table has {rows} rows, the gRPC list {listed} pods"
    );
    let (rest_watch, grpc_watch, rest_watch_bytes, grpc_watch_bytes) = alternate(
        watches,
        || rest_watch_once(channel, since, pods),
        || grpc_watch_once(channel, since, pods),
    )
    .await?;
    Ok(Measured {
        listed,
        rest_list,
        rest_list_bytes,
        grpc_list,
        grpc_list_bytes,
        rest_watch,
        rest_watch_bytes,
        grpc_watch,
        grpc_watch_bytes,
    })
}

/// [`WARM_UP`] + `rounds` rounds of both APIs, which goes first alternating from round to
/// round; the statistics of the timed rounds and what the last round of each returned.
async fn alternate<R, G, RF, GF>(
    rounds: usize,
    mut rest: impl FnMut() -> RF,
    mut grpc: impl FnMut() -> GF,
) -> anyhow::Result<(Stats, Stats, R, G)>
where
    RF: std::future::Future<Output = anyhow::Result<(Duration, R)>>,
    GF: std::future::Future<Output = anyhow::Result<(Duration, G)>>,
{
    let (mut rest_times, mut grpc_times) = (Vec::new(), Vec::new());
    let (mut rest_last, mut grpc_last) = (None, None);
    for round in 0..WARM_UP + rounds {
        let (rt, gt) = if round % 2 == 0 {
            let (rt, r) = rest().await?;
            let (gt, g) = grpc().await?;
            (rest_last, grpc_last) = (Some(r), Some(g));
            (rt, gt)
        } else {
            let (gt, g) = grpc().await?;
            let (rt, r) = rest().await?;
            (rest_last, grpc_last) = (Some(r), Some(g));
            (rt, gt)
        };
        if round >= WARM_UP {
            rest_times.push(rt);
            grpc_times.push(gt);
        }
    }
    let (Some(r), Some(g)) = (rest_last, grpc_last) else {
        bail!("no round ran");
    };
    let stats = |s: &[Duration]| Stats::of(s).context("no timed round");
    Ok((stats(&rest_times)?, stats(&grpc_times)?, r, g))
}

/// A request's answer, read as it arrives.
struct Answer {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: Body,
}

impl Answer {
    /// Sends `request` on `channel` (once the connection is ready) and waits for the head.
    async fn send(channel: &Channel, request: http::Request<Body>) -> anyhow::Result<Answer> {
        let response = channel
            .clone()
            .oneshot(request)
            .await
            .context("sending the request")?;
        let (parts, body) = response.into_parts();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// The next piece of the body, or None at its end (then the trailers, if any, are in
    /// `trailers`).
    async fn next(
        &mut self,
        trailers: &mut Option<http::HeaderMap>,
    ) -> anyhow::Result<Option<Bytes>> {
        loop {
            let Some(frame) = self.body.frame().await else {
                return Ok(None);
            };
            let frame = frame.map_err(|s| anyhow::anyhow!("reading the answer: {s}"))?;
            match frame.into_data() {
                Ok(data) => return Ok(Some(data)),
                Err(frame) => {
                    if let Ok(t) = frame.into_trailers() {
                        *trailers = Some(t);
                    }
                }
            }
        }
    }
}

/// `GET path` as kubectl sends it for a Table.
fn rest_get(path: &str, accept: &str) -> anyhow::Result<http::Request<Body>> {
    Ok(http::Request::get(path)
        .header(http::header::ACCEPT, accept)
        .body(Body::empty())?)
}

/// A gRPC call of `method` (`/twinset.v1.Cluster/List`) with `message`.
fn grpc_post<M: Message>(method: &str, message: &M) -> anyhow::Result<http::Request<Body>> {
    Ok(http::Request::post(method)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(Body::new(http_body_util::Full::new(grpc_frame(message))))?)
}

/// A REST answer that is not 200, as an error naming the request and the Status.
async fn refused(what: &str, mut answer: Answer) -> anyhow::Error {
    let mut body = Vec::new();
    let mut trailers = None;
    while let Ok(Some(chunk)) = answer.next(&mut trailers).await {
        body.extend_from_slice(&chunk);
    }
    anyhow::anyhow!(
        "{what}: {} {}",
        answer.status,
        String::from_utf8_lossy(&body)
    )
}

/// The gRPC status of a finished call: Ok for OK, else an error naming the call.
fn grpc_ok(what: &str, answer: &Answer, trailers: Option<&http::HeaderMap>) -> anyhow::Result<()> {
    let status = status_of(&answer.headers, 0)
        .or_else(|| trailers.and_then(|t| status_of(t, 0)))
        .with_context(|| format!("{what}: the answer carries no grpc-status"))?;
    if status.code != 0 {
        bail!("{what}: gRPC status {}: {}", status.code, status.message);
    }
    Ok(())
}

/// One `kubectl get pods -A`: every page of the Table, timed from each request to its
/// last byte (the pages' JSON is read between pages, outside the time, for `continue`).
/// Returns the time, and the bytes and the rows.
async fn rest_list_once(channel: &Channel) -> anyhow::Result<(Duration, (usize, usize))> {
    let mut elapsed = Duration::ZERO;
    let (mut bytes, mut rows) = (0, 0);
    let mut next: Option<String> = None;
    loop {
        let mut path = "/api/v1/pods?limit=500".to_string();
        if let Some(token) = &next {
            path.push_str("&continue=");
            path.extend(form_urlencoded::byte_serialize(token.as_bytes()));
        }
        let what = format!("GET {path}");
        let start = Instant::now();
        let mut answer = Answer::send(channel, rest_get(&path, TABLE_ACCEPT)?).await?;
        if answer.status != http::StatusCode::OK {
            return Err(refused(&what, answer).await);
        }
        let mut body = BytesMut::new();
        let mut trailers = None;
        while let Some(chunk) = answer.next(&mut trailers).await? {
            body.extend_from_slice(&chunk);
        }
        elapsed += start.elapsed();
        bytes += body.len();
        let table: serde_json::Value =
            serde_json::from_slice(&body).with_context(|| format!("{what}: not JSON"))?;
        ensure!(
            table["kind"] == "Table",
            "{what}: a {} came back, not a Table",
            table["kind"]
        );
        rows += table["rows"].as_array().map_or(0, Vec::len);
        next = table["metadata"]["continue"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if next.is_none() {
            return Ok((elapsed, (bytes, rows)));
        }
    }
}

/// One gRPC List of every pod, timed from the request to the trailers. Returns the time,
/// and the bytes and the pods.
async fn grpc_list_once(channel: &Channel) -> anyhow::Result<(Duration, (usize, usize))> {
    let what = "Cluster.List";
    let request = grpc_post(
        "/twinset.v1.Cluster/List",
        &ListRequest {
            kind: "Pod".into(),
            ..Default::default()
        },
    )?;
    let start = Instant::now();
    let mut answer = Answer::send(channel, request).await?;
    let mut body = BytesMut::new();
    let mut trailers = None;
    while let Some(chunk) = answer.next(&mut trailers).await? {
        body.extend_from_slice(&chunk);
    }
    let elapsed = start.elapsed();
    grpc_ok(what, &answer, trailers.as_ref())?;
    let bytes = body.len();
    let message = take_message(&mut body).with_context(|| format!("{what}: no message"))?;
    let list = ListResponse::decode(message).with_context(|| format!("{what}: decoding"))?;
    Ok((elapsed, (bytes, list.items.len())))
}

/// A REST watch of the namespace's pods from `since`, timed until `events` lines have
/// arrived; the stream is then dropped. Returns the time and the bytes.
async fn rest_watch_once(
    channel: &Channel,
    since: &str,
    events: usize,
) -> anyhow::Result<(Duration, usize)> {
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods?watch=1&resourceVersion={since}");
    let what = format!("GET {path}");
    let start = Instant::now();
    let mut answer = Answer::send(channel, rest_get(&path, "application/json")?).await?;
    if answer.status != http::StatusCode::OK {
        return Err(refused(&what, answer).await);
    }
    let mut body = BytesMut::new();
    let mut lines = 0;
    let mut trailers = None;
    while lines < events {
        let chunk = answer
            .next(&mut trailers)
            .await?
            .with_context(|| format!("{what}: the stream ended after {lines} events"))?;
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
        body.extend_from_slice(&chunk);
    }
    let elapsed = start.elapsed();
    ensure!(lines == events, "{what}: {lines} events, {events} expected");
    // Every line one of the pods, ADDED (an ERROR line would be the watch failing).
    for line in body[..].split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let ev: serde_json::Value =
            serde_json::from_slice(line).with_context(|| format!("{what}: not JSON"))?;
        ensure!(ev["type"] == "ADDED", "{what}: {ev}");
    }
    Ok((elapsed, body.len()))
}

/// A gRPC Watch of the namespace's pods from `since`, timed until `events` messages have
/// arrived; the stream is then dropped. Returns the time and the bytes.
async fn grpc_watch_once(
    channel: &Channel,
    since: &str,
    events: usize,
) -> anyhow::Result<(Duration, usize)> {
    let what = "Cluster.Watch";
    let request = grpc_post(
        "/twinset.v1.Cluster/Watch",
        &WatchRequest {
            kind: "Pod".into(),
            namespace: NAMESPACE.into(),
            label_selector: String::new(),
            resource_version: since.to_string(),
        },
    )?;
    let start = Instant::now();
    let mut answer = Answer::send(channel, request).await?;
    let mut buf = BytesMut::new();
    let mut messages = Vec::with_capacity(events);
    let mut bytes = 0;
    let mut trailers = None;
    while messages.len() < events {
        let Some(chunk) = answer.next(&mut trailers).await? else {
            grpc_ok(what, &answer, trailers.as_ref())?;
            bail!("{what}: the stream ended after {} events", messages.len());
        };
        bytes += chunk.len();
        buf.extend_from_slice(&chunk);
        while let Some(m) = take_message(&mut buf) {
            messages.push(m);
        }
    }
    let elapsed = start.elapsed();
    ensure!(
        messages.len() == events,
        "{what}: {} events, {events} expected",
        messages.len()
    );
    for m in messages {
        let ev = WatchEvent::decode(m).with_context(|| format!("{what}: decoding"))?;
        ensure!(ev.r#type == "ADDED", "{what}: a {} event", ev.r#type);
    }
    Ok((elapsed, bytes))
}

/// The pods of the benchmark's namespace, and the revision they were read at.
async fn list_namespace(client: &mut Client) -> anyhow::Result<ListResponse> {
    Ok(client
        .cluster
        .list(ListRequest {
            kind: "Pod".into(),
            namespace: NAMESPACE.into(),
            ..Default::default()
        })
        .await
        .map_err(|s| client.error(s))?
        .into_inner())
}

/// Pod `i` of the benchmark: bound to [`NOWHERE`].
fn pod(i: usize) -> Object {
    v1::Pod {
        metadata: Some(ObjectMeta {
            name: format!("bench-rest-{i:05}"),
            namespace: NAMESPACE.into(),
            labels: [("app".to_string(), "bench-rest".to_string())].into(),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            node_name: NOWHERE.into(),
            containers: vec![Container {
                name: "sleep".into(),
                image: super::statefulset::IMAGE.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .into()
}

/// Applies `count` pods with [`WRITERS`] concurrent writers.
async fn load(channel: &Channel, count: usize) -> anyhow::Result<()> {
    let api = ClusterClient::new(channel.clone());
    concurrently(api, (0..count).collect(), |mut api, i| async move {
        api.apply(ApplyRequest {
            object: Some(pod(i)),
            dry_run: false,
            create_only: true,
        })
        .await
        .map_err(|s| anyhow::anyhow!("creating pod bench-rest-{i:05}: {}", s.message()))?;
        Ok(())
    })
    .await
}

/// Deletes every pod of the benchmark's namespace at once (grace 0), with [`WRITERS`]
/// concurrent writers.
async fn remove_pods(client: &mut Client) -> anyhow::Result<()> {
    let names: Vec<String> = list_namespace(client)
        .await?
        .items
        .iter()
        .map(|o| o.name().to_string())
        .collect();
    concurrently(client.cluster.clone(), names, |mut api, name| async move {
        api.delete(DeleteRequest {
            key: Some(ObjectKey {
                kind: "Pod".into(),
                namespace: NAMESPACE.into(),
                name: name.clone(),
            }),
            propagation_policy: String::new(),
            grace_period_seconds: Some(0),
        })
        .await
        .map_err(|s| anyhow::anyhow!("deleting pod {name}: {}", s.message()))?;
        Ok(())
    })
    .await
}

/// `op` on every item, by [`WRITERS`] workers each with its own clone of `api` (one
/// connection, many concurrent calls); the first failure is the result.
async fn concurrently<T, F, Fut>(
    api: ClusterClient<Channel>,
    items: Vec<T>,
    op: F,
) -> anyhow::Result<()>
where
    T: Send + 'static,
    F: Fn(ClusterClient<Channel>, T) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let mut shares: Vec<Vec<T>> = (0..WRITERS).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % WRITERS].push(item);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let (api, op) = (api.clone(), op.clone());
        tasks.spawn(async move {
            for item in share {
                op(api.clone(), item).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

//! Reads: get, list (label and field selectors, resourceVersion) and watch (chunked JSON
//! lines from a resourceVersion; 410 Gone when it is too old), each a thin translation onto
//! the Cluster service the gRPC API uses, so both APIs answer alike.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{json, Value};
use tonic::Request;
use twinset_proto::fields::FieldSelector;
use twinset_proto::tls::server::PeerInfo;
use twinset_proto::v1::cluster_server::Cluster;
use twinset_proto::v1::{GetRequest, ListRequest, Object, ObjectKey, WatchRequest};
use twinset_proto::Kind;

use super::path::Target;
use super::status::{json_response, ApiError};
use super::Query;
use crate::api::cluster::ClusterService;

/// A request to the Cluster service on behalf of the REST caller `peer`.
pub fn on_behalf<T>(peer: Option<&PeerInfo>, message: T) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(p) = peer {
        r.extensions_mut().insert(p.clone());
    }
    r
}

/// How objects are written out: as themselves, or as rows of a Table.
/// It writes JSON bytes straight away, as the lists and watches of many objects need.
pub type Render = Arc<dyn Fn(&[Object], &str) -> Vec<u8> + Send + Sync>;

/// One line of a watch: `{"type":…,"object":…}` and a newline, around an object already
/// written.
fn event_line(kind: &str, object: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":");
    line.extend_from_slice(&serde_json::to_vec(kind).unwrap_or_default());
    line.extend_from_slice(b",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    line
}

/// The service's key of `t`'s object `name`.
pub fn key(t: &Target, name: &str) -> ObjectKey {
    ObjectKey {
        kind: t.kind.as_str().to_string(),
        namespace: t.namespace.clone().unwrap_or_default(),
        name: name.to_string(),
    }
}

/// GET of one object.
pub async fn get(
    cluster: &ClusterService,
    peer: Option<&PeerInfo>,
    t: &Target,
    name: &str,
) -> Result<Object, ApiError> {
    let key = key(t, name);
    let got = cluster
        .get(on_behalf(peer, GetRequest { key: Some(key) }))
        .await?
        .into_inner();
    got.object
        .ok_or_else(|| ApiError::new(500, "InternalError", "the store returned no object"))
}

/// The objects of `t`'s collection and the revision they were read at.
pub async fn list(
    cluster: &ClusterService,
    peer: Option<&PeerInfo>,
    t: &Target,
    q: &Query,
) -> Result<(Vec<Object>, String), ApiError> {
    let r = cluster
        .list(on_behalf(
            peer,
            ListRequest {
                kind: t.kind.as_str().to_string(),
                namespace: t.namespace.clone().unwrap_or_default(),
                label_selector: q.get("labelSelector").unwrap_or_default().to_string(),
                field_selector: q.get("fieldSelector").unwrap_or_default().to_string(),
            },
        ))
        .await?
        .into_inner();
    Ok((r.items, r.resource_version))
}

/// A list document of `kind`, written straight to bytes (a list of a thousand pods
/// costs a few milliseconds this way, several times that through value trees).
pub fn list_document(kind: Kind, items: &[Object], resource_version: &str) -> Vec<u8> {
    let head = json!({
        "kind": format!("{}List", kind.as_str()),
        "apiVersion": kind.api_version(),
        "metadata": { "resourceVersion": resource_version },
    });
    with_array(&head, "items", items, twinset_proto::manifest::write_json)
}

/// The JSON object `head` with one more field, `key`: the array of `items`, each
/// written by `write` straight into the bytes.
pub fn with_array<T>(
    head: &Value,
    key: &str,
    items: &[T],
    mut write: impl FnMut(&T, &mut Vec<u8>),
) -> Vec<u8> {
    let mut out = serde_json::to_vec(head).unwrap_or_default();
    // Reopen the head object (`{…}`) to append the field.
    out.pop();
    if out.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(&serde_json::to_vec(key).unwrap_or_default());
    out.extend_from_slice(b":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(item, &mut out);
    }
    out.extend_from_slice(b"]}");
    out
}

/// `?watch=1`: newline-delimited JSON events, as kube-apiserver streams them. From
/// `resourceVersion` when given; without one (or "0") the current objects come first as
/// ADDED. A revision the history no longer holds is a 410 Gone. With `bookmarks`, a
/// BOOKMARK event that often carries the revision every event up to has been delivered
/// at (so a client can resume from there).
pub async fn watch(
    cluster: Arc<ClusterService>,
    peer: Option<PeerInfo>,
    t: &Target,
    q: &Query,
    render: Render,
    bookmarks: Option<std::time::Duration>,
) -> Result<Response, ApiError> {
    let fields = match q.get("fieldSelector") {
        Some(s) if !s.is_empty() => Some(
            FieldSelector::parse(t.kind, s)
                .map_err(|e| ApiError::new(400, "BadRequest", e.to_string()))?,
        ),
        _ => None,
    };
    let mut first: Vec<Vec<u8>> = Vec::new();
    let from = match q.get("resourceVersion") {
        Some(rv) if !rv.is_empty() && rv != "0" => rv.to_string(),
        _ => {
            let (items, rv) = list(&cluster, peer.as_ref(), t, q).await?;
            first = items
                .iter()
                .map(|o| {
                    let rv = o.resource_version().to_string();
                    event_line("ADDED", &render(std::slice::from_ref(o), &rv))
                })
                .collect();
            rv
        }
    };
    let stream = cluster
        .watch(on_behalf(
            peer.as_ref(),
            WatchRequest {
                kind: t.kind.as_str().to_string(),
                namespace: t.namespace.clone().unwrap_or_default(),
                label_selector: q.get("labelSelector").unwrap_or_default().to_string(),
                resource_version: from.clone(),
            },
        ))
        .await?
        .into_inner();
    let name = t.name.clone();
    let delivered = Arc::new(std::sync::atomic::AtomicU64::new(
        from.parse().unwrap_or_default(),
    ));
    let seen = Arc::clone(&delivered);
    let events = stream.filter_map(move |ev| {
        let line = match ev {
            Ok(ev) => {
                // Every event of the stream counts as delivered, the filtered-out too.
                if let Ok(rv) = ev.resource_version.parse::<u64>() {
                    seen.fetch_max(rv, std::sync::atomic::Ordering::Relaxed);
                }
                let Some(obj) = ev.object else {
                    return futures::future::ready(None);
                };
                let wanted = name.as_deref().is_none_or(|n| obj.name() == n)
                    && fields.as_ref().is_none_or(|f| f.matches(&obj));
                if !wanted {
                    return futures::future::ready(None);
                }
                let rv = obj.resource_version().to_string();
                event_line(&ev.r#type, &render(std::slice::from_ref(&obj), &rv))
            }
            // "Too old" arrives as OUT_OF_RANGE: a 410 Expired Status, so the client relists.
            Err(s) => event_line(
                "ERROR",
                &serde_json::to_vec(&ApiError::from(s).body()).unwrap_or_default(),
            ),
        };
        futures::future::ready(Some(line))
    });
    let events = with_bookmarks(events, bookmarks, t.kind, delivered);
    let lines = futures::stream::iter(first)
        .chain(events)
        .map(|line| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line)));
    // HTTP/1.1 sends it chunked, HTTP/2 as DATA frames: one event per frame or chunk.
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(lines))
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}

/// `events`, with a BOOKMARK every `every` (when set) until the events end.
fn with_bookmarks(
    events: impl futures::Stream<Item = Vec<u8>> + Send + 'static,
    every: Option<std::time::Duration>,
    kind: Kind,
    delivered: Arc<std::sync::atomic::AtomicU64>,
) -> futures::stream::BoxStream<'static, Vec<u8>> {
    let Some(every) = every else {
        return events.boxed();
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let marks = futures::stream::unfold(ticks, move |mut ticks| {
        let delivered = Arc::clone(&delivered);
        async move {
            ticks.tick().await;
            let rv = delivered.load(std::sync::atomic::Ordering::Relaxed);
            let object = json!({
                "kind": kind.as_str(),
                "apiVersion": kind.api_version(),
                "metadata": { "resourceVersion": rv.to_string() },
            });
            let mark = event_line("BOOKMARK", &serde_json::to_vec(&object).unwrap_or_default());
            Some((mark, ticks))
        }
    });
    // The events' end ends the bookmarks too.
    let events = events
        .map(Some)
        .chain(futures::stream::once(async { None }));
    futures::stream::select(events, marks.map(Some))
        .take_while(|v| futures::future::ready(v.is_some()))
        .filter_map(futures::future::ready)
        .boxed()
}

/// A 200 answer with `body`.
pub fn ok(body: &Value) -> Response {
    json_response(200, body)
}

/// A 200 answer with a JSON body already written.
pub fn ok_bytes(body: Vec<u8>) -> Response {
    super::status::json_bytes_response(200, body)
}

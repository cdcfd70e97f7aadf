//! The verbs beyond reading that kubectl's everyday commands use: `delete` (with
//! `propagationPolicy` and `gracePeriodSeconds`), `logs` (`pods/log`), `scale`
//! (`statefulsets/scale`, an autoscaling/v1 Scale), eviction (`pods/eviction`, a
//! policy/v1 or v1beta1 Eviction, what `kubectl drain` posts). Each translates onto the
//! Cluster service the gRPC API uses.

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{json, Value};
use twinset_proto::tls::server::PeerInfo;
use twinset_proto::v1::cluster_server::Cluster;
use twinset_proto::v1::{
    DeleteRequest, EvictRequest, LogsRequest, Object, ScaleRequest, StatefulSet,
};

use super::path::Target;
use super::read::{key, on_behalf};
use super::status::ApiError;
use super::Query;
use crate::api::cluster::ClusterService;

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "BadRequest", message)
}

/// A request body as JSON, or 400 naming what it should have been (`what`).
fn json_body(body: &[u8], what: &str) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("the {what} body is not JSON: {e}")))
}

/// DELETE of one object. Options come from the query or a DeleteOptions body, as
/// kubectl sends them; the answer is the object as it is after the call (Terminating,
/// or its last state).
pub async fn delete(
    cluster: &ClusterService,
    peer: Option<&PeerInfo>,
    t: &Target,
    name: &str,
    q: &Query,
    body: &[u8],
) -> Result<Value, ApiError> {
    let options: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        json_body(body, "DeleteOptions")?
    };
    let policy = q
        .get("propagationPolicy")
        .map(str::to_string)
        .or_else(|| options["propagationPolicy"].as_str().map(str::to_string))
        .unwrap_or_default();
    let grace = match q.get("gracePeriodSeconds") {
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| bad_request(format!("gracePeriodSeconds {s:?} is not an integer")))?,
        ),
        None => options["gracePeriodSeconds"].as_i64(),
    };
    if q.get("dryRun").is_some() || !options["dryRun"].is_null() {
        return Err(bad_request("dryRun is not supported for delete"));
    }
    let r = cluster
        .delete(on_behalf(
            peer,
            DeleteRequest {
                key: Some(key(t, name)),
                propagation_policy: policy,
                grace_period_seconds: grace,
            },
        ))
        .await?
        .into_inner();
    Ok(r.object
        .as_ref()
        .map(twinset_proto::manifest::to_value)
        .unwrap_or_else(
            || json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" }),
        ))
}

/// What a `pods/NAME/eviction` body asks (pure): the grace period and dry run of its
/// DeleteOptions, checked as kube-apiserver checks them. `namespace` and `name` are the
/// URL's; `query_dry_run` is the request's `dryRun` parameter.
pub fn eviction_request(
    namespace: &str,
    name: &str,
    query_dry_run: Option<&str>,
    body: &[u8],
) -> Result<EvictRequest, ApiError> {
    let doc = json_body(body, "Eviction")?;
    match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
        (Some("policy/v1" | "policy/v1beta1") | None, Some("Eviction") | None) => {}
        (v, k) => {
            return Err(bad_request(format!(
                "expected a policy/v1 Eviction, got apiVersion {:?} kind {:?}",
                v.unwrap_or_default(),
                k.unwrap_or_default()
            )))
        }
    }
    if doc["metadata"]["name"].as_str().unwrap_or_default() != name {
        return Err(bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    if let Some(ns) = doc["metadata"]["namespace"].as_str() {
        if !ns.is_empty() && ns != namespace {
            return Err(bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    let options = &doc["deleteOptions"];
    for unsupported in ["preconditions", "orphanDependents", "propagationPolicy"] {
        if !options[unsupported].is_null() {
            return Err(bad_request(format!(
                "deleteOptions.{unsupported} is not supported for evictions"
            )));
        }
    }
    let grace_period_seconds = match &options["gracePeriodSeconds"] {
        Value::Null => None,
        v => Some(v.as_i64().ok_or_else(|| {
            bad_request(format!(
                "deleteOptions.gracePeriodSeconds {v} is not an integer"
            ))
        })?),
    };
    let dry_run_of = |v: &Value| -> Result<bool, ApiError> {
        match v {
            Value::Null => Ok(false),
            Value::Array(a) if a.is_empty() => Ok(false),
            Value::Array(a) if a.len() == 1 && a[0] == "All" => Ok(true),
            other => Err(bad_request(format!(
                "Invalid dryRun value {other}: only \"All\" is supported"
            ))),
        }
    };
    let body_dry_run = dry_run_of(&options["dryRun"])?;
    let query = match query_dry_run {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(bad_request(format!(
                "Invalid dryRun value {other:?}: only \"All\" is supported"
            )))
        }
    };
    if query_dry_run.is_some() && !options["dryRun"].is_null() && query != body_dry_run {
        return Err(bad_request(
            "the dry run options in the request and in the Eviction's deleteOptions differ",
        ));
    }
    Ok(EvictRequest {
        namespace: namespace.to_string(),
        name: name.to_string(),
        grace_period_seconds,
        dry_run: query || body_dry_run,
    })
}

/// POST of `pods/NAME/eviction`: the pod is evicted (or the budget refuses, 429); the
/// answer is kube-apiserver's Status of Success.
pub async fn evict(
    cluster: &ClusterService,
    peer: Option<&PeerInfo>,
    t: &Target,
    name: &str,
    q: &Query,
    body: &[u8],
) -> Result<Value, ApiError> {
    let namespace = t.namespace.clone().unwrap_or_default();
    let r = eviction_request(&namespace, name, q.get("dryRun"), body)?;
    cluster.evict(on_behalf(peer, r)).await?;
    Ok(json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201
    }))
}

/// `pods/NAME/log`: the container's output as plain text, streamed while `follow`.
pub async fn logs(
    cluster: &ClusterService,
    peer: Option<&PeerInfo>,
    t: &Target,
    name: &str,
    q: &Query,
) -> Result<Response, ApiError> {
    if q.flag("timestamps") {
        return Err(bad_request(
            "timestamps are not kept by this server's container logs",
        ));
    }
    for unsupported in ["sinceSeconds", "sinceTime", "limitBytes"] {
        if q.get(unsupported).is_some() {
            return Err(bad_request(format!(
                "{unsupported} is not supported for logs"
            )));
        }
    }
    let tail_lines = match q.get("tailLines") {
        Some(s) => Some(
            s.parse::<i64>()
                .map_err(|_| bad_request(format!("tailLines {s:?} is not an integer")))?,
        ),
        None => None,
    };
    let stream = cluster
        .logs(on_behalf(
            peer,
            LogsRequest {
                namespace: t.namespace.clone().unwrap_or_default(),
                pod: name.to_string(),
                container: q.get("container").unwrap_or_default().to_string(),
                follow: q.flag("follow"),
                tail_lines,
                previous: q.flag("previous"),
            },
        ))
        .await?
        .into_inner();
    let body = stream.map(|chunk| match chunk {
        Ok(c) => Ok(bytes::Bytes::from(c.data)),
        Err(s) => Err(std::io::Error::other(s.message().to_string())),
    });
    Response::builder()
        .status(200)
        .header(http::header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}

/// The autoscaling/v1 Scale of a StatefulSet.
pub fn scale_of(sts: &StatefulSet) -> Value {
    let meta = sts.metadata.clone().unwrap_or_default();
    let spec = sts.spec.clone().unwrap_or_default();
    let status = sts.status.clone().unwrap_or_default();
    let selector = twinset_proto::columns::format::label_selector(spec.selector.as_ref());
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.name,
            "namespace": meta.namespace,
            "uid": meta.uid,
            "resourceVersion": meta.resource_version,
            "creationTimestamp": meta.creation_timestamp,
        },
        "spec": { "replicas": spec.replicas.unwrap_or(1) },
        "status": { "replicas": status.replicas, "selector": selector },
    })
}

fn statefulset(obj: Object, name: &str) -> Result<StatefulSet, ApiError> {
    obj.into_stateful_set()
        .ok_or_else(|| ApiError::new(500, "InternalError", format!("{name} is not a StatefulSet")))
}

/// A PATCH (JSON, merge or strategic merge patch of the current Scale, as its
/// Content-Type says) or PUT (a whole Scale) of `statefulsets/NAME/scale`: the replicas
/// asked for, then the new Scale.
pub async fn scale(
    cluster: &ClusterService,
    peer: Option<&PeerInfo>,
    t: &Target,
    name: &str,
    patch: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let doc = json_body(body, "Scale")?;
    let doc = match patch {
        None => doc,
        Some(content_type) => {
            let current = scale_from(super::read::get(cluster, peer, t, name).await?, name)?;
            match super::update::PatchType::of(content_type)? {
                super::update::PatchType::Json => twinset_proto::patch::json_patch(&current, &doc)
                    .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?,
                super::update::PatchType::Apply => {
                    return Err(ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        "server-side apply of the scale subresource is not served; apply the StatefulSet's spec.replicas",
                    ))
                }
                // A Scale has no lists: a strategic merge is a merge patch.
                _ => {
                    let mut v = current;
                    twinset_proto::patch::merge_patch(&mut v, &doc);
                    v
                }
            }
        }
    };
    let replicas = doc["spec"]["replicas"].as_i64().ok_or_else(|| {
        ApiError::new(
            422,
            "Invalid",
            format!("Scale.autoscaling \"{name}\" is invalid: spec.replicas: Required value"),
        )
    })?;
    let replicas = i32::try_from(replicas).map_err(|_| {
        ApiError::new(
            422,
            "Invalid",
            format!(
                "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}"
            ),
        )
    })?;
    let r = cluster
        .scale(on_behalf(
            peer,
            ScaleRequest {
                key: Some(key(t, name)),
                replicas,
            },
        ))
        .await?
        .into_inner();
    let obj = r
        .object
        .ok_or_else(|| ApiError::new(500, "InternalError", "scale returned no object"))?;
    Ok(scale_of(&statefulset(obj, name)?))
}

/// GET of `statefulsets/NAME/scale`.
pub fn scale_from(obj: Object, name: &str) -> Result<Value, ApiError> {
    Ok(scale_of(&statefulset(obj, name)?))
}

/// POST to a collection: creates the object in the body (JSON or YAML), refusing one that
/// exists (409 AlreadyExists); `dryRun=All` validates and writes nothing. The answer is
/// the created object (201).
pub async fn create(
    cluster: &ClusterService,
    t: &Target,
    q: &Query,
    user_agent: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let obj = super::update::body_object(t, None, body)?;
    let mut opts = super::update::options(q, user_agent)?;
    opts.create_only = true;
    let created = cluster.write(obj, &opts).await?;
    Ok(twinset_proto::manifest::to_value(&created.object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_bodies_are_read_as_kube_apiserver_reads_them() {
        let body = br#"{"kind":"Eviction","apiVersion":"policy/v1","metadata":{"name":"web-1","namespace":"db","creationTimestamp":null},"deleteOptions":{"gracePeriodSeconds":3}}"#;
        let r = eviction_request("db", "web-1", None, body).unwrap();
        assert_eq!(
            (
                r.namespace.as_str(),
                r.name.as_str(),
                r.grace_period_seconds,
                r.dry_run
            ),
            ("db", "web-1", Some(3), false)
        );
        let v1beta1 = br#"{"kind":"Eviction","apiVersion":"policy/v1beta1","metadata":{"name":"web-1"},"deleteOptions":{"dryRun":["All"]}}"#;
        assert!(
            eviction_request("db", "web-1", None, v1beta1)
                .unwrap()
                .dry_run
        );
        assert!(
            eviction_request(
                "db",
                "web-1",
                Some("All"),
                br#"{"metadata":{"name":"web-1"}}"#
            )
            .unwrap()
            .dry_run
        );
        let refused = |body: &[u8]| eviction_request("db", "web-1", None, body).unwrap_err();
        let e = refused(br#"{"kind":"Eviction","metadata":{"name":"web-2"}}"#);
        assert_eq!(
            (e.code, e.reason, e.message.as_str()),
            (
                400,
                "BadRequest",
                "name in URL does not match name in Eviction object"
            )
        );
        assert_eq!(refused(br#"{"metadata":{}}"#).code, 400);
        assert_eq!(
            refused(br#"{"metadata":{"name":"web-1","namespace":"other"}}"#).code,
            400
        );
        assert!(refused(br#"{"kind":"Pod","metadata":{"name":"web-1"}}"#)
            .message
            .contains("policy/v1 Eviction"));
        assert!(refused(
            br#"{"metadata":{"name":"web-1"},"deleteOptions":{"preconditions":{"uid":"x"}}}"#
        )
        .message
        .contains("preconditions is not supported"));
        assert_eq!(refused(b"nope").code, 400);
    }
}

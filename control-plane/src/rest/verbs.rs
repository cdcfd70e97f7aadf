//! The verbs beyond reading that kubectl's everyday commands use: `delete` (with
//! `propagationPolicy` and `gracePeriodSeconds`), `logs` (`pods/log`), `scale`
//! (`statefulsets/scale`, an autoscaling/v1 Scale). Each translates onto the Cluster
//! service the gRPC API uses.

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use serde_json::{json, Value};
use twinset_proto::tls::server::PeerInfo;
use twinset_proto::v1::cluster_server::Cluster;
use twinset_proto::v1::{DeleteRequest, LogsRequest, Object, ScaleRequest, StatefulSet};

use super::path::Target;
use super::read::{key, on_behalf};
use super::status::ApiError;
use super::Query;
use crate::api::cluster::ClusterService;

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "BadRequest", message)
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
        serde_json::from_slice(body)
            .map_err(|e| bad_request(format!("the DeleteOptions body is not JSON: {e}")))?
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
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("the Scale body is not JSON: {e}")))?;
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

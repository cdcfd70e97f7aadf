//! The writes that change an object in place: PUT (a replace, compare-and-swap on the
//! body's resourceVersion), PATCH as JSON patch, JSON merge patch, strategic merge patch (what
//! `kubectl apply` sends) and server-side apply (`application/apply-patch+yaml`, with
//! `fieldManager` and `force`). Each computes the new object from the stored one and writes
//! it through the Cluster service's one write path, so validation, immutable fields and
//! field ownership are the same as for every other write.

use serde_json::Value;
use twinset_proto::manifest::{decode_json, to_value};
use twinset_proto::patch::{merge_patch, strategic_merge};
use twinset_proto::tls::server::PeerInfo;
use twinset_proto::v1::Object;

use super::path::Target;
use super::read::get;
use super::status::ApiError;
use super::Query;
use crate::api::apply::{ServerSide, WriteOptions};
use crate::api::cluster::ClusterService;

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(400, "BadRequest", message)
}

/// What every write's query says: dry run, field manager, field validation.
pub fn options(q: &Query, user_agent: &str) -> Result<WriteOptions, ApiError> {
    let dry_run = match q.get("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => return Err(bad_request(format!("unsupported dryRun {other:?}"))),
    };
    // Unknown and duplicate fields are always refused (Strict); Warn and Ignore are
    // accepted as requests and answered as strictly.
    match q.get("fieldValidation") {
        None | Some("" | "Strict" | "Warn" | "Ignore") => {}
        Some(other) => {
            return Err(bad_request(format!(
                "fieldValidation: Invalid value: {other:?}: fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\""
            )))
        }
    }
    let field_manager = match q.get("fieldManager") {
        Some(m) if m.len() > 128 => {
            return Err(bad_request(format!(
                "fieldManager: Too long: may not be longer than 128 (it has {})",
                m.len()
            )))
        }
        Some(m) if !m.is_empty() => m.to_string(),
        // As kube-apiserver: the user agent's program name.
        _ => user_agent
            .split('/')
            .next()
            .unwrap_or_default()
            .chars()
            .take(128)
            .collect(),
    };
    Ok(WriteOptions {
        dry_run,
        field_manager,
        ..Default::default()
    })
}

/// The object in a request body (JSON or YAML), which must be one object of the path's
/// kind, name and namespace.
pub fn body_object(t: &Target, name: Option<&str>, body: &[u8]) -> Result<Object, ApiError> {
    let text = twinset_proto::manifest::text_of(body)
        .map_err(|e| bad_request(e.server_message(t.kind)))?;
    let mut objects = twinset_proto::manifest::decode_unvalidated(text)
        .map_err(|e| bad_request(e.server_message(t.kind)))?;
    if objects.len() != 1 {
        return Err(bad_request(format!(
            "the request body holds {} objects; one is expected",
            objects.len()
        )));
    }
    let mut obj = objects.remove(0);
    fits(t, name, &mut obj)?;
    Ok(obj)
}

/// Checks that `obj` is the object the path names (filling an empty namespace from it).
fn fits(t: &Target, name: Option<&str>, obj: &mut Object) -> Result<(), ApiError> {
    if obj.kind() != t.kind {
        return Err(bad_request(format!(
            "the body is a {}, the path is for {}",
            obj.kind(),
            t.kind.resource()
        )));
    }
    if let Some(ns) = &t.namespace {
        let own = obj.namespace().to_string();
        if own.is_empty() {
            obj.meta_mut().namespace = ns.clone();
        } else if &own != ns {
            return Err(bad_request(format!(
                "the namespace of the provided object ({own}) does not match the namespace sent on the request ({ns})"
            )));
        }
    }
    if let Some(name) = name {
        if obj.name() != name {
            return Err(bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                obj.name()
            )));
        }
    }
    Ok(())
}

/// PUT of one object: replaces the stored one (which must exist); a resourceVersion in
/// the body makes it a compare-and-swap (409 Conflict when the object moved on).
pub async fn replace(
    cluster: &ClusterService,
    t: &Target,
    name: &str,
    q: &Query,
    user_agent: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let obj = body_object(t, Some(name), body)?;
    let rv = obj.meta().resource_version.clone();
    let mut opts = options(q, user_agent)?;
    opts.update_only = true;
    opts.resource_version = revision(&rv)?;
    let written = cluster.write(obj, &opts).await?;
    Ok(to_value(&written.object))
}

fn revision(rv: &str) -> Result<Option<u64>, ApiError> {
    if rv.is_empty() {
        return Ok(None);
    }
    rv.parse()
        .map(Some)
        .map_err(|_| bad_request(format!("metadata.resourceVersion {rv:?} is not a revision")))
}

/// The kinds of PATCH, by Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
    /// `application/json-patch+json` (RFC 6902).
    Json,
}

impl PatchType {
    /// The patch type of a Content-Type, or a 415 naming the ones served.
    pub fn of(content_type: &str) -> Result<PatchType, ApiError> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Ok(PatchType::Apply)
            }
            other => Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format ({other:?}) - accepted media types include: \
                     application/json-patch+json, application/merge-patch+json, \
                     application/strategic-merge-patch+json, application/apply-patch+yaml"
                ),
            )),
        }
    }
}

/// How many times a patch is re-done on a fresh read when the object moved on between
/// the read and the write (kube-apiserver retries the same way).
const PATCH_ATTEMPTS: usize = 5;

/// PATCH of one object.
#[allow(clippy::too_many_arguments)]
pub async fn patch(
    cluster: &ClusterService,
    peer: Option<&PeerInfo>,
    t: &Target,
    name: &str,
    q: &Query,
    user_agent: &str,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let kind = PatchType::of(content_type)?;
    let mut opts = options(q, user_agent)?;
    let text = twinset_proto::manifest::text_of(body)
        .map_err(|e| bad_request(format!("the patch: {e}")))?;
    if kind == PatchType::Apply {
        return apply(cluster, t, name, q, opts, text).await;
    }
    let patch: Value = twinset_proto::manifest::strict_json(text)
        .map_err(|e| bad_request(format!("the patch is not valid JSON: {e}")))?;
    opts.update_only = true;
    let explicit = match kind {
        // A JSON patch names its precondition with a test operation, if at all.
        PatchType::Json => None,
        _ => revision(
            patch["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default(),
        )?,
    };
    let mut last = None;
    for _ in 0..PATCH_ATTEMPTS {
        let current = get(cluster, peer, t, name).await?;
        let original = to_value(&current);
        let patched = match kind {
            PatchType::Merge => {
                let mut v = original.clone();
                merge_patch(&mut v, &patch);
                v
            }
            PatchType::Json => twinset_proto::patch::json_patch(&original, &patch)
                .map_err(|e| ApiError::new(422, "Invalid", e.to_string()))?,
            _ => strategic_merge(&t.kind, &original, &patch)
                .map_err(|e| bad_request(e.to_string()))?,
        };
        let mut obj = decode_json(patched).map_err(|e| bad_request(e.server_message(t.kind)))?;
        fits(t, Some(name), &mut obj)?;
        opts.resource_version = Some(explicit.unwrap_or(current.resource_version()));
        match cluster.write(obj, &opts).await {
            Ok(w) => return Ok(to_value(&w.object)),
            // Someone wrote between the read and the write: patch the new state,
            // unless the patch itself named the revision it is for.
            Err(s) if s.code() == tonic::Code::Aborted && explicit.is_none() => last = Some(s),
            Err(s) => return Err(s.into()),
        }
    }
    Err(last.map_or_else(
        || ApiError::new(409, "Conflict", "the object kept changing"),
        ApiError::from,
    ))
}

/// Server-side apply: `fieldManager` is required; `force=true` takes fields other
/// managers own. Creates the object when it does not exist.
async fn apply(
    cluster: &ClusterService,
    t: &Target,
    name: &str,
    q: &Query,
    mut opts: WriteOptions,
    text: &str,
) -> Result<Value, ApiError> {
    if q.get("fieldManager").unwrap_or_default().is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let force = match q.get("force") {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => return Err(bad_request(format!("force {other:?} is not true or false"))),
    };
    let config =
        twinset_proto::manifest::parse_one(text).map_err(|e| bad_request(e.to_string()))?;
    let mut obj = decode_json(config.clone()).map_err(|e| bad_request(e.server_message(t.kind)))?;
    fits(t, Some(name), &mut obj)?;
    let mut config = config;
    if let (Some(ns), Some(meta)) = (&t.namespace, config.get_mut("metadata")) {
        if let Some(m) = meta.as_object_mut() {
            m.insert("namespace".into(), Value::String(ns.clone()));
        }
    }
    opts.server_side = Some(ServerSide { config, force });
    let written = cluster.write(obj, &opts).await?;
    Ok(to_value(&written.object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_types_come_from_the_content_type() {
        assert_eq!(
            PatchType::of("application/strategic-merge-patch+json").unwrap(),
            PatchType::Strategic
        );
        assert_eq!(
            PatchType::of("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchType::Merge
        );
        assert_eq!(
            PatchType::of("application/apply-patch+yaml").unwrap(),
            PatchType::Apply
        );
        assert_eq!(
            PatchType::of("application/json-patch+json").unwrap(),
            PatchType::Json
        );
        assert_eq!(PatchType::of("text/plain").unwrap_err().code, 415);
    }

    #[test]
    fn options_name_the_field_manager() {
        let q = Query::parse(Some(
            "fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
        ));
        assert_eq!(
            options(&q, "kubectl/v1.33.0").unwrap().field_manager,
            "kubectl-client-side-apply"
        );
        let none = Query::parse(None);
        assert_eq!(
            options(&none, "kubectl/v1.33.0 (linux/amd64)")
                .unwrap()
                .field_manager,
            "kubectl"
        );
        assert!(
            options(&Query::parse(Some("dryRun=All")), "")
                .unwrap()
                .dry_run
        );
        assert_eq!(
            options(&Query::parse(Some("fieldValidation=Loose")), "")
                .unwrap_err()
                .code,
            400
        );
    }
}

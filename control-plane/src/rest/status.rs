//! Errors as Kubernetes `Status` objects (kind Status, status Failure, reason, code), so
//! that kubectl prints its usual `Error from server (NotFound): …` lines.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tonic::Code;

/// A refused request, answered as a `Status`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// The HTTP status code.
    pub code: u16,
    /// Kubernetes' reason (`NotFound`, `Forbidden`, …).
    pub reason: &'static str,
    /// What happened, naming the object.
    pub message: String,
}

impl ApiError {
    /// An error with `code`, `reason` and `message`.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
        }
    }

    /// A path nothing is served at.
    pub fn not_found_path(path: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// A caller without a client certificate of the cluster CA.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// A verb this server does not implement (yet) for the path.
    pub fn not_implemented(what: impl Into<String>) -> ApiError {
        ApiError::new(501, "NotImplemented", what)
    }

    /// The `Status` object. An Invalid one (`Kind "name" is invalid: field: what`) names
    /// the object and the field in its details, as kube-apiserver does, so kubectl says
    /// `The Kind "name" is invalid: field: what`.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason == "Invalid" {
            if let Some(details) = invalid_details(&self.message) {
                body["details"] = details;
            }
        }
        body
    }
}

/// The details of `Kind "name" is invalid: field: what` (None for another message).
fn invalid_details(message: &str) -> Option<Value> {
    let (head, rest) = message.split_once(" is invalid: ")?;
    let (kind, quoted) = head.split_once(' ')?;
    let name = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let kind = twinset_proto::Kind::from_kind_name(kind)?;
    let (field, what) = rest.split_once(": ").unwrap_or(("", rest));
    Some(json!({
        "name": name,
        "group": kind.group(),
        "kind": kind.as_str(),
        "causes": [{ "reason": "FieldValueInvalid", "message": what, "field": field }],
    }))
}

/// The Kubernetes form of a gRPC refusal of the Cluster service (the REST API calls the
/// same service, so both APIs refuse the same things with the same words).
impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> ApiError {
        let (code, reason) = match s.code() {
            Code::NotFound => (404, "NotFound"),
            Code::AlreadyExists => (409, "AlreadyExists"),
            Code::Aborted => (409, "Conflict"),
            Code::InvalidArgument | Code::FailedPrecondition => (422, "Invalid"),
            Code::PermissionDenied => (403, "Forbidden"),
            Code::Unauthenticated => (401, "Unauthorized"),
            Code::ResourceExhausted if s.message().starts_with(crate::api::REQUEST_TOO_LARGE) => {
                (413, "RequestEntityTooLarge")
            }
            Code::ResourceExhausted => (429, "TooManyRequests"),
            Code::OutOfRange => (410, "Expired"),
            Code::Unimplemented => (501, "NotImplemented"),
            Code::Unavailable => (503, "ServiceUnavailable"),
            Code::DeadlineExceeded => (504, "Timeout"),
            _ => (500, "InternalError"),
        };
        ApiError::new(code, reason, s.message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.code, &self.body())
    }
}

/// A JSON answer with status `code`.
pub fn json_response(code: u16, body: &Value) -> Response {
    json_bytes_response(code, serde_json::to_vec(body).unwrap_or_default())
}

/// A JSON answer with status `code` whose body is already written.
pub fn json_bytes_response(code: u16, body: Vec<u8>) -> Response {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_refusals_become_kubernetes_statuses() {
        let e = ApiError::from(tonic::Status::not_found("daemonsets.apps \"x\" not found"));
        assert_eq!((e.code, e.reason), (404, "NotFound"));
        assert_eq!(
            e.body(),
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "daemonsets.apps \"x\" not found", "reason": "NotFound", "code": 404
            })
        );
        let invalid = ApiError::from(tonic::Status::invalid_argument(
            "DaemonSet \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": no",
        ));
        assert_eq!(
            invalid.body()["details"],
            json!({
                "name": "Bad_Name", "group": "apps", "kind": "DaemonSet",
                "causes": [{
                    "reason": "FieldValueInvalid",
                    "message": "Invalid value: \"Bad_Name\": no",
                    "field": "metadata.name"
                }]
            })
        );
        assert!(ApiError::from(tonic::Status::invalid_argument("bad"))
            .body()
            .get("details")
            .is_none());
        for (status, code, reason) in [
            (tonic::Status::already_exists("a"), 409, "AlreadyExists"),
            (tonic::Status::aborted("a"), 409, "Conflict"),
            (tonic::Status::invalid_argument("a"), 422, "Invalid"),
            (tonic::Status::permission_denied("a"), 403, "Forbidden"),
            (tonic::Status::unauthenticated("a"), 401, "Unauthorized"),
            (
                tonic::Status::resource_exhausted("Request entity too large: limit is 1"),
                413,
                "RequestEntityTooLarge",
            ),
            (
                tonic::Status::resource_exhausted("slow down"),
                429,
                "TooManyRequests",
            ),
            (tonic::Status::out_of_range("too old"), 410, "Expired"),
        ] {
            let e = ApiError::from(status);
            assert_eq!((e.code, e.reason), (code, reason));
        }
    }
}

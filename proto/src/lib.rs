//! The public `twinset.v1` API and everything needed to speak it: the generated
//! prost messages and tonic services, plus the Kubernetes manifest codec
//! (YAML/JSON in the Kubernetes shape), validation, quantities, label selectors,
//! the table columns of every kind and the small time helpers that clients and
//! servers share.
//!
//! The proto messages are the only object model: manifests decode straight into
//! them and `get -o yaml` encodes them back.

/// Generated messages, clients and servers of the `twinset.v1` package.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("twinset.v1");
}

pub mod certs;
pub mod cidr;
pub mod columns;
pub mod defaults;
pub mod fencing;
pub mod fields;
pub mod files;
pub mod intorstr;
/// The one table of JSON names build.rs and [`schema`] share.
pub mod json_names;
pub mod kinds;
pub mod kubeconfig;
pub mod managed;
pub mod manifest;
pub mod metrics;
pub mod object;
pub mod patch;
pub mod quantity;
pub mod rollout;
pub mod schema;
pub mod selector;
pub mod serde_support;
#[cfg(feature = "stalled")]
pub mod stalled;
pub mod time;
pub mod tls;
pub mod token;
pub mod validate;

pub use cidr::Cidr;
pub use kinds::Kind;
pub use v1::IntOrString;

/// The encoded `FileDescriptorSet` of `twinset.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/twinset_descriptor.bin"));

/// Normalises a server address: a bare `HOST:PORT` becomes `http://HOST:PORT`.
pub fn endpoint(s: &str) -> String {
    let s = s.trim();
    if s.starts_with("http://") || s.starts_with("https://") {
        s.to_string()
    } else {
        format!("http://{s}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoint_adds_scheme_only_when_missing() {
        assert_eq!(super::endpoint("127.0.0.1:6443"), "http://127.0.0.1:6443");
        assert_eq!(super::endpoint("https://h:1"), "https://h:1");
    }
}

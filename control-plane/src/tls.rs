//! The control plane's TLS listener and its caller identities: the code is shared with
//! the agents' endpoint and lives in [`twinset_proto::tls::server`].

pub use twinset_proto::tls::server::*;

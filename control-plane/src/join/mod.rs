//! Joining the cluster (issue 9): join tokens ([`tokens`]: records, create/list/delete
//! and the compare-and-swap that takes a use) and node identity ([`pin`]: a node name
//! bound to the first joiner's public key). Pure decisions ([`tokens::decide_join`],
//! [`pin::decide_pin`]) with thin store I/O around them; the gRPC side is
//! [`crate::api::bootstrap`] and [`crate::api::tokens`].

pub mod issued;
pub mod pin;
pub mod tokens;

pub use pin::{decide_pin, Pin, NODE_KEY_ANNOTATION};
pub use tokens::{decide_join, Consumed, JoinRefusal, NewToken, TokenRecord, TokenStoreError};

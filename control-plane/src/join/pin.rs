//! Node identity: the first join binds a node name to the SHA-256 of that agent's public
//! key (its SubjectPublicKeyInfo DER), kept on the Node as the annotation
//! [`NODE_KEY_ANNOTATION`]. Another key for a name that is pinned is refused until the
//! node is deleted, so a re-installed (or hostile) machine cannot take over a name.

use crate::controllers::node_lifecycle::ready_status;
use crate::controllers::placement::{taint_keys, NO_SCHEDULE};
use twinset_proto::token::sha256_hex;
use twinset_proto::v1::{Node, NodeCondition, NodeSpec, NodeStatus, ObjectMeta, Taint};

/// The Node annotation holding the SHA-256 (hex) of the node's public key.
pub const NODE_KEY_ANNOTATION: &str = "twinset.io/node-key-sha256";

/// What a join may do with a node name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// The name is free (or its node has no key yet): bind it to the presented key.
    New,
    /// The name is already bound to the presented key: nothing to write.
    Same,
    /// The name is bound to another key; the message says how to release it.
    Refused(String),
}

/// The key hash pinned on `node`, if any.
pub fn pinned_key(node: &Node) -> Option<&str> {
    node.metadata
        .as_ref()
        .and_then(|m| m.annotations.get(NODE_KEY_ANNOTATION))
        .map(String::as_str)
        .filter(|h| !h.is_empty())
}

/// True when `node` exists and is pinned to `key_hash`: what a call made with a node
/// certificate must satisfy (a deleted or re-pinned node makes its old certificate useless).
pub fn key_matches_pin(node: Option<&Node>, key_hash: &str) -> bool {
    node.and_then(pinned_key)
        .is_some_and(|pinned| twinset_proto::token::hashes_equal(pinned, key_hash))
}

/// Decides whether a joiner presenting the key `key_hash` may take the node name of
/// `existing` (None: no such node). A node with no pinned key (registered before
/// identities existed) is adopted by the first join. `node_is_live` (the node is Ready)
/// only sharpens the refusal's message: a pinned name is never taken over.
pub fn decide_pin(existing: Option<&Node>, key_hash: &str, node_is_live: bool) -> Pin {
    let Some(node) = existing else {
        return Pin::New;
    };
    match pinned_key(node) {
        None => Pin::New,
        Some(pinned) if twinset_proto::token::hashes_equal(pinned, key_hash) => Pin::Same,
        Some(_) => {
            let name = node
                .metadata
                .as_ref()
                .map(|m| m.name.as_str())
                .unwrap_or_default();
            let mut msg = format!(
                "node {name:?} is already joined with another key; delete it first \
                 (twinset delete node {name}) to let a re-installed machine join"
            );
            if node_is_live {
                msg.push_str(&format!(
                    " (node {name:?} is Ready: another machine may be running under this name)"
                ));
            }
            Pin::Refused(msg)
        }
    }
}

/// True when the stored node's agent is posting Ready.
pub fn is_live(node: &Node) -> bool {
    ready_status(node) == "True"
}

/// Binds `node` to `key_hash`.
pub fn pin(node: &mut Node, key_hash: &str) {
    node.metadata
        .get_or_insert_with(Default::default)
        .annotations
        .insert(NODE_KEY_ANNOTATION.to_string(), key_hash.to_string());
}

/// The Node a join creates for a name no node has yet: pinned, Ready Unknown (the agent
/// never posted status) and tainted not-ready, so nothing is placed there until the
/// agent registers (registration keeps the annotation and clears the taint).
pub fn joined_node(name: &str, key_hash: &str, now: &str) -> Node {
    let mut node = Node {
        metadata: Some(ObjectMeta {
            name: name.to_string(),
            ..Default::default()
        }),
        spec: Some(NodeSpec {
            taints: vec![Taint {
                key: taint_keys::NOT_READY.into(),
                value: String::new(),
                effect: NO_SCHEDULE.into(),
                time_added: now.into(),
            }],
            ..Default::default()
        }),
        status: Some(NodeStatus {
            conditions: vec![NodeCondition {
                r#type: "Ready".into(),
                status: "Unknown".into(),
                last_heartbeat_time: String::new(),
                last_transition_time: now.into(),
                reason: "NodeStatusNeverUpdated".into(),
                message: "Kubelet never posted node status.".into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    pin(&mut node, key_hash);
    node
}

/// Why a public key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not a certificate signing request, or its signature does not verify.
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    /// Not a DER certificate.
    #[error("invalid certificate: {0}")]
    Cert(String),
}

/// SHA-256 (hex) of the public key (SubjectPublicKeyInfo DER) of a PKCS#10 request,
/// whose self-signature is verified first.
pub fn csr_key_sha256(csr_der: &[u8]) -> Result<String, KeyError> {
    use rcgen::PublicKeyData;
    let csr = rcgen::CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
        .map_err(|e| KeyError::Csr(e.to_string()))?;
    Ok(sha256_hex(&csr.public_key.subject_public_key_info()))
}

/// SHA-256 (hex) of the public key (SubjectPublicKeyInfo DER) of a certificate: what a
/// verified client certificate is compared with the node's pin by.
pub fn cert_key_sha256(cert_der: &[u8]) -> Result<String, KeyError> {
    twinset_proto::certs::facts_der(cert_der)
        .map(|f| f.key_sha256)
        .map_err(KeyError::Cert)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};

    fn node(name: &str, key: Option<&str>, ready: &str) -> Node {
        let mut n = joined_node(name, key.unwrap_or(""), "2026-01-01T00:00:00Z");
        if key.is_none() {
            n.metadata.as_mut().unwrap().annotations.clear();
        }
        n.status.as_mut().unwrap().conditions[0].status = ready.into();
        n
    }

    #[test]
    fn a_name_is_bound_to_the_first_key() {
        let a = sha256_hex(b"key a");
        let b = sha256_hex(b"key b");
        assert_eq!(decide_pin(None, &a, false), Pin::New);
        assert_eq!(
            decide_pin(Some(&node("node1", None, "True")), &a, true),
            Pin::New
        );
        let pinned = node("node1", Some(&a), "True");
        assert_eq!(decide_pin(Some(&pinned), &a, true), Pin::Same);
        let Pin::Refused(msg) = decide_pin(Some(&pinned), &b, false) else {
            panic!("another key must be refused");
        };
        assert_eq!(
            msg,
            "node \"node1\" is already joined with another key; delete it first \
             (twinset delete node node1) to let a re-installed machine join"
        );
        let Pin::Refused(live) = decide_pin(Some(&pinned), &b, is_live(&pinned)) else {
            panic!("another key must be refused");
        };
        assert!(
            live.starts_with(&msg) && live.contains("is Ready"),
            "{live}"
        );
        assert!(key_matches_pin(Some(&pinned), &a));
        assert!(!key_matches_pin(Some(&pinned), &b));
        assert!(!key_matches_pin(None, &a), "a deleted node matches no key");
    }

    #[test]
    fn a_joined_node_is_pinned_unknown_and_tainted_until_it_registers() {
        let n = joined_node("node1", "abc", "2026-01-01T00:00:00Z");
        assert_eq!(pinned_key(&n), Some("abc"));
        assert_eq!(ready_status(&n), "Unknown");
        assert!(!is_live(&n));
        let t = &n.spec.as_ref().unwrap().taints[0];
        assert_eq!(
            (t.key.as_str(), t.effect.as_str()),
            (taint_keys::NOT_READY, NO_SCHEDULE)
        );
    }

    #[test]
    fn the_csr_key_hash_is_the_certificates_key_hash() {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params = CertificateParams::new(Vec::<String>::new()).unwrap();
        let csr = params.serialize_request(&key).unwrap();
        let from_csr = csr_key_sha256(csr.der()).unwrap();
        assert_eq!(from_csr, sha256_hex(&key.subject_public_key_info()));
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(cert_key_sha256(cert.der()).unwrap(), from_csr);
        assert!(matches!(csr_key_sha256(b"junk"), Err(KeyError::Csr(_))));
        assert!(matches!(cert_key_sha256(b"junk"), Err(KeyError::Cert(_))));
        // A request whose signature does not verify is refused.
        let mut tampered = csr.der().to_vec();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(csr_key_sha256(&tampered).is_err());
    }
}

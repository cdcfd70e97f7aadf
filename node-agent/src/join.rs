//! Joining the cluster with a token (issue 9), the agent's side: fetch the CA, refuse it
//! unless its SHA-256 is the one the token carries, make a key (ECDSA P-256) that never
//! leaves the machine, send a CSR with the token, and keep what comes back under
//! `<data dir>/pki/` (`node.key` 0600, `node.crt`, `node-serving.crt`, `ca.crt`) so later
//! starts need no token. `node.crt` is the client certificate the agent calls the control
//! plane with; `node-serving.crt` (same key) is what its NodeAgent endpoint serves.
//!
//! The two calls go over two channels the caller makes ([`Trust`]): the CA fetch over
//! one that trusts no certificate yet (the hash check stands in for it), the join over
//! one that trusts the CA just checked.

use std::future::Future;
use std::path::{Path, PathBuf};
use tonic::transport::Channel;
use twinset_proto::tls::server::{peer_of, Identity};
use twinset_proto::token::{sha256_hex, Token};
use twinset_proto::v1::bootstrap_client::BootstrapClient;
use twinset_proto::v1::{CaCertificateRequest, JoinRequest};

/// The key file, readable by its owner only.
pub const KEY_FILE: &str = "node.key";
/// The node's certificate.
pub const CERT_FILE: &str = "node.crt";
/// The node's serving certificate, for its NodeAgent endpoint.
pub const SERVING_CERT_FILE: &str = "node-serving.crt";
/// The cluster CA certificate.
pub const CA_FILE: &str = "ca.crt";

/// Where the agent keeps its credentials under its data dir.
pub fn pki_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("pki")
}

/// What a channel for one of the join's calls must trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Nothing yet: the CA fetch, whose answer is checked against the token's hash.
    Unverified,
    /// This CA (PEM), already checked: the Join call.
    Ca(String),
}

/// Why joining failed, or stored credentials cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// A channel to the control plane could not be made.
    #[error("cannot reach the control plane: {0}")]
    Connect(String),
    /// The CA fetch failed.
    #[error("cannot fetch the cluster CA: {0}")]
    CaFetch(String),
    /// What the control plane sent as its CA is not a PEM certificate.
    #[error("the control plane's CA is not a PEM certificate: {0}")]
    CaPem(String),
    /// The CA is not the one the token was made for.
    #[error(
        "the control plane's CA (sha256 {got}) does not match the token's ({want}); \
         not sending a certificate request"
    )]
    CaMismatch {
        /// The hash of the CA the server sent.
        got: String,
        /// The hash the token carries.
        want: String,
    },
    /// The key or CSR could not be made.
    #[error("cannot make the node key or certificate request: {0}")]
    Key(String),
    /// The control plane refused the join (its message says why).
    #[error("the control plane refused to join node {node}: {message}")]
    Refused {
        /// The node name asked for.
        node: String,
        /// The gRPC code.
        code: tonic::Code,
        /// The control plane's message.
        message: String,
    },
    /// The control plane answered with something that is not this node's certificate.
    #[error("the control plane's answer is unusable: {0}")]
    BadResponse(String),
    /// A credentials file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Stored credentials are incomplete or do not fit together.
    #[error("node credentials in {dir}: {why}")]
    Credentials {
        /// The pki directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The node's key and certificate and the CA it trusts, PEM-encoded.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeCredentials {
    /// The node's private key (PEM).
    pub key_pem: String,
    /// The node's certificate (PEM), `system:node:<name>`.
    pub cert_pem: String,
    /// The node's serving certificate (PEM) for its NodeAgent endpoint: same key and
    /// subject, server auth, the node's name as DNS name.
    pub serving_cert_pem: String,
    /// The cluster CA certificate (PEM).
    pub ca_pem: String,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials")
            .field("cert_pem", &self.cert_pem)
            .field("serving_cert_pem", &self.serving_cert_pem)
            .field("ca_pem", &self.ca_pem)
            .finish_non_exhaustive()
    }
}

/// The DER of the first certificate in `pem`.
fn cert_der(pem: &str) -> Result<Vec<u8>, String> {
    let certs = twinset_proto::tls::certs(pem, "certificate").map_err(|e| e.to_string())?;
    certs
        .first()
        .map(|c| c.to_vec())
        .ok_or_else(|| "no certificate in it".to_string())
}

/// Checks the CA the control plane sent against the token: its DER's SHA-256 must be
/// the token's CA hash. Returns that hash.
pub fn check_ca(ca_pem: &str, token: &Token) -> Result<String, JoinError> {
    let der = cert_der(ca_pem).map_err(JoinError::CaPem)?;
    let got = sha256_hex(&der);
    if !twinset_proto::token::hashes_equal(&got, token.ca_hash()) {
        return Err(JoinError::CaMismatch {
            got,
            want: token.ca_hash().to_string(),
        });
    }
    Ok(got)
}

/// Who a PEM certificate names (as a server reading it would) and its public key
/// (SubjectPublicKeyInfo DER).
fn cert_identity(cert_pem: &str) -> Result<(Identity, String), String> {
    let der = cert_der(cert_pem)?;
    let (identity, cert) = peer_of(&der);
    let cert = cert.ok_or("not an X.509 certificate")?;
    Ok((identity, cert.key_sha256))
}

/// SHA-256 (hex) of the public key of a private key (PEM), as [`cert_identity`] gives it.
fn spki_of_key(key_pem: &str) -> Result<String, String> {
    use rcgen::PublicKeyData;
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| e.to_string())?;
    Ok(sha256_hex(&key.subject_public_key_info()))
}

/// A certificate signing request (DER) for `node`'s certificate, signed with `key`: at
/// join with a new key, at renewal with the key the node joined with.
pub fn csr(key: &rcgen::KeyPair, node: &str) -> Result<Vec<u8>, JoinError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| JoinError::Key(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("system:node:{node}"));
    let csr = params
        .serialize_request(key)
        .map_err(|e| JoinError::Key(e.to_string()))?;
    Ok(csr.der().to_vec())
}

/// Joins as `node` with `token`: the CA over a channel `connect(Trust::Unverified)`
/// makes, checked against the token before anything else is sent; then the CSR over
/// one `connect(Trust::Ca(ca))` makes. Returns the new key, certificate and CA.
pub async fn join<C, Fut>(
    mut connect: C,
    token: &Token,
    node: &str,
) -> Result<NodeCredentials, JoinError>
where
    C: FnMut(Trust) -> Fut,
    Fut: Future<Output = Result<Channel, JoinError>>,
{
    let mut first = BootstrapClient::new(connect(Trust::Unverified).await?);
    let ca_pem = first
        .ca_certificate(CaCertificateRequest {})
        .await
        .map_err(|s| JoinError::CaFetch(format!("{:?}: {}", s.code(), s.message())))?
        .into_inner()
        .ca_pem;
    let ca_hash = check_ca(&ca_pem, token)?;
    drop(first);

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| JoinError::Key(e.to_string()))?;
    let csr = csr(&key, node)?;

    let mut second = BootstrapClient::new(connect(Trust::Ca(ca_pem.clone())).await?);
    let answer = second
        .join(JoinRequest {
            token: token.to_string(),
            node_name: node.to_string(),
            csr_der: csr,
        })
        .await
        .map_err(|s| JoinError::Refused {
            node: node.to_string(),
            code: s.code(),
            message: s.message().to_string(),
        })?
        .into_inner();

    // What came back must be this key's certificate, for this node, under this CA.
    let returned_ca = sha256_hex(&cert_der(&answer.ca_pem).map_err(JoinError::BadResponse)?);
    if returned_ca != ca_hash {
        return Err(JoinError::BadResponse(format!(
            "the join answered with another CA (sha256 {returned_ca}, expected {ca_hash})"
        )));
    }
    let creds = NodeCredentials {
        key_pem: key.serialize_pem(),
        cert_pem: answer.certificate_pem,
        serving_cert_pem: answer.serving_certificate_pem,
        ca_pem,
    };
    creds.check(node).map_err(JoinError::BadResponse)?;
    Ok(creds)
}

impl NodeCredentials {
    /// The node name the certificate is for (`system:node:<name>` in `system:nodes`).
    pub fn node_name(&self) -> Result<String, String> {
        node_of(&self.cert_pem, "the certificate")
    }

    /// Checks that the certificate is for `node` and for this key.
    pub fn check(&self, node: &str) -> Result<(), String> {
        let name = self.node_name()?;
        if name != node {
            return Err(format!(
                "the certificate is for node {name:?}, not {node:?}"
            ));
        }
        self.check_key()
    }

    /// False for a node that joined before agents served TLS (no `node-serving.crt`):
    /// it gets one with its first renewal.
    pub fn has_serving_cert(&self) -> bool {
        !self.serving_cert_pem.trim().is_empty()
    }

    /// Checks that both certificates are for this key and the same node, and that the
    /// CA is a certificate.
    fn check_key(&self) -> Result<(), String> {
        let (_, cert_key) = cert_identity(&self.cert_pem)?;
        let key = spki_of_key(&self.key_pem).map_err(|e| format!("the key: {e}"))?;
        if cert_key != key {
            return Err("the certificate is not for the node's key".into());
        }
        cert_der(&self.ca_pem).map_err(|e| format!("the CA: {e}"))?;
        if !self.has_serving_cert() {
            return Ok(());
        }
        let (_, serving_key) = cert_identity(&self.serving_cert_pem)
            .map_err(|e| format!("the serving certificate: {e}"))?;
        if serving_key != key {
            return Err("the serving certificate is not for the node's key".into());
        }
        let (client, serving) = (
            self.node_name()?,
            node_of(&self.serving_cert_pem, "the serving certificate")?,
        );
        if client != serving {
            return Err(format!(
                "the serving certificate is for node {serving:?}, the certificate for {client:?}"
            ));
        }
        cert_der(&self.ca_pem).map_err(|e| format!("the CA: {e}"))?;
        Ok(())
    }

    /// Writes the credentials under `dir` (made mode 0700 when missing): the CA, then
    /// the key (0600), then the serving certificate and the certificate, each written to a
    /// temporary file and renamed, so a crash never leaves a half-written file.
    pub fn save(&self, dir: &Path) -> Result<(), JoinError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        write_atomic(&dir.join(CA_FILE), &self.ca_pem, 0o644)?;
        write_atomic(&dir.join(KEY_FILE), &self.key_pem, 0o600)?;
        write_atomic(&dir.join(SERVING_CERT_FILE), &self.serving_cert_pem, 0o644)?;
        write_atomic(&dir.join(CERT_FILE), &self.cert_pem, 0o644)
    }

    /// The credentials saved under `dir`; None when the node has not joined yet (no key
    /// and no certificate). Incomplete or mismatched files are an error, as is a key
    /// file others may read.
    pub fn load(dir: &Path) -> Result<Option<NodeCredentials>, JoinError> {
        use std::os::unix::fs::PermissionsExt;
        let (key, cert, ca) = (dir.join(KEY_FILE), dir.join(CERT_FILE), dir.join(CA_FILE));
        if !key.exists() && !cert.exists() {
            return Ok(None);
        }
        let bad = |why: String| JoinError::Credentials {
            dir: dir.to_path_buf(),
            why,
        };
        for f in [&key, &cert, &ca] {
            if !f.exists() {
                return Err(bad(format!(
                    "{} is missing; delete the directory and join again with a token",
                    f.display()
                )));
            }
        }
        let serving = dir.join(SERVING_CERT_FILE);
        let mode = std::fs::metadata(&key)
            .map_err(io(&key))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "{} is readable by others (mode {:o}); chmod 600 it",
                key.display(),
                mode & 0o777
            )));
        }
        let read = |p: &Path| std::fs::read_to_string(p).map_err(io(p));
        let creds = NodeCredentials {
            key_pem: read(&key)?,
            cert_pem: read(&cert)?,
            // A node that joined before agents served TLS has none yet: the caller gets
            // one by renewing (see `has_serving_cert`).
            serving_cert_pem: if serving.exists() {
                read(&serving)?
            } else {
                String::new()
            },
            ca_pem: read(&ca)?,
        };
        creds.check_key().map_err(bad)?;
        Ok(Some(creds))
    }
}

/// The node named by a certificate, or why it names none (`what` says which one).
fn node_of(cert_pem: &str, what: &str) -> Result<String, String> {
    match cert_identity(cert_pem)
        .map_err(|e| format!("{what}: {e}"))?
        .0
    {
        Identity::Node(name) => Ok(name),
        other => Err(format!("{what} is for {:?}, not a node", other.user())),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JoinError + '_ {
    move |source| JoinError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `text` to `path` atomically, created with `mode`.
fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<(), JoinError> {
    twinset_proto::files::write_atomic(path, text, mode).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P256_SHA256};
    use std::os::unix::fs::PermissionsExt;

    fn self_signed(cn: &str, ca: bool) -> (KeyPair, String) {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = signed_with(&key, cn, ca);
        (key, cert)
    }

    /// A self-signed certificate for `key`; a `system:node:` one in the node group.
    fn signed_with(key: &KeyPair, cn: &str, ca: bool) -> String {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if cn.starts_with("system:node:") {
            p.distinguished_name.push(
                rcgen::DnType::OrganizationName,
                twinset_proto::tls::server::NODES_GROUP,
            );
        }
        if ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        }
        p.self_signed(key).unwrap().pem()
    }

    fn token_for(ca_pem: &str) -> Token {
        let hash = sha256_hex(&cert_der(ca_pem).unwrap());
        Token::generate(&hash).unwrap()
    }

    #[test]
    fn the_ca_must_be_the_one_the_token_names() {
        let (_, ca) = self_signed("twinset-ca", true);
        let (_, other) = self_signed("twinset-ca", true);
        let token = token_for(&ca);
        assert_eq!(check_ca(&ca, &token).unwrap(), token.ca_hash());
        let err = check_ca(&other, &token).unwrap_err();
        let got = sha256_hex(&cert_der(&other).unwrap());
        assert_eq!(
            err.to_string(),
            format!(
                "the control plane's CA (sha256 {got}) does not match the token's ({}); \
                 not sending a certificate request",
                token.ca_hash()
            )
        );
        assert!(matches!(
            check_ca("garbage", &token),
            Err(JoinError::CaPem(_))
        ));
    }

    #[test]
    fn saved_credentials_load_back_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki_dir(dir.path());
        assert!(
            NodeCredentials::load(&pki).unwrap().is_none(),
            "not joined yet"
        );
        let (key, cert) = self_signed("system:node:node1", false);
        let serving = signed_with(&key, "system:node:node1", false);
        let (_, ca) = self_signed("twinset-ca", true);
        let creds = NodeCredentials {
            key_pem: key.serialize_pem(),
            cert_pem: cert,
            serving_cert_pem: serving,
            ca_pem: ca,
        };
        creds.check("node1").unwrap();
        assert!(creds.check("node2").is_err());
        creds.save(&pki).unwrap();
        let mode = |f: &str| std::fs::metadata(pki.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(KEY_FILE), 0o600);
        assert_eq!(mode(CERT_FILE), 0o644);
        assert_eq!(mode(SERVING_CERT_FILE), 0o644);
        assert_eq!(mode(CA_FILE), 0o644);
        assert_eq!(
            std::fs::metadata(&pki).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(NodeCredentials::load(&pki).unwrap(), Some(creds.clone()));
        // Saving again (a renewal) replaces the files.
        creds.save(&pki).unwrap();
        assert!(
            !format!("{creds:?}").contains("PRIVATE KEY"),
            "Debug hides the key"
        );

        // A key others can read is refused.
        std::fs::set_permissions(pki.join(KEY_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let err = NodeCredentials::load(&pki).unwrap_err();
        assert!(err.to_string().contains("readable by others"), "{err}");
        std::fs::set_permissions(pki.join(KEY_FILE), std::fs::Permissions::from_mode(0o600))
            .unwrap();

        // A serving certificate for another key, or another node, is refused.
        let (_, stranger) = self_signed("system:node:node1", false);
        std::fs::write(pki.join(SERVING_CERT_FILE), &stranger).unwrap();
        let err = NodeCredentials::load(&pki).unwrap_err();
        assert!(
            err.to_string()
                .contains("serving certificate is not for the node's key"),
            "{err}"
        );
        std::fs::write(
            pki.join(SERVING_CERT_FILE),
            signed_with(&key, "system:node:node2", false),
        )
        .unwrap();
        let err = NodeCredentials::load(&pki).unwrap_err();
        assert!(
            err.to_string()
                .contains("serving certificate is for node \"node2\""),
            "{err}"
        );
        creds.save(&pki).unwrap();

        // A node that joined before serving certificates loads without one (its agent
        // then renews to get it).
        std::fs::remove_file(pki.join(SERVING_CERT_FILE)).unwrap();
        let old = NodeCredentials::load(&pki).unwrap().unwrap();
        assert!(!old.has_serving_cert());
        assert_eq!(old.cert_pem, creds.cert_pem);
        creds.save(&pki).unwrap();
        assert!(NodeCredentials::load(&pki)
            .unwrap()
            .unwrap()
            .has_serving_cert());

        // A certificate for another key is refused.
        std::fs::write(pki.join(CERT_FILE), stranger).unwrap();
        let err = NodeCredentials::load(&pki).unwrap_err();
        assert!(err.to_string().contains("not for the node's key"), "{err}");

        // A missing file is named.
        std::fs::remove_file(pki.join(CA_FILE)).unwrap();
        let err = NodeCredentials::load(&pki).unwrap_err();
        assert!(err.to_string().contains("ca.crt is missing"), "{err}");
    }
}

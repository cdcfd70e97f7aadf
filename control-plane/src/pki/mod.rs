//! The cluster's certificate authority: a CA made on first start (ECDSA P-256, 10 years)
//! or given by the operator (`--tls-ca-cert/--tls-ca-key`, checked and copied in), kept
//! under `<data>/pki/` with its key readable by the owner only, and the certificates it
//! signs — the server's, the admin's and the nodes'. A node's certificate is built from
//! the CSR's public key alone: nothing else the CSR asks for (subject, SANs, CA flag,
//! usages, lifetime) is taken.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    PKCS_ECDSA_P256_SHA256,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

/// How long the cluster CA is valid.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The names certificates carry (node group, the control plane's common name, admin
/// group): one definition, shared with the identity parser.
pub use twinset_proto::tls::server::{ADMINS_GROUP, NODES_GROUP, SERVER_CN};

/// What can go wrong making, loading or using the CA.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file under the pki directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate or key could not be made, parsed or signed.
    #[error("{what}: {source}")]
    Cert {
        /// What was being done.
        what: String,
        /// Why.
        source: rcgen::Error,
    },
    /// The CSR does not name the key it was signed with, or is not a CSR.
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    /// A stored certificate is not valid PEM.
    #[error("{0}")]
    Pem(String),
    /// A CA file the operator gave (`--tls-ca-cert`, `--tls-ca-key`) cannot be used.
    #[error("{path}: {reason}")]
    OperatorCa {
        /// The file.
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// The operator's CA is not the one the data dir already holds (which signed the
    /// nodes' certificates); nothing was changed.
    #[error(
        "--tls-ca-cert {given} (sha256 {given_hash}) is not this cluster's CA: {stored} \
         holds another one (sha256 {stored_hash}), which signed the nodes' certificates; \
         nothing was changed (start without --tls-ca-cert/--tls-ca-key to keep the \
         cluster's CA)"
    )]
    CaMismatch {
        /// The operator's certificate file.
        given: PathBuf,
        /// Its SHA-256.
        given_hash: String,
        /// The data dir's CA certificate.
        stored: PathBuf,
        /// Its SHA-256.
        stored_hash: String,
    },
}

/// The CA an operator gives (`--tls-ca-cert FILE --tls-ca-key FILE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFiles {
    /// The CA certificate (PEM, one certificate).
    pub cert: PathBuf,
    /// Its private key (PEM, unencrypted PKCS#8).
    pub key: PathBuf,
}

fn cert_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> Error {
    let what = what.into();
    move |source| Error::Cert { what, source }
}

/// A certificate and its key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PEM); empty for a certificate made from a CSR (the node keeps it).
    pub key_pem: String,
    /// When it stops being valid.
    pub not_after: OffsetDateTime,
    /// Its serial number, lower-case hex.
    pub serial: String,
}

/// A node's certificates: its client certificate (calls to the control plane) and its
/// serving certificate (its daemon endpoint), for one key.
#[derive(Clone, Debug)]
pub struct NodeCerts {
    /// `system:node:<name>`, client auth only.
    pub client: Issued,
    /// `system:node:<name>`, server auth only, the node's name as its DNS name.
    pub serving: Issued,
}

/// The cluster CA: its certificate and the issuer that signs with its key.
pub struct ClusterCa {
    cert_pem: String,
    cert_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa")
            .field("hash", &self.hash())
            .finish()
    }
}

impl ClusterCa {
    /// The CA under `dir` with `operator`'s files, if given: with none, as
    /// [`ClusterCa::load_or_create`]; otherwise the files are checked (a CA certificate
    /// whose key is the one given) and copied to `dir` when it holds no CA yet, or must
    /// be the CA it holds (else [`Error::CaMismatch`], and nothing is written).
    pub fn open(dir: &Path, operator: Option<&CaFiles>) -> Result<ClusterCa, Error> {
        let Some(files) = operator else {
            return Self::load_or_create(dir);
        };
        let (cert_der, key) = read_operator_ca(files)?;
        let crt = dir.join("ca.crt");
        if crt.exists() || key_path(dir).exists() {
            let stored = Self::load(dir)?;
            if stored.cert_der != cert_der {
                return Err(Error::CaMismatch {
                    given: files.cert.clone(),
                    given_hash: twinset_proto::token::sha256_hex(&cert_der),
                    stored: crt,
                    stored_hash: stored.hash(),
                });
            }
            return Ok(stored);
        }
        let cert_pem = der_to_pem(&cert_der);
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_private_atomic(&key_path(dir), &key.serialize_pem())?;
        write_public(&crt, &cert_pem)?;
        tracing::info!(cert = %files.cert.display(), "the operator's CA is now the cluster CA");
        Self::from_pem(cert_pem, key)
    }

    /// The CA already under `dir`.
    fn load(dir: &Path) -> Result<ClusterCa, Error> {
        let cert_pem = read(&dir.join("ca.crt"))?;
        let key = KeyPair::from_pem(&read(&key_path(dir))?).map_err(cert_err("reading ca.key"))?;
        Self::from_pem(cert_pem, key)
    }

    /// The CA under `dir` (`ca.crt`, `ca.key`), made there on first use.
    pub fn load_or_create(dir: &Path) -> Result<ClusterCa, Error> {
        if dir.join("ca.crt").exists() && key_path(dir).exists() {
            return Self::load(dir);
        }
        let crt = dir.join("ca.crt");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(cert_err("generating the CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("twinset-ca", None);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + CA_LIFETIME;
        params.serial_number = Some(serial());
        let cert = params
            .self_signed(&key)
            .map_err(cert_err("making the CA certificate"))?;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        write_private_atomic(&key_path(dir), &key.serialize_pem())?;
        write_public(&crt, &cert.pem())?;
        Self::from_pem(cert.pem(), key)
    }

    fn from_pem(cert_pem: String, key: KeyPair) -> Result<ClusterCa, Error> {
        let cert_der = pem_to_der(&cert_pem)?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(cert_err("reading ca.crt"))?;
        Ok(ClusterCa {
            cert_pem,
            cert_der,
            issuer,
        })
    }

    /// The CA certificate (PEM), what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate's DER, lower-case hex: what a join token pins.
    pub fn hash(&self) -> String {
        twinset_proto::token::sha256_hex(&self.cert_der)
    }

    /// A server certificate for `sans` (DNS names or IP addresses), valid for `ttl`.
    pub fn issue_server(&self, sans: &[String], ttl: Duration) -> Result<Issued, Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(cert_err("generating the server key"))?;
        let mut params = leaf(SERVER_CN, None, ttl);
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s
                    .clone()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(cert_err(format!("subject alternative name {s:?}"))),
            })
            .collect::<Result<_, _>>()?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            // The control plane also dials the agents with it.
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.sign(params, key, "the server certificate")
    }

    /// The admin client certificate (`admin`, group `system:masters`), valid for `ttl`.
    pub fn issue_admin(&self, ttl: Duration) -> Result<Issued, Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(cert_err("generating the admin key"))?;
        let mut params = leaf("admin", Some(ADMINS_GROUP), ttl);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, key, "the admin certificate")
    }

    /// Both certificates of a node for the public key of `csr_der`, valid for `ttl`: what
    /// a join and a renewal issue.
    pub fn sign_node(&self, csr_der: &[u8], node: &str, ttl: Duration) -> Result<NodeCerts, Error> {
        Ok(NodeCerts {
            client: self.sign_node_csr(csr_der, node, ttl)?,
            serving: self.sign_node_serving(csr_der, node, ttl)?,
        })
    }

    /// A node's client certificate (`system:node:<node>`, group `system:nodes`, client
    /// auth only, valid for `ttl`) for the public key of `csr_der`; everything else the
    /// CSR asks for is ignored.
    pub fn sign_node_csr(
        &self,
        csr_der: &[u8],
        node: &str,
        ttl: Duration,
    ) -> Result<Issued, Error> {
        let csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| Error::Csr(e.to_string()))?;
        let mut params = leaf(&format!("system:node:{node}"), Some(NODES_GROUP), ttl);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(cert_err(format!("signing node {node}'s certificate")))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: String::new(),
            not_after: params.not_after,
            serial: serial_hex(&params),
        })
    }

    /// A node's serving certificate, for its NodeAgent endpoint: the public key of
    /// `csr_der` (the node's one key), subject `system:node:<node>` in `system:nodes`,
    /// server auth only, the node's name as its one DNS name (what the control plane
    /// checks when it calls the agent), valid for `ttl`. Nothing else the CSR asks for is
    /// taken.
    pub fn sign_node_serving(
        &self,
        csr_der: &[u8],
        node: &str,
        ttl: Duration,
    ) -> Result<Issued, Error> {
        let csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| Error::Csr(e.to_string()))?;
        let mut params = leaf(&format!("system:node:{node}"), Some(NODES_GROUP), ttl);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let dns = node
            .to_string()
            .try_into()
            .map_err(cert_err(format!("node name {node:?} as a DNS name")))?;
        params.subject_alt_names = vec![SanType::DnsName(dns)];
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(cert_err(format!(
                "signing node {node}'s serving certificate"
            )))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: String::new(),
            not_after: params.not_after,
            serial: serial_hex(&params),
        })
    }

    fn sign(&self, params: CertificateParams, key: KeyPair, what: &str) -> Result<Issued, Error> {
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(cert_err(format!("signing {what}")))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: params.not_after,
            serial: serial_hex(&params),
        })
    }
}

/// How far back a certificate's validity starts, for clocks a little behind: 5 minutes,
/// or a tenth of a short lifetime (so that renewing at 70 % of the whole validity, as
/// holders do, still comes before the end).
fn backdate(ttl: Duration) -> time::Duration {
    let d = Duration::from_secs(300).min(ttl / 10);
    time::Duration::try_from(d).unwrap_or(time::Duration::ZERO)
}

/// Leaf parameters: subject, not a CA, digital signature, a random serial, valid from a
/// little before now (see [`backdate`]) to now + `ttl`.
fn leaf(cn: &str, org: Option<&str>, ttl: Duration) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn, org);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - backdate(ttl);
    params.not_after = now + ttl;
    params.serial_number = Some(serial());
    params
}

fn name(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

/// The serial of `params` as lower-case hex.
fn serial_hex(params: &CertificateParams) -> String {
    params
        .serial_number
        .as_ref()
        .map(|s| s.as_ref().iter().map(|b| format!("{b:02x}")).collect())
        .unwrap_or_default()
}

/// 16 random bytes, first bit clear (a positive serial).
fn serial() -> SerialNumber {
    let mut b: [u8; 16] = rand::random();
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

/// The DER inside a PEM certificate.
fn pem_to_der(pem: &str) -> Result<Vec<u8>, Error> {
    let certs = twinset_proto::tls::certs(pem, "the CA certificate")
        .map_err(|e| Error::Pem(e.to_string()))?;
    certs
        .first()
        .map(|c| c.to_vec())
        .ok_or_else(|| Error::Pem("the CA certificate: no certificate in it".into()))
}

/// The certificate (DER) and key of an operator's CA, checked: one certificate, a CA
/// (basicConstraints CA, keyCertSign when key usage is given) valid now, and a key
/// rcgen can sign with whose public key is the certificate's.
fn read_operator_ca(files: &CaFiles) -> Result<(Vec<u8>, KeyPair), Error> {
    let refuse = |path: &Path, reason: String| Error::OperatorCa {
        path: path.to_path_buf(),
        reason,
    };
    let cert_path = &files.cert;
    let certs = twinset_proto::tls::certs(&read(cert_path)?, "--tls-ca-cert")
        .map_err(|e| refuse(cert_path, format!("not a PEM certificate ({e})")))?;
    let [der] = certs.as_slice() else {
        return Err(refuse(
            cert_path,
            format!(
                "holds {} certificates; give the CA certificate alone",
                certs.len()
            ),
        ));
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| refuse(cert_path, format!("not an X.509 certificate: {e}")))?;
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca);
    if !is_ca {
        return Err(refuse(
            cert_path,
            "not a CA certificate (its basicConstraints do not say CA:TRUE)".into(),
        ));
    }
    match cert.key_usage() {
        Ok(Some(usage)) if !usage.value.key_cert_sign() => {
            return Err(refuse(
                cert_path,
                "its key usage does not allow signing certificates (keyCertSign)".into(),
            ))
        }
        Ok(_) => {}
        Err(e) => {
            return Err(refuse(
                cert_path,
                format!("its key usage extension cannot be read: {e}"),
            ))
        }
    }
    let validity = cert.validity();
    if !validity.is_valid() {
        return Err(refuse(
            cert_path,
            format!(
                "not valid now (valid from {} to {})",
                validity.not_before, validity.not_after
            ),
        ));
    }
    let key_path = &files.key;
    let pkcs8 = match twinset_proto::tls::key(&read(key_path)?, "--tls-ca-key") {
        Ok(rustls::pki_types::PrivateKeyDer::Pkcs8(k)) => k,
        Ok(_) => return Err(refuse(key_path, format!("not a PKCS#8 key; {CONVERT_KEY}"))),
        Err(e) => {
            return Err(refuse(
                key_path,
                format!("no private key in it ({e}); {CONVERT_KEY}"),
            ))
        }
    };
    let key = KeyPair::try_from(&pkcs8).map_err(|e| {
        refuse(
            key_path,
            format!(
                "not a key this cluster can sign with ({e}); it signs with ECDSA P-256 or \
                 P-384, Ed25519 or RSA keys"
            ),
        )
    })?;
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(refuse(
            key_path,
            format!(
                "not the key of {}: its public key differs from the certificate's",
                cert_path.display()
            ),
        ));
    }
    Ok((der.to_vec(), key))
}

/// How to turn another key format into what rcgen reads.
const CONVERT_KEY: &str =
    "an unencrypted PKCS#8 key (BEGIN PRIVATE KEY) is needed: convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY`";

/// A certificate's DER as PEM.
fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

fn key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(io(path))
}

/// Replaces a file that holds a key (the CA key, a kubeconfig), created 0600.
pub fn write_private_atomic(path: &Path, text: &str) -> Result<(), Error> {
    twinset_proto::files::write_atomic(path, text, 0o600).map_err(io(path))
}

fn write_public(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// What a certificate says about itself, read back from its PEM.
    struct Seen {
        cn: String,
        org: Option<String>,
        is_ca: bool,
        client_auth: bool,
        server_auth: bool,
        sans: Vec<String>,
        not_after: i64,
    }

    fn read_back(pem: &str) -> Seen {
        let der = pem_to_der(pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("a certificate");
        let subject = cert.subject();
        let cn = subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let org = subject
            .iter_organization()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_string);
        let eku = cert
            .extended_key_usage()
            .ok()
            .flatten()
            .map(|e| e.value.clone());
        let sans = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|s| {
                s.value
                    .general_names
                    .iter()
                    .map(|n| n.to_string())
                    .collect()
            })
            .unwrap_or_default();
        Seen {
            cn,
            org,
            is_ca: cert.is_ca(),
            client_auth: eku.as_ref().is_some_and(|e| e.client_auth),
            server_auth: eku.as_ref().is_some_and(|e| e.server_auth),
            sans,
            not_after: cert.validity().not_after.timestamp(),
        }
    }

    fn days_left(s: &Seen) -> i64 {
        (s.not_after - OffsetDateTime::now_utc().unix_timestamp()) / 86_400
    }

    #[test]
    fn the_ca_is_made_once_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let first = ClusterCa::load_or_create(&pki).unwrap();
        let again = ClusterCa::load_or_create(&pki).unwrap();
        assert_eq!(first.hash(), again.hash(), "loaded, not made again");
        assert_eq!(first.hash().len(), 64);
        let mode = std::fs::metadata(pki.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let ca = read_back(first.cert_pem());
        assert!(ca.is_ca);
        assert!(days_left(&ca) >= 3649, "ten years");
    }

    #[test]
    fn a_node_certificate_takes_only_the_public_key_from_the_csr() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        // A CSR that asks for everything it must not get.
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut greedy = CertificateParams::new(vec!["control-plane.example".to_string()]).unwrap();
        greedy.distinguished_name = name("admin", Some(ADMINS_GROUP));
        greedy.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        greedy.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let csr = greedy.serialize_request(&key).unwrap();

        let issued = ca.sign_node_csr(csr.der(), "node1", 30 * DAY).unwrap();
        let got = read_back(&issued.cert_pem);
        assert_eq!(got.cn, "system:node:node1");
        assert_eq!(got.org.as_deref(), Some(NODES_GROUP));
        assert!(!got.is_ca, "never a CA");
        assert!(got.client_auth && !got.server_auth, "client auth only");
        assert!(got.sans.is_empty(), "no names from the CSR: {:?}", got.sans);
        assert!((29..=30).contains(&days_left(&got)));
        assert!(issued.key_pem.is_empty(), "the node keeps its key");

        assert!(matches!(
            ca.sign_node_csr(b"not a csr", "node1", DAY),
            Err(Error::Csr(_))
        ));
    }

    #[test]
    fn a_serving_certificate_is_for_the_node_name_and_server_auth_only() {
        use rcgen::PublicKeyData;
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        // A CSR that asks for other names, a CA flag and client auth.
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut greedy = CertificateParams::new(vec![
            "control-plane.example".to_string(),
            "127.0.0.1".to_string(),
        ])
        .unwrap();
        greedy.distinguished_name = name("admin", Some(ADMINS_GROUP));
        greedy.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        greedy.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let csr = greedy.serialize_request(&key).unwrap();

        let issued = ca.sign_node_serving(csr.der(), "node2", 30 * DAY).unwrap();
        let got = read_back(&issued.cert_pem);
        assert_eq!(got.cn, "system:node:node2");
        assert_eq!(got.org.as_deref(), Some(NODES_GROUP));
        assert!(!got.is_ca, "never a CA");
        assert!(got.server_auth && !got.client_auth, "server auth only");
        assert_eq!(
            got.sans,
            ["DNSName(node2)"],
            "the node's name, nothing else"
        );
        assert!((29..=30).contains(&days_left(&got)));
        assert!(issued.key_pem.is_empty(), "the node keeps its key");
        let der = pem_to_der(&issued.cert_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.public_key().raw,
            key.subject_public_key_info().as_slice(),
            "the CSR's key"
        );

        assert!(matches!(
            ca.sign_node_serving(b"not a csr", "node2", DAY),
            Err(Error::Csr(_))
        ));
    }

    #[test]
    fn server_and_admin_certificates_say_who_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::load_or_create(dir.path()).unwrap();
        let server = ca
            .issue_server(&["localhost".into(), "127.0.0.1".into()], DAY)
            .unwrap();
        let got = read_back(&server.cert_pem);
        assert_eq!(got.sans, ["DNSName(localhost)", "IPAddress(7f:00:00:01)"]);
        assert!(got.server_auth && !got.is_ca);
        assert!(!server.key_pem.is_empty());
        let admin = read_back(&ca.issue_admin(DAY).unwrap().cert_pem);
        assert_eq!(admin.cn, "admin");
        assert_eq!(admin.org.as_deref(), Some(ADMINS_GROUP));
        assert!(admin.client_auth && !admin.server_auth);
    }

    /// A CA an operator made elsewhere: its certificate and key in files of `dir`.
    fn operator_ca(
        dir: &Path,
        name_: &str,
        alg: &'static rcgen::SignatureAlgorithm,
        edit: impl FnOnce(&mut CertificateParams),
    ) -> (CaFiles, String) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = name(name_, Some("Lab Inc"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        edit(&mut params);
        let cert = params.self_signed(&key).unwrap();
        let files = CaFiles {
            cert: dir.join(format!("{name_}.crt")),
            key: dir.join(format!("{name_}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        (files, twinset_proto::token::sha256_hex(cert.der()))
    }

    /// Every file under `dir` with its contents.
    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| (e.path(), std::fs::read(e.path()).unwrap()))
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    #[test]
    fn an_operators_ca_is_copied_in_and_signs_for_the_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let (files, hash) = operator_ca(dir.path(), "lab-ca", &PKCS_ECDSA_P256_SHA256, |_| {});
        let ca = ClusterCa::open(&pki, Some(&files)).unwrap();
        assert_eq!(ca.hash(), hash, "the operator's CA, not a new one");
        let mode = std::fs::metadata(pki.join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).unwrap())
                .unwrap()
                .public_key_raw(),
            KeyPair::from_pem(&std::fs::read_to_string(&files.key).unwrap())
                .unwrap()
                .public_key_raw()
        );
        // What it signs names it as issuer.
        let server = ca.issue_server(&["localhost".into()], DAY).unwrap();
        let der = pem_to_der(&server.cert_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(
            cert.issuer().to_string().contains("lab-ca"),
            "{}",
            cert.issuer()
        );
        // Later starts: with the same files, or without them, the same CA.
        assert_eq!(ClusterCa::open(&pki, Some(&files)).unwrap().hash(), hash);
        assert_eq!(ClusterCa::open(&pki, None).unwrap().hash(), hash);
    }

    #[test]
    fn ed25519_and_p384_operator_cas_are_accepted() {
        for alg in [&rcgen::PKCS_ED25519, &rcgen::PKCS_ECDSA_P384_SHA384] {
            let dir = tempfile::tempdir().unwrap();
            let (files, hash) = operator_ca(dir.path(), "ca", alg, |_| {});
            let ca = ClusterCa::open(&dir.path().join("pki"), Some(&files)).unwrap();
            assert_eq!(ca.hash(), hash);
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
            let csr = CertificateParams::default()
                .serialize_request(&key)
                .unwrap();
            let node = ca.sign_node_csr(csr.der(), "node1", DAY).unwrap();
            assert_eq!(read_back(&node.cert_pem).cn, "system:node:node1");
        }
    }

    #[test]
    fn another_ca_on_a_data_dir_that_has_one_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let made = ClusterCa::load_or_create(&pki).unwrap();
        let before = snapshot(&pki);
        let (files, hash) = operator_ca(dir.path(), "other-ca", &PKCS_ECDSA_P256_SHA256, |_| {});
        let err = ClusterCa::open(&pki, Some(&files)).unwrap_err();
        assert!(matches!(err, Error::CaMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        for want in [
            files.cert.display().to_string(),
            hash,
            made.hash(),
            "signed the nodes' certificates".into(),
            "nothing was changed".into(),
        ] {
            assert!(msg.contains(&want), "{msg:?} lacks {want:?}");
        }
        assert_eq!(snapshot(&pki), before, "the stored CA is untouched");
    }

    #[test]
    fn unusable_operator_ca_files_are_refused_naming_the_file_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let refused = |files: &CaFiles| -> (PathBuf, String) {
            match ClusterCa::open(&pki, Some(files)).unwrap_err() {
                Error::OperatorCa { path, reason } => (path, reason),
                other => panic!("{other:?}"),
            }
        };
        let (good, _) = operator_ca(dir.path(), "good", &PKCS_ECDSA_P256_SHA256, |_| {});

        // A leaf certificate, not a CA.
        let (leaf, _) = operator_ca(dir.path(), "leaf", &PKCS_ECDSA_P256_SHA256, |p| {
            p.is_ca = IsCa::ExplicitNoCa;
        });
        let (path, why) = refused(&leaf);
        assert_eq!(path, leaf.cert);
        assert!(why.contains("not a CA certificate"), "{why}");

        // A CA that may not sign certificates.
        let (no_sign, _) = operator_ca(dir.path(), "nosign", &PKCS_ECDSA_P256_SHA256, |p| {
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        });
        let (path, why) = refused(&no_sign);
        assert_eq!(path, no_sign.cert);
        assert!(why.contains("keyCertSign"), "{why}");

        // Expired.
        let (old, _) = operator_ca(dir.path(), "old", &PKCS_ECDSA_P256_SHA256, |p| {
            p.not_before = OffsetDateTime::now_utc() - time::Duration::days(20);
            p.not_after = OffsetDateTime::now_utc() - time::Duration::days(10);
        });
        let (path, why) = refused(&old);
        assert_eq!(path, old.cert);
        assert!(why.contains("not valid now"), "{why}");

        // The key of another CA.
        let (other, _) = operator_ca(dir.path(), "other", &PKCS_ECDSA_P256_SHA256, |_| {});
        let mismatched = CaFiles {
            cert: good.cert.clone(),
            key: other.key.clone(),
        };
        let (path, why) = refused(&mismatched);
        assert_eq!(path, other.key);
        assert!(why.contains("not the key of"), "{why}");

        // A SEC1 key (what `openssl ecparam -genkey` writes).
        let sec1 = dir.path().join("sec1.key");
        std::fs::write(
            &sec1,
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        let (path, why) = refused(&CaFiles {
            cert: good.cert.clone(),
            key: sec1.clone(),
        });
        assert_eq!(path, sec1);
        assert!(
            why.contains("PKCS#8") && why.contains("openssl pkcs8"),
            "{why}"
        );

        // Two certificates in one file; no certificate at all.
        let two = dir.path().join("two.crt");
        let text = std::fs::read_to_string(&good.cert).unwrap();
        std::fs::write(&two, format!("{text}{text}")).unwrap();
        let (path, why) = refused(&CaFiles {
            cert: two.clone(),
            key: good.key.clone(),
        });
        assert_eq!(path, two);
        assert!(why.contains("holds 2 certificates"), "{why}");
        let (path, why) = refused(&CaFiles {
            cert: good.key.clone(),
            key: good.key.clone(),
        });
        assert_eq!(path, good.key);
        assert!(why.contains("not a PEM certificate"), "{why}");

        // A missing file.
        let missing = CaFiles {
            cert: dir.path().join("nope.crt"),
            key: good.key.clone(),
        };
        let err = ClusterCa::open(&pki, Some(&missing)).unwrap_err();
        assert!(err.to_string().contains("nope.crt"), "{err}");

        assert!(!pki.exists(), "nothing written for a refused CA");
        // The good one still goes in.
        ClusterCa::open(&pki, Some(&good)).unwrap();
    }
}

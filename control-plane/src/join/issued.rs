//! What the CA issued to each node, kept on its Node as annotations (serial and expiry,
//! never the certificate itself), so that `twinset certs check` can list every node
//! certificate with the control plane's own, and an operator can see a node that has
//! stopped renewing.

use crate::pki::{Issued, NodeCerts};
use crate::store::{update_with_retry, Change, Error as StoreError, Key, Store};
use twinset_proto::v1::{CertificateInfo, Node};
use twinset_proto::Kind;

/// The annotation recording a node's client certificate: `serial=<hex> notAfter=<RFC 3339>`.
pub const CLIENT_CERT_ANNOTATION: &str = "twinset.io/client-certificate";
/// The annotation recording a node's serving certificate (its daemon endpoint).
pub const SERVING_CERT_ANNOTATION: &str = "twinset.io/serving-certificate";

/// The annotation value for `issued`.
pub fn value(issued: &Issued) -> String {
    let not_after = rfc3339(issued.not_after.unix_timestamp());
    format!("serial={} notAfter={not_after}", issued.serial)
}

/// Seconds since the epoch as RFC 3339 (UTC, whole seconds).
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Records on the stored node `node` the certificates just issued to it.
pub async fn record(store: &dyn Store, node: &str, certs: &NodeCerts) -> Result<(), StoreError> {
    let issued = [
        (CLIENT_CERT_ANNOTATION, &certs.client),
        (SERVING_CERT_ANNOTATION, &certs.serving),
    ];
    update_with_retry(store, &Key::new(Kind::Node, "", node), |obj| {
        let Some(n) = obj.as_node_mut() else {
            return Err(StoreError::not_found(Kind::Node, node));
        };
        let annotations = &mut n.metadata.get_or_insert_with(Default::default).annotations;
        for (key, cert) in &issued {
            annotations.insert(key.to_string(), value(cert));
        }
        Ok(Change::Write)
    })
    .await
    .map(|_| ())
}

/// The certificates recorded on `node`, as `certs check` lists them.
pub fn recorded(node: &Node) -> Vec<CertificateInfo> {
    let Some(meta) = node.metadata.as_ref() else {
        return Vec::new();
    };
    let name = &meta.name;
    [
        (CLIENT_CERT_ANNOTATION, format!("node/{name}")),
        (SERVING_CERT_ANNOTATION, format!("node/{name}/serving")),
    ]
    .into_iter()
    .filter_map(|(key, shown)| {
        let v = meta.annotations.get(key)?;
        let field = |f: &str| {
            v.split_whitespace()
                .find_map(|kv| kv.strip_prefix(f))
                .unwrap_or_default()
                .to_string()
        };
        Some(CertificateInfo {
            name: shown,
            subject: format!("system:node:{name}"),
            serial: field("serial="),
            not_after: field("notAfter="),
            holder: format!("node {name}"),
        })
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::ObjectMeta;

    #[test]
    fn records_read_back_as_listed() {
        let issued = Issued {
            cert_pem: String::new(),
            key_pem: String::new(),
            not_after: time::OffsetDateTime::from_unix_timestamp(1_798_859_045).unwrap(),
            serial: "0abc".into(),
        };
        let node = Node {
            metadata: Some(ObjectMeta {
                name: "n1".into(),
                annotations: [(CLIENT_CERT_ANNOTATION.to_string(), value(&issued))].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            recorded(&node),
            vec![CertificateInfo {
                name: "node/n1".into(),
                subject: "system:node:n1".into(),
                serial: "0abc".into(),
                not_after: "2027-01-02T03:04:05Z".into(),
                holder: "node n1".into(),
            }]
        );
    }
}

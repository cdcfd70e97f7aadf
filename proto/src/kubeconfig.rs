//! The client configuration file in kubectl's kubeconfig format: the server URL, the
//! cluster CA and the client's certificate and key (inline, base64 of the PEM). The
//! control plane writes `<data>/admin.kubeconfig`, `twinset up` writes
//! `~/.twinset/config`; the CLI reads either, and kubectl can read them too.

use crate::tls::ClientCredentials;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// What can be wrong with a kubeconfig.
#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    /// Not YAML of the kubeconfig shape.
    #[error("not a kubeconfig: {0}")]
    Shape(String),
    /// The current context names a cluster or user the file does not hold.
    #[error("{0}")]
    Missing(String),
    /// A `*-data` field is not base64.
    #[error("{field} is not base64: {reason}")]
    Base64 {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// A kubeconfig with what a client of this cluster uses from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Kubeconfig {
    /// The server URL, `https://HOST:PORT`.
    pub server: String,
    /// The CA and the client's identity.
    pub credentials: ClientCredentials,
}

#[derive(Serialize, Deserialize, Default)]
struct File {
    #[serde(rename = "apiVersion", default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    clusters: Vec<Named<ClusterEntry>>,
    #[serde(default)]
    users: Vec<Named<UserEntry>>,
    #[serde(default)]
    contexts: Vec<Named<ContextEntry>>,
    #[serde(rename = "current-context", default)]
    current_context: String,
}

#[derive(Serialize, Deserialize)]
struct Named<T> {
    name: String,
    #[serde(flatten)]
    inner: T,
}

#[derive(Serialize, Deserialize, Default)]
struct ClusterEntry {
    cluster: ClusterFields,
}

#[derive(Serialize, Deserialize, Default)]
struct ClusterFields {
    server: String,
    #[serde(rename = "certificate-authority-data", default)]
    ca_data: String,
}

#[derive(Serialize, Deserialize, Default)]
struct UserEntry {
    user: UserFields,
}

#[derive(Serialize, Deserialize, Default)]
struct UserFields {
    #[serde(rename = "client-certificate-data", default)]
    cert_data: String,
    #[serde(rename = "client-key-data", default)]
    key_data: String,
}

#[derive(Serialize, Deserialize, Default)]
struct ContextEntry {
    context: ContextFields,
}

#[derive(Serialize, Deserialize, Default)]
struct ContextFields {
    cluster: String,
    user: String,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn unb64(field: &str, s: &str) -> Result<String, KubeconfigError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| KubeconfigError::Base64 {
            field: field.to_string(),
            reason: e.to_string(),
        })?;
    String::from_utf8(bytes).map_err(|e| KubeconfigError::Base64 {
        field: field.to_string(),
        reason: e.to_string(),
    })
}

impl Kubeconfig {
    /// The file's text: one cluster, one user, one context named `name`, made current.
    pub fn to_yaml(&self, name: &str) -> String {
        let (cert, key) = self.credentials.identity.clone().unwrap_or_default();
        let file = File {
            api_version: "v1".into(),
            kind: "Config".into(),
            clusters: vec![Named {
                name: name.into(),
                inner: ClusterEntry {
                    cluster: ClusterFields {
                        server: self.server.clone(),
                        ca_data: b64(&self.credentials.ca_pem),
                    },
                },
            }],
            users: vec![Named {
                name: name.into(),
                inner: UserEntry {
                    user: UserFields {
                        cert_data: b64(&cert),
                        key_data: b64(&key),
                    },
                },
            }],
            contexts: vec![Named {
                name: name.into(),
                inner: ContextEntry {
                    context: ContextFields {
                        cluster: name.into(),
                        user: name.into(),
                    },
                },
            }],
            current_context: name.into(),
        };
        serde_json::to_string_pretty(&file)
            .map(|json| {
                // JSON is YAML; kubectl reads either.
                json + "\n"
            })
            .unwrap_or_default()
    }

    /// Reads the current context's server, CA and user from a kubeconfig's text.
    pub fn parse(text: &str) -> Result<Kubeconfig, KubeconfigError> {
        let file: File =
            serde_saphyr::from_str(text).map_err(|e| KubeconfigError::Shape(e.to_string()))?;
        let context = match file
            .contexts
            .iter()
            .find(|c| c.name == file.current_context)
            .or_else(|| file.contexts.first())
        {
            Some(c) => &c.inner.context,
            None => {
                return Err(KubeconfigError::Missing(
                    "the kubeconfig has no context".into(),
                ))
            }
        };
        let cluster = file
            .clusters
            .iter()
            .find(|c| c.name == context.cluster)
            .ok_or_else(|| {
                KubeconfigError::Missing(format!(
                    "no cluster {:?} in the kubeconfig",
                    context.cluster
                ))
            })?;
        let user = file.users.iter().find(|u| u.name == context.user);
        let ca_pem = unb64("certificate-authority-data", &cluster.inner.cluster.ca_data)?;
        let identity = match user {
            Some(u) if !u.inner.user.cert_data.is_empty() => Some((
                unb64("client-certificate-data", &u.inner.user.cert_data)?,
                unb64("client-key-data", &u.inner.user.key_data)?,
            )),
            _ => None,
        };
        Ok(Kubeconfig {
            server: cluster.inner.cluster.server.clone(),
            credentials: ClientCredentials { ca_pem, identity },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_round_trips() {
        let k = Kubeconfig {
            server: "https://127.0.0.1:6443".into(),
            credentials: ClientCredentials {
                ca_pem: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".into(),
                identity: Some(("CERT".into(), "KEY".into())),
            },
        };
        let text = k.to_yaml("twinset");
        assert!(text.contains("\"current-context\": \"twinset\""), "{text}");
        assert!(text.contains("certificate-authority-data"));
        assert_eq!(Kubeconfig::parse(&text).unwrap(), k);
    }

    #[test]
    fn a_kubectl_style_yaml_kubeconfig_is_read() {
        let text = "apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://10.0.0.1:6443
    certificate-authority-data: Q0E=
users:
- name: me
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
contexts:
- name: lab
  context:
    cluster: lab
    user: me
current-context: lab
";
        let k = Kubeconfig::parse(text).unwrap();
        assert_eq!(k.server, "https://10.0.0.1:6443");
        assert_eq!(k.credentials.ca_pem, "CA");
        assert_eq!(
            k.credentials.identity,
            Some(("CERT".to_string(), "KEY".to_string()))
        );
        assert!(Kubeconfig::parse("clusters: 3").is_err());
    }
}

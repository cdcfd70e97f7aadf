//! The node's TLS identity: its key, certificate and the cluster CA under
//! `<data-dir>/pki/`, made on the first start by joining with a token (the CA is checked
//! against the token before anything is sent), then loaded on every later start.

use crate::connection::NodeConnection;
use crate::join::{self, JoinError, NodeCredentials, Trust};
use crate::{Config, Error};
use tonic::transport::Channel;
use twinset_proto::tls::ClientCredentials;

/// The node's credentials: loaded, or made by joining with `config.token`.
pub async fn obtain(config: &Config) -> Result<NodeCredentials, Error> {
    let dir = join::pki_dir(&config.data_dir);
    if let Some(creds) = NodeCredentials::load(&dir)? {
        creds.check(&config.node_name).map_err(|why| {
            Error::Join(JoinError::BadResponse(format!(
                "{}: {why} (a data dir belongs to one node)",
                dir.display()
            )))
        })?;
        if creds.has_serving_cert() {
            return Ok(creds);
        }
        // Joined before agents served TLS: the daemon endpoint's certificate comes with a
        // renewal over the node's own certificate.
        let connection = NodeConnection::new(connect(&config.server, &creds)?);
        let renewed = crate::renewal::renew(&connection, &config.node_name, &dir, &creds)
            .await
            .map_err(|why| {
                Error::Join(JoinError::BadResponse(format!(
                    "cannot get a serving certificate for the daemon endpoint: {why}"
                )))
            })?;
        tracing::info!(dir = %dir.display(), "serving certificate for the daemon endpoint stored");
        return Ok(renewed);
    }
    let Some(token) = &config.token else {
        return Err(Error::NoCredentials(dir));
    };
    let server = config.server.clone();
    let creds = join::join(
        |trust| {
            let server = server.clone();
            async move {
                let channel = match trust {
                    Trust::Unverified => twinset_proto::tls::connect_unverified(&server).await,
                    Trust::Ca(ca_pem) => {
                        twinset_proto::tls::connect(
                            &server,
                            &ClientCredentials {
                                ca_pem,
                                identity: None,
                            },
                        )
                        .await
                    }
                };
                channel.map_err(|e| JoinError::Connect(format!("{server}: {e}")))
            }
        },
        token,
        &config.node_name,
    )
    .await?;
    creds.save(&dir)?;
    tracing::info!(dir = %dir.display(), "joined the cluster: node certificate stored");
    Ok(creds)
}

/// A channel to `server` that presents the node's certificate and trusts only the
/// cluster CA; it connects on first use and again after a failure.
pub fn connect(server: &str, creds: &NodeCredentials) -> Result<Channel, Error> {
    twinset_proto::tls::connect_lazy(
        server,
        &ClientCredentials {
            ca_pem: creds.ca_pem.clone(),
            identity: Some((creds.cert_pem.clone(), creds.key_pem.clone())),
        },
    )
    .map_err(|e| Error::Server(format!("{server}: {e}")))
}

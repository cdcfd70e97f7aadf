//! `twinset certs check`: every certificate the control plane issued or holds (the CA, its
//! server and admin certificates, each node's) with its expiry and the time left, as
//! kubeadm's `certs check-expiration`.
use super::Ctx;
use crate::args::{CertsArgs, CertsCommand};
use crate::print::tabwriter::TabWriter;
use crate::report;
use std::time::SystemTime;
use twinset_proto::v1::{CertificateInfo, ListCertificatesRequest};

/// Runs a `certs` sub-verb.
pub async fn run(ctx: &Ctx, args: CertsArgs) -> anyhow::Result<()> {
    match args.command {
        CertsCommand::Check => check(ctx).await,
    }
}

async fn check(ctx: &Ctx) -> anyhow::Result<()> {
    let mut client = ctx.client().await?;
    let certs = client
        .cluster
        .list_certificates(ListCertificatesRequest {})
        .await
        .map_err(|s| client.error(s))?
        .into_inner()
        .certificates;
    report::out(&table(&certs, SystemTime::now()));
    Ok(())
}

/// CERTIFICATE SUBJECT SERIAL EXPIRES RESIDUAL TIME HOLDER; `<expired>` once past.
pub fn table(certs: &[CertificateInfo], now: SystemTime) -> String {
    let mut w = TabWriter::table();
    w.write("CERTIFICATE\tSUBJECT\tSERIAL\tEXPIRES\tRESIDUAL TIME\tHOLDER\n");
    for c in certs {
        let left = match twinset_proto::time::parse(&c.not_after) {
            None => "<unknown>".to_string(),
            Some(at) => match at.duration_since(now) {
                Ok(left) if !left.is_zero() => twinset_proto::time::human_duration(left),
                _ => "<expired>".to_string(),
            },
        };
        w.write(&format!(
            "{}\t{}\t{}\t{}\t{left}\t{}\n",
            c.name, c.subject, c.serial, c.not_after, c.holder
        ));
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_time_left_and_expired_certificates() {
        let now = twinset_proto::time::parse("2026-12-01T00:00:00Z").unwrap();
        let cert = |name: &str, not_after: &str| CertificateInfo {
            name: name.into(),
            subject: "s".into(),
            serial: "0a".into(),
            not_after: not_after.into(),
            holder: "h".into(),
        };
        let out = table(
            &[
                cert("server", "2026-12-31T00:00:00Z"),
                cert("node/n1", "2026-11-30T00:00:00Z"),
            ],
            now,
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("CERTIFICATE"), "{out}");
        assert!(lines[1].contains("30d"), "{out}");
        assert!(lines[2].contains("<expired>"), "{out}");
    }
}

//! What a certificate says about itself (serial, subject, key, validity) — the one x509
//! reader: the servers' caller identities, node pins, renewal and `twinset certs check`
//! all read certificates through it — and when its holder renews it.

use crate::tls::TlsError;

/// The facts of one certificate that renewal and listings need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// The serial number, lower-case hex.
    pub serial: String,
    /// The subject's common name.
    pub common_name: String,
    /// The subject's organisations (groups).
    pub organizations: Vec<String>,
    /// SHA-256 (hex) of the SubjectPublicKeyInfo: what a node's pin is compared with.
    pub key_sha256: String,
    /// Start of validity, seconds since the epoch.
    pub not_before: i64,
    /// End of validity, seconds since the epoch.
    pub not_after: i64,
}

/// The facts of the first certificate in `pem`; `what` names it in errors.
pub fn facts(pem: &str, what: &str) -> Result<CertFacts, TlsError> {
    let certs = crate::tls::certs(pem, what)?;
    facts_der(&certs[0]).map_err(|reason| TlsError::Pem {
        what: what.to_string(),
        reason,
    })
}

/// The facts of a DER certificate.
pub fn facts_der(der: &[u8]) -> Result<CertFacts, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let organizations = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok())
        .map(str::to_string)
        .collect();
    Ok(CertFacts {
        organizations,
        key_sha256: crate::token::sha256_hex(cert.public_key().raw),
        serial: cert
            .raw_serial()
            .iter()
            .skip_while(|b| **b == 0)
            .map(|b| format!("{b:02x}"))
            .collect(),
        common_name,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// The share of its validity after which a certificate is renewed, before jitter.
pub const RENEW_AT: f64 = 0.70;
/// How far the jitter moves that point either way (as a share of the validity), so that
/// nodes joined together do not all renew at once.
pub const RENEW_JITTER: f64 = 0.05;

/// When (seconds since the epoch, fractional) a certificate valid from `not_before` to
/// `not_after` is renewed: at 70 % of its validity, moved by `jitter` (from -1 to 1)
/// times 5 %. Pure: the caller draws the jitter.
pub fn renew_at(not_before: i64, not_after: i64, jitter: f64) -> f64 {
    let span = (not_after - not_before).max(0) as f64;
    let share = RENEW_AT + RENEW_JITTER * jitter.clamp(-1.0, 1.0);
    not_before as f64 + span * share
}

/// How long from `now` (seconds since the epoch, fractional) until [`renew_at`]; zero when
/// that time has passed.
pub fn renew_in(facts: &CertFacts, now: f64, jitter: f64) -> std::time::Duration {
    let at = renew_at(facts.not_before, facts.not_after, jitter);
    std::time::Duration::from_secs_f64((at - now).max(0.0))
}

/// How long to wait before trying a failed renewal again, for a certificate valid until
/// `not_after` at `now` (seconds since the epoch): a tenth of the time left, from 1 s to
/// 30 s, so that a short-lived certificate is retried in time and a long-lived one
/// does not hammer the CA.
pub fn retry_in(not_after: i64, now: f64) -> std::time::Duration {
    let left = (not_after as f64 - now).max(0.0);
    std::time::Duration::from_secs_f64(left / 10.0).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    )
}

/// A random jitter for [`renew_at`].
pub fn draw_jitter() -> f64 {
    rand::random_range(-1.0..=1.0)
}

/// Seconds since the epoch now, fractional.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_about_seventy_percent() {
        assert_eq!(renew_at(1000, 2000, 0.0), 1700.0);
        assert_eq!(renew_at(1000, 2000, 1.0), 1750.0);
        assert_eq!(renew_at(1000, 2000, -1.0), 1650.0);
        // Jitter out of range is held to it.
        assert_eq!(renew_at(1000, 2000, 9.0), 1750.0);
        // A certificate that is already past its point is renewed at once.
        let f = CertFacts {
            serial: "01".into(),
            common_name: "x".into(),
            organizations: Vec::new(),
            key_sha256: String::new(),
            not_before: 0,
            not_after: 10,
        };
        assert_eq!(renew_in(&f, 100.0, 0.0), std::time::Duration::ZERO);
        assert_eq!(renew_in(&f, 5.0, 0.0), std::time::Duration::from_secs(2));
    }

    #[test]
    fn failed_renewals_are_retried_within_bounds() {
        use std::time::Duration;
        assert_eq!(retry_in(100, 50.0), Duration::from_secs(5));
        assert_eq!(retry_in(100, 99.0), Duration::from_secs(1), "at least 1 s");
        assert_eq!(retry_in(100, 200.0), Duration::from_secs(1), "expired: 1 s");
        assert_eq!(
            retry_in(10_000, 0.0),
            Duration::from_secs(30),
            "at most 30 s"
        );
    }

    #[test]
    fn a_bad_certificate_is_named() {
        let e = facts("not pem", "the node certificate").unwrap_err();
        assert!(e.to_string().starts_with("the node certificate:"), "{e}");
    }
}

//! Join tokens (issue 9): `TS1<ca-sha256>::<id>.<secret>`, the string an operator hands
//! to a new node. The CA hash lets the agent check the control plane before it sends
//! anything (as k3s's `K10<hash>::` does); `id.secret` is kubeadm's bootstrap token shape
//! with a longer secret (26 base-36 characters, about 134 bits from a CSPRNG). The control
//! plane keeps only the SHA-256 of the secret; the id names the token in lists and logs.
//!
//! Shared by the CLI, the agent and the control plane, so the format is defined once.

use sha2::{Digest, Sha256};
use std::fmt;

/// What every token starts with (format version 1).
pub const PREFIX: &str = "TS1";
/// Characters of a token id.
pub const ID_LEN: usize = 6;
/// Characters of a token secret (26 × log2(36) ≈ 134 bits).
pub const SECRET_LEN: usize = 26;
/// Hex characters of the CA hash (SHA-256).
pub const CA_HASH_LEN: usize = 64;

const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// Why a string is not a join token. Messages say what is wrong and never repeat the
/// secret (a mistyped token pasted into a log must not leak).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It does not start with the version prefix.
    #[error("not a twinset join token: it must start with {PREFIX} (make one with `twinset token create`)")]
    Prefix,
    /// The CA hash part is not 64 lower-case hex characters.
    #[error("invalid join token: the CA hash after {PREFIX} must be {CA_HASH_LEN} lower-case hex characters (SHA-256)")]
    CaHash,
    /// The `::` between the CA hash and `id.secret` is missing.
    #[error("invalid join token: expected {PREFIX}<ca-sha256>::<id>.<secret>")]
    Shape,
    /// The id is not 6 characters of [a-z0-9].
    #[error("invalid join token: the token id must be {ID_LEN} characters of [a-z0-9]")]
    Id,
    /// The secret is not 26 characters of [a-z0-9].
    #[error("invalid join token {id}: the secret must be {SECRET_LEN} characters of [a-z0-9]")]
    Secret {
        /// The token's id (not secret).
        id: String,
    },
}

/// A parsed join token. `Debug` leaves the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    ca_hash: String,
    id: String,
    secret: String,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("ca_hash", &self.ca_hash)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// A new token for the CA whose hash is `ca_hash` (lower-case SHA-256 hex), with a
    /// random id and secret from the thread's CSPRNG.
    pub fn generate(ca_hash: &str) -> Result<Token, TokenError> {
        if !is_ca_hash(ca_hash) {
            return Err(TokenError::CaHash);
        }
        Ok(Token {
            ca_hash: ca_hash.to_string(),
            id: random_chars(ID_LEN),
            secret: random_chars(SECRET_LEN),
        })
    }

    /// Parses `TS1<ca-sha256>::<id>.<secret>` (surrounding white space ignored).
    pub fn parse(s: &str) -> Result<Token, TokenError> {
        let rest = s.trim().strip_prefix(PREFIX).ok_or(TokenError::Prefix)?;
        let (ca_hash, creds) = rest.split_once("::").ok_or(TokenError::Shape)?;
        if !is_ca_hash(ca_hash) {
            return Err(TokenError::CaHash);
        }
        let (id, secret) = creds.split_once('.').ok_or(TokenError::Shape)?;
        if !is_token_chars(id, ID_LEN) {
            return Err(TokenError::Id);
        }
        if !is_token_chars(secret, SECRET_LEN) {
            return Err(TokenError::Secret { id: id.to_string() });
        }
        Ok(Token {
            ca_hash: ca_hash.to_string(),
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// The SHA-256 (hex) of the CA certificate's DER this token was made for.
    pub fn ca_hash(&self) -> &str {
        &self.ca_hash
    }

    /// The token's id: public, names it in `token list` and in logs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// SHA-256 (hex) of the secret: all the control plane stores of it.
    pub fn secret_hash(&self) -> String {
        sha256_hex(self.secret.as_bytes())
    }
}

impl fmt::Display for Token {
    /// The full token string, secret included: print it only to the one who made it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}::{}.{}", self.ca_hash, self.id, self.secret)
    }
}

/// True when `s` could be a token id (6 characters of [a-z0-9]).
pub fn is_token_id(s: &str) -> bool {
    is_token_chars(s, ID_LEN)
}

/// Lower-case hex SHA-256 of `bytes`: the CA hash (of its DER), a secret's hash and a
/// public key's pin are all this.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two hashes in time that depends only on their lengths, so a caller that
/// checks a presented secret's hash learns nothing from how long a refusal took.
pub fn hashes_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn is_ca_hash(s: &str) -> bool {
    s.len() == CA_HASH_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_token_chars(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| ALPHABET.contains(&b))
}

fn random_chars(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> String {
        sha256_hex(b"a CA certificate")
    }

    #[test]
    fn a_generated_token_round_trips_and_has_the_documented_shape() {
        let t = Token::generate(&ca()).unwrap();
        let s = t.to_string();
        assert!(s.starts_with(&format!("TS1{}::", ca())), "{s}");
        let (_, creds) = s.split_once("::").unwrap();
        let (id, secret) = creds.split_once('.').unwrap();
        assert_eq!((id.len(), secret.len()), (6, 26));
        assert!(is_token_id(id));
        let back = Token::parse(&format!("  {s}\n")).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.id(), id);
        assert_eq!(back.ca_hash(), ca());
        assert_eq!(back.secret_hash(), sha256_hex(secret.as_bytes()));
        assert_eq!(back.secret_hash().len(), 64);
    }

    #[test]
    fn generated_secrets_differ_and_debug_hides_the_secret() {
        let a = Token::generate(&ca()).unwrap();
        let b = Token::generate(&ca()).unwrap();
        assert_ne!(a.secret_hash(), b.secret_hash());
        let secret = a.to_string().rsplit_once('.').unwrap().1.to_string();
        assert!(!format!("{a:?}").contains(&secret), "{a:?}");
        assert!(Token::generate("not a hash").is_err());
    }

    #[test]
    fn parse_says_what_is_wrong_without_echoing_the_secret() {
        let h = ca();
        let secret = "abcdefghijklmnopqrstuvwxyz";
        let cases = [
            (format!("K10{h}::abcdef.{secret}"), TokenError::Prefix),
            (
                format!("TS1{}::abcdef.{secret}", &h[..63]),
                TokenError::CaHash,
            ),
            (
                format!("TS1{}::abcdef.{secret}", h.to_uppercase()),
                TokenError::CaHash,
            ),
            (format!("TS1{h}abcdef.{secret}"), TokenError::Shape),
            (format!("TS1{h}::abcdef{secret}"), TokenError::Shape),
            (format!("TS1{h}::abcde.{secret}"), TokenError::Id),
            (format!("TS1{h}::ABCDEF.{secret}"), TokenError::Id),
            (
                format!("TS1{h}::abcdef.{}", &secret[..25]),
                TokenError::Secret {
                    id: "abcdef".into(),
                },
            ),
            (
                format!("TS1{h}::abcdef.{secret}!"),
                TokenError::Secret {
                    id: "abcdef".into(),
                },
            ),
        ];
        for (s, want) in cases {
            let got = Token::parse(&s).unwrap_err();
            assert_eq!(got, want, "{s}");
            assert!(!got.to_string().contains(&secret[..20]), "{got}");
        }
        assert!(Token::parse(&format!("TS1{h}::abcdef.{secret}")).is_ok());
    }

    #[test]
    fn hashes_compare_equal_only_when_identical() {
        let a = sha256_hex(b"x");
        assert!(hashes_equal(&a, &a.clone()));
        assert!(!hashes_equal(&a, &sha256_hex(b"y")));
        assert!(!hashes_equal(&a, &a[..63]));
        assert!(!hashes_equal("", &a));
    }
}

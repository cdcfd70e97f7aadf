//! Join token records: what the control plane keeps of a token (the SHA-256 of its
//! secret, expiry, uses left, the node it is for), stored durably as internal
//! `BootstrapToken` objects named by the token id, and the one decision a join makes
//! about a token ([`decide_join`]). Using up a use is a compare-and-swap, so two agents
//! can never both take the last one.

use crate::store::{try_update_with_retry_attempts, Change, Error as StoreError, Key, Store};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use twinset_proto::token::{hashes_equal, is_token_id, Token, TokenError};
use twinset_proto::v1::{BootstrapToken, BootstrapTokenSpec, Object, ObjectMeta, TokenInfo};
use twinset_proto::Kind;

/// The longest TTL a token may be given (ten years); 0 means it never expires.
pub const MAX_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// The longest description a token may carry, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 256;
/// How many fresh ids are tried when a generated id is already taken.
const ID_ATTEMPTS: usize = 8;

/// What the control plane keeps of one token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRecord {
    /// The token's public id (6 characters of [a-z0-9]).
    pub id: String,
    /// SHA-256 (hex) of the secret.
    pub secret_hash: String,
    /// When it stops being valid; None: never.
    pub expires: Option<SystemTime>,
    /// Joins left; None: unlimited.
    pub uses_left: Option<u32>,
    /// The only node name it may join as; None: any.
    pub node: Option<String>,
    /// When it was made (RFC 3339, set by the store).
    pub created: String,
    /// What the operator said it is for.
    pub description: String,
}

/// What a new token allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewToken {
    /// How long it is valid; None: forever.
    pub ttl: Option<Duration>,
    /// How many joins it allows; None: unlimited.
    pub uses: Option<u32>,
    /// The only node name it may join as.
    pub node: Option<String>,
    /// Free text shown in `token list`.
    pub description: String,
}

/// Why a join token was refused. The unknown id and the wrong secret read the same,
/// so a caller cannot tell which ids exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefusal {
    /// No token with that id, or the secret does not match.
    #[error("token {id} is not valid")]
    Invalid {
        /// The token id presented.
        id: String,
    },
    /// The token's expiry has passed.
    #[error("token {id} has expired")]
    Expired {
        /// The token id.
        id: String,
    },
    /// The token has no uses left.
    #[error("token {id} has been used up")]
    UsedUp {
        /// The token id.
        id: String,
    },
    /// The token is restricted to another node name.
    #[error("token {id} is for node {allowed:?}, not {asked:?}")]
    WrongNode {
        /// The token id.
        id: String,
        /// The node the token is for.
        allowed: String,
        /// The node name the joiner asked for.
        asked: String,
    },
}

/// What a successful [`decide_join`] takes from the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Consumed {
    /// The uses left after this join (None: unlimited, nothing to write).
    pub uses_left: Option<u32>,
}

/// What can go wrong managing or consuming tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    /// The token was refused for a join.
    #[error(transparent)]
    Refused(#[from] JoinRefusal),
    /// No token with that id (delete).
    #[error("token {0} not found")]
    NotFound(String),
    /// The request is not acceptable (the message says why).
    #[error("{0}")]
    Invalid(String),
    /// A stored record cannot be read.
    #[error("stored token {id} is unreadable: {why}")]
    Corrupt {
        /// The token id.
        id: String,
        /// What is wrong with it.
        why: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Decides whether the token `id`, whose stored record is `record` (None: no such
/// token), lets `node` join at `now` with a secret whose SHA-256 is `secret_hash`. The
/// secret is checked first (constant time), so expiry, uses and node restriction are
/// only revealed to someone who holds the secret.
pub fn decide_join(
    id: &str,
    record: Option<&TokenRecord>,
    secret_hash: &str,
    node: &str,
    now: SystemTime,
) -> Result<Consumed, JoinRefusal> {
    let id = id.to_string();
    let Some(r) = record.filter(|r| hashes_equal(&r.secret_hash, secret_hash)) else {
        return Err(JoinRefusal::Invalid { id });
    };
    if r.expires.is_some_and(|at| now >= at) {
        return Err(JoinRefusal::Expired { id });
    }
    if r.uses_left == Some(0) {
        return Err(JoinRefusal::UsedUp { id });
    }
    if let Some(allowed) = r.node.as_deref().filter(|n| *n != node) {
        return Err(JoinRefusal::WrongNode {
            id,
            allowed: allowed.to_string(),
            asked: node.to_string(),
        });
    }
    Ok(Consumed {
        uses_left: r.uses_left.map(|n| n - 1),
    })
}

impl TokenRecord {
    /// The record stored in a `BootstrapToken` object.
    pub fn from_object(obj: &Object) -> Result<TokenRecord, TokenStoreError> {
        let id = obj.name().to_string();
        let corrupt = |why: &str| TokenStoreError::Corrupt {
            id: id.clone(),
            why: why.to_string(),
        };
        let t = obj
            .as_bootstrap_token()
            .ok_or_else(|| corrupt("not a BootstrapToken"))?;
        let spec = t.spec.as_ref().ok_or_else(|| corrupt("no spec"))?;
        let expires = match spec.expires.as_str() {
            "" => None,
            s => Some(
                twinset_proto::time::parse(s).ok_or_else(|| corrupt("expires is not RFC 3339"))?,
            ),
        };
        let uses_left = spec
            .uses_left
            .map(|n| u32::try_from(n).map_err(|_| corrupt("usesLeft is negative")))
            .transpose()?;
        Ok(TokenRecord {
            id,
            secret_hash: spec.secret_sha256.clone(),
            expires,
            uses_left,
            node: (!spec.node.is_empty()).then(|| spec.node.clone()),
            created: obj.meta().creation_timestamp.clone(),
            description: spec.description.clone(),
        })
    }

    /// The `BootstrapToken` object that stores this record.
    pub fn to_object(&self) -> Object {
        let mut obj = Object::from(BootstrapToken {
            metadata: Some(ObjectMeta {
                name: self.id.clone(),
                creation_timestamp: self.created.clone(),
                ..Default::default()
            }),
            spec: Some(BootstrapTokenSpec {
                secret_sha256: self.secret_hash.clone(),
                expires: self
                    .expires
                    .map(twinset_proto::time::format)
                    .unwrap_or_default(),
                uses_left: self.uses_left.map(|n| n.min(i32::MAX as u32) as i32),
                node: self.node.clone().unwrap_or_default(),
                description: self.description.clone(),
            }),
            ..Default::default()
        });
        obj.set_type_meta();
        obj
    }

    /// What may be shown of it: never the secret's hash.
    pub fn info(&self) -> TokenInfo {
        TokenInfo {
            id: self.id.clone(),
            expires: self
                .expires
                .map(twinset_proto::time::format)
                .unwrap_or_default(),
            uses_left: self.uses_left.map(|n| n.min(i32::MAX as u32) as i32),
            node: self.node.clone().unwrap_or_default(),
            description: self.description.clone(),
            created: self.created.clone(),
        }
    }
}

impl NewToken {
    /// Checks what a new token asks for; errors say which field is wrong.
    pub fn validate(&self) -> Result<(), TokenStoreError> {
        if self.ttl.is_some_and(|t| t > MAX_TTL) {
            return Err(TokenStoreError::Invalid(format!(
                "ttl must be at most {}h (10 years); 0 makes a token that never expires",
                MAX_TTL.as_secs() / 3600
            )));
        }
        if self.uses == Some(0) {
            return Err(TokenStoreError::Invalid(
                "uses must be at least 1 (or unlimited)".into(),
            ));
        }
        if let Some(node) = &self.node {
            if !twinset_proto::validate::is_dns1123_subdomain(node) {
                return Err(TokenStoreError::Invalid(format!(
                    "node {node:?} is not a valid node name: a lowercase RFC 1123 subdomain is required"
                )));
            }
        }
        if self.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(TokenStoreError::Invalid(format!(
                "description must be at most {MAX_DESCRIPTION_CHARS} characters"
            )));
        }
        Ok(())
    }
}

/// When a token made at `now` with `ttl` expires: rounded up to a whole second (the
/// stored precision), so it is valid at least `ttl`.
pub fn expiry(now: SystemTime, ttl: Duration) -> SystemTime {
    let at = now + ttl;
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let whole = since.as_secs() + u64::from(since.subsec_nanos() > 0);
    UNIX_EPOCH + Duration::from_secs(whole)
}

fn key(id: &str) -> Key {
    Key::new(Kind::BootstrapToken, "", id)
}

/// Makes and stores a new token for the CA whose hash is `ca_hash`; returns the token
/// (the only time its secret exists outside the caller) and its record.
pub async fn create(
    store: &dyn Store,
    ca_hash: &str,
    new: &NewToken,
    now: SystemTime,
) -> Result<(Token, TokenRecord), TokenStoreError> {
    new.validate()?;
    let mut last = None;
    for _ in 0..ID_ATTEMPTS {
        let token = Token::generate(ca_hash).map_err(|e: TokenError| {
            TokenStoreError::Invalid(format!("the cluster CA hash {ca_hash:?}: {e}"))
        })?;
        let record = TokenRecord {
            id: token.id().to_string(),
            secret_hash: token.secret_hash(),
            expires: new.ttl.map(|ttl| expiry(now, ttl)),
            uses_left: new.uses,
            node: new.node.clone(),
            created: String::new(),
            description: new.description.clone(),
        };
        match store.create(record.to_object()).await {
            Ok(stored) => return Ok((token, TokenRecord::from_object(&stored)?)),
            // An id clash (one in 36^6): another id.
            Err(e @ StoreError::AlreadyExists { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.unwrap_or(StoreError::Closed).into())
}

/// Every token record, by id. A record that cannot be read is skipped with a warning
/// (it can still be deleted by id).
pub fn list(store: &dyn Store) -> Vec<TokenRecord> {
    store
        .list(Kind::BootstrapToken, None)
        .0
        .iter()
        .filter_map(|o| match TokenRecord::from_object(o) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "skipping unreadable join token");
                None
            }
        })
        .collect()
}

/// The record of token `id`, if there is one.
pub fn get(store: &dyn Store, id: &str) -> Result<Option<TokenRecord>, TokenStoreError> {
    store
        .get(Kind::BootstrapToken, "", id)
        .map(|o| TokenRecord::from_object(&o))
        .transpose()
}

/// Deletes token `id`; returns what it was.
pub async fn delete(store: &dyn Store, id: &str) -> Result<TokenRecord, TokenStoreError> {
    if !is_token_id(id) {
        return Err(TokenStoreError::Invalid(format!(
            "{id:?} is not a token id: an id is 6 characters of [a-z0-9] (the part before the dot)"
        )));
    }
    match store.delete(Kind::BootstrapToken, "", id, None).await {
        Ok(gone) => TokenRecord::from_object(&gone),
        Err(StoreError::NotFound { .. }) => Err(TokenStoreError::NotFound(id.to_string())),
        Err(e) => Err(e.into()),
    }
}

/// Takes one use of token `id` for `node`, deciding with [`decide_join`] on the record
/// as stored and writing the decrement as a compare-and-swap (read again on a
/// conflict). Nothing is written when the token is refused or has unlimited uses.
pub async fn consume(
    store: &dyn Store,
    id: &str,
    secret_hash: &str,
    node: &str,
    now: SystemTime,
) -> Result<Consumed, TokenStoreError> {
    let record = get(store, id)?;
    let first = decide_join(id, record.as_ref(), secret_hash, node, now)?;
    if first.uses_left.is_none() {
        return Ok(first);
    }
    let mut taken = first;
    let outcome = try_update_with_retry_attempts(store, &key(id), RACE_ATTEMPTS, |obj| {
        let current = TokenRecord::from_object(obj)?;
        taken = decide_join(id, Some(&current), secret_hash, node, now)?;
        if let Some(spec) = obj.as_bootstrap_token_mut().and_then(|t| t.spec.as_mut()) {
            spec.uses_left = taken.uses_left.map(|n| n.min(i32::MAX as u32) as i32);
        }
        Ok::<_, TokenStoreError>(Change::Write)
    })
    .await;
    match outcome {
        Ok(_) => Ok(taken),
        // Deleted between the read and the write: as if it never existed.
        Err(TokenStoreError::Store(StoreError::NotFound { .. })) => {
            Err(JoinRefusal::Invalid { id: id.to_string() }.into())
        }
        Err(e) => Err(e),
    }
}

/// Attempts at a token's compare-and-swap: every machine that joins at once (`twinset
/// up --nodes 20`, a rack booting) races on the one token's uses, one winner per round.
const RACE_ATTEMPTS: usize = 128;

/// How long an expired token is kept (so a late joiner hears "has expired", not "is not
/// valid") before [`sweep_expired`] deletes it.
pub const EXPIRED_TOKEN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Deletes the tokens that expired more than `retention` before `now`, as kubeadm's
/// token cleaner does, so records do not pile up; returns how many went. Run it
/// periodically beside the Event sweeper.
pub async fn sweep_expired(
    store: &dyn Store,
    now: SystemTime,
    retention: Duration,
) -> Result<usize, TokenStoreError> {
    let mut deleted = 0;
    for r in list(store) {
        if r.expires.is_some_and(|at| at + retention <= now) {
            match store.delete(Kind::BootstrapToken, "", &r.id, None).await {
                Ok(_) => {
                    tracing::info!(token = r.id, "deleted an expired join token");
                    deleted += 1;
                }
                Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(deleted)
}

/// Gives back a use taken by [`consume`] for a join that was refused afterwards (the
/// node name was pinned by someone else meanwhile). Best effort: a token deleted since
/// stays deleted.
pub async fn refund(store: &dyn Store, id: &str) -> Result<(), TokenStoreError> {
    let outcome = try_update_with_retry_attempts(store, &key(id), RACE_ATTEMPTS, |obj| {
        let Some(spec) = obj.as_bootstrap_token_mut().and_then(|t| t.spec.as_mut()) else {
            return Ok::<_, TokenStoreError>(Change::Keep);
        };
        match spec.uses_left {
            Some(n) => {
                spec.uses_left = Some(n.saturating_add(1));
                Ok(Change::Write)
            }
            None => Ok(Change::Keep),
        }
    })
    .await;
    match outcome {
        Ok(_) | Err(TokenStoreError::Store(StoreError::NotFound { .. })) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sweeps long-expired tokens every hour until `shutdown` (the control plane's task).
pub async fn sweep_periodically(
    store: std::sync::Arc<dyn Store>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match sweep_expired(&*store, SystemTime::now(), EXPIRED_TOKEN_RETENTION).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "expired join tokens deleted"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired join tokens"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use std::sync::Arc;
    use twinset_proto::token::sha256_hex;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ca() -> String {
        sha256_hex(b"ca")
    }

    fn record(id: &str, secret: &str) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            secret_hash: sha256_hex(secret.as_bytes()),
            expires: None,
            uses_left: None,
            node: None,
            created: String::new(),
            description: String::new(),
        }
    }

    #[test]
    fn decide_checks_secret_then_expiry_then_uses_then_node() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let good = sha256_hex(b"s");
        let mut r = record("abcdef", "s");
        assert_eq!(
            decide_join("abcdef", Some(&r), &good, "node1", now),
            Ok(Consumed { uses_left: None })
        );
        let invalid = JoinRefusal::Invalid {
            id: "abcdef".into(),
        };
        assert_eq!(
            decide_join("abcdef", None, &good, "node1", now),
            Err(invalid.clone())
        );
        // A wrong secret reads like an unknown id, even on an expired, used-up token.
        r.expires = Some(now);
        r.uses_left = Some(0);
        let wrong = sha256_hex(b"t");
        let refused = decide_join("abcdef", Some(&r), &wrong, "node1", now).unwrap_err();
        assert_eq!(refused, invalid);
        assert_eq!(refused.to_string(), "token abcdef is not valid");

        let refused = decide_join("abcdef", Some(&r), &good, "node1", now).unwrap_err();
        assert_eq!(refused.to_string(), "token abcdef has expired");
        r.expires = Some(now + Duration::from_secs(1));
        let refused = decide_join("abcdef", Some(&r), &good, "node1", now).unwrap_err();
        assert_eq!(refused.to_string(), "token abcdef has been used up");
        r.uses_left = Some(2);
        r.node = Some("node2".into());
        let refused = decide_join("abcdef", Some(&r), &good, "node1", now).unwrap_err();
        assert_eq!(
            refused.to_string(),
            r#"token abcdef is for node "node2", not "node1""#
        );
        assert_eq!(
            decide_join("abcdef", Some(&r), &good, "node2", now),
            Ok(Consumed { uses_left: Some(1) })
        );
    }

    #[test]
    fn expiry_rounds_up_to_a_whole_second() {
        let now = UNIX_EPOCH + Duration::from_millis(10_300);
        assert_eq!(
            expiry(now, Duration::from_secs(1)),
            UNIX_EPOCH + Duration::from_secs(12)
        );
        let whole = UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(
            expiry(whole, Duration::from_secs(1)),
            whole + Duration::from_secs(1)
        );
    }

    #[tokio::test]
    async fn created_tokens_are_stored_with_only_the_secret_hash() {
        let store = MemoryStore::new(100);
        let now = SystemTime::now();
        let new = NewToken {
            ttl: Some(HOUR),
            uses: Some(3),
            node: Some("node1".into()),
            description: "for the lab".into(),
        };
        let (token, rec) = create(&store, &ca(), &new, now).await.unwrap();
        assert_eq!(token.ca_hash(), ca());
        assert_eq!(rec.id, token.id());
        assert_eq!(rec.secret_hash, token.secret_hash());
        assert_eq!(rec.uses_left, Some(3));
        assert_eq!(rec.node.as_deref(), Some("node1"));
        assert!(!rec.created.is_empty(), "the store stamps it");
        let stored = store.get(Kind::BootstrapToken, "", token.id()).unwrap();
        let secret = token.to_string().rsplit_once('.').unwrap().1.to_string();
        assert!(!format!("{stored:?}").contains(&secret), "no secret stored");
        assert_eq!(list(&store), vec![rec.clone()]);
        let info = rec.info();
        assert_eq!(info.uses_left, Some(3));
        assert!(!format!("{info:?}").contains(&rec.secret_hash));

        let gone = delete(&store, token.id()).await.unwrap();
        assert_eq!(gone.id, rec.id);
        assert!(list(&store).is_empty());
        let err = delete(&store, token.id()).await.unwrap_err();
        assert_eq!(err.to_string(), format!("token {} not found", token.id()));
        assert!(matches!(
            delete(&store, "NOT-AN-ID").await,
            Err(TokenStoreError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn create_refuses_what_it_cannot_honour() {
        let store = MemoryStore::new(100);
        let now = SystemTime::now();
        for bad in [
            NewToken {
                ttl: Some(MAX_TTL + HOUR),
                ..Default::default()
            },
            NewToken {
                uses: Some(0),
                ..Default::default()
            },
            NewToken {
                node: Some("Node_1".into()),
                ..Default::default()
            },
            NewToken {
                description: "x".repeat(MAX_DESCRIPTION_CHARS + 1),
                ..Default::default()
            },
        ] {
            let err = create(&store, &ca(), &bad, now).await.unwrap_err();
            assert!(matches!(err, TokenStoreError::Invalid(_)), "{err}");
        }
        assert!(list(&store).is_empty(), "nothing stored");
    }

    #[tokio::test]
    async fn consuming_counts_down_and_refusals_write_nothing() {
        let store = MemoryStore::new(100);
        let now = SystemTime::now();
        let new = NewToken {
            uses: Some(2),
            ..Default::default()
        };
        let (token, _) = create(&store, &ca(), &new, now).await.unwrap();
        let (id, hash) = (token.id().to_string(), token.secret_hash());
        let rev = store.current_revision();
        let wrong = sha256_hex(b"wrong");
        let err = consume(&store, &id, &wrong, "n1", now).await.unwrap_err();
        assert_eq!(err.to_string(), format!("token {id} is not valid"));
        assert_eq!(store.current_revision(), rev, "a refusal writes nothing");

        let c = consume(&store, &id, &hash, "n1", now).await.unwrap();
        assert_eq!(c.uses_left, Some(1));
        let c = consume(&store, &id, &hash, "n2", now).await.unwrap();
        assert_eq!(c.uses_left, Some(0));
        let rev = store.current_revision();
        let err = consume(&store, &id, &hash, "n3", now).await.unwrap_err();
        assert_eq!(err.to_string(), format!("token {id} has been used up"));
        assert_eq!(store.current_revision(), rev);
        assert_eq!(get(&store, &id).unwrap().unwrap().uses_left, Some(0));

        refund(&store, &id).await.unwrap();
        assert_eq!(get(&store, &id).unwrap().unwrap().uses_left, Some(1));

        let later = now + Duration::from_secs(10);
        let (short, _) = create(
            &store,
            &ca(),
            &NewToken {
                ttl: Some(Duration::from_secs(1)),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap();
        let err = consume(&store, short.id(), &short.secret_hash(), "n1", later)
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), format!("token {} has expired", short.id()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_joiners_never_both_take_the_last_use() {
        let store = Arc::new(MemoryStore::new(1000));
        let now = SystemTime::now();
        let new = NewToken {
            uses: Some(3),
            ..Default::default()
        };
        let (token, _) = create(&*store, &ca(), &new, now).await.unwrap();
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let store = store.clone();
                let (id, hash) = (token.id().to_string(), token.secret_hash());
                tokio::spawn(
                    async move { consume(&*store, &id, &hash, &format!("n{i}"), now).await },
                )
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(TokenStoreError::Refused(JoinRefusal::UsedUp { .. })) => {}
                // Gave up after repeated conflicts: also no use taken.
                Err(TokenStoreError::Store(StoreError::Conflict { .. })) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 3, "exactly the token's uses were granted");
        assert_eq!(
            get(&*store, token.id()).unwrap().unwrap().uses_left,
            Some(0)
        );
    }

    #[tokio::test]
    async fn a_used_token_is_still_used_after_a_restart() {
        use crate::store::sled::SledStore;
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path(), 100).unwrap();
        let now = SystemTime::now();
        let new = NewToken {
            ttl: Some(HOUR),
            uses: Some(2),
            node: Some("node1".into()),
            description: "lab".into(),
        };
        let (token, _) = create(&store, &ca(), &new, now).await.unwrap();
        consume(&store, token.id(), &token.secret_hash(), "node1", now)
            .await
            .unwrap();
        let before = get(&store, token.id()).unwrap().unwrap();
        store.close().await;
        drop(store);

        let store = crate::store::testing::reopen(|| SledStore::open(dir.path(), 100)).await;
        let after = get(&store, token.id()).unwrap().unwrap();
        assert_eq!(after, before, "acknowledged is durable");
        assert_eq!(after.uses_left, Some(1));
        store.close().await;
    }

    #[tokio::test]
    async fn expired_tokens_are_swept_after_their_retention() {
        let store = MemoryStore::new(100);
        let now = SystemTime::now();
        let short = NewToken {
            ttl: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let (old, _) = create(&store, &ca(), &short, now).await.unwrap();
        let (forever, _) = create(&store, &ca(), &NewToken::default(), now)
            .await
            .unwrap();
        let keep = Duration::from_secs(60);
        // Expired, but within the retention: kept, still saying "has expired".
        let soon = now + Duration::from_secs(30);
        assert_eq!(sweep_expired(&store, soon, keep).await.unwrap(), 0);
        let later = now + Duration::from_secs(120);
        assert_eq!(sweep_expired(&store, later, keep).await.unwrap(), 1);
        let ids: Vec<String> = list(&store).into_iter().map(|r| r.id).collect();
        assert_eq!(ids, [forever.id().to_string()]);
        assert!(get(&store, old.id()).unwrap().is_none());
    }
}

//! Template hashes: the `controller-revision-hash` label that tells which template a
//! pod was made from.

use prost::Message;
use sha2::{Digest, Sha256};
use twinset_proto::v1::PodTemplateSpec;

/// The label carrying a pod's template hash.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// Kubernetes' "safe" alphabet for generated strings: no vowels (no words), no
/// look-alike characters.
pub const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A short, stable hash of a pod template (10 characters of the safe alphabet),
/// salted by the set's collision count as Kubernetes does.
pub fn template_hash(template: Option<&PodTemplateSpec>, collision_count: i32) -> String {
    let mut hasher = Sha256::new();
    if let Some(t) = template {
        hasher.update(t.encode_to_vec());
    }
    if collision_count != 0 {
        hasher.update(collision_count.to_le_bytes());
    }
    let digest = hasher.finalize();
    let mut n = u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]));
    let mut out = String::with_capacity(10);
    for _ in 0..10 {
        out.push(SAFE_ALPHABET[(n % SAFE_ALPHABET.len() as u64) as usize] as char);
        n /= SAFE_ALPHABET.len() as u64;
    }
    out
}

/// `len` random characters of the safe alphabet, for generated names.
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| SAFE_ALPHABET[rng.random_range(0..SAFE_ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use twinset_proto::v1::ObjectMeta;

    #[test]
    fn hash_is_stable_and_follows_the_template() {
        let a = PodTemplateSpec::default();
        let b = PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: [("a".to_string(), "b".to_string())].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(template_hash(Some(&a), 0), template_hash(Some(&a), 0));
        assert_ne!(template_hash(Some(&a), 0), template_hash(Some(&b), 0));
        assert_ne!(template_hash(Some(&a), 0), template_hash(Some(&a), 1));
        assert_eq!(template_hash(Some(&a), 0).len(), 10);
        let s = random_suffix(5);
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|c| SAFE_ALPHABET.contains(&c)));
    }
}

//! The Cluster service's join token calls (CreateToken, ListTokens, DeleteToken): the
//! request checks and status codes around [`crate::join::tokens`]. The full token is
//! returned by CreateToken only; listing shows ids, expiry, uses and restrictions,
//! never a secret or its hash.

use crate::join::tokens::{self, NewToken, TokenStoreError};
use crate::store::Store;
use std::time::{Duration, SystemTime};
use tonic::Status;
use twinset_proto::v1::{
    CreateTokenRequest, CreateTokenResponse, DeleteTokenRequest, DeleteTokenResponse,
    ListTokensRequest, ListTokensResponse,
};

/// Maps a token store error onto a gRPC status.
pub fn token_status(e: TokenStoreError) -> Status {
    match e {
        TokenStoreError::Refused(r) => Status::unauthenticated(r.to_string()),
        TokenStoreError::NotFound(_) => Status::not_found(e.to_string()),
        TokenStoreError::Invalid(_) => Status::invalid_argument(e.to_string()),
        TokenStoreError::Corrupt { .. } => Status::internal(e.to_string()),
        TokenStoreError::Store(s) => super::status(s),
    }
}

/// What a CreateToken request asks for, checked: negative numbers are refused, 0 means
/// "never expires" / "unlimited uses" as the API documents.
pub fn new_token(r: &CreateTokenRequest) -> Result<NewToken, Status> {
    let ttl = match r.ttl_seconds {
        0 => None,
        s if s < 0 => {
            return Err(Status::invalid_argument(format!(
                "ttl_seconds must be 0 (never expires) or more, not {s}"
            )))
        }
        s => Some(Duration::from_secs(s as u64)),
    };
    let uses = match r.uses {
        0 => None,
        n if n < 0 => {
            return Err(Status::invalid_argument(format!(
                "uses must be 0 (unlimited) or more, not {n}"
            )))
        }
        n => Some(n as u32),
    };
    Ok(NewToken {
        ttl,
        uses,
        node: (!r.node.is_empty()).then(|| r.node.clone()),
        description: r.description.clone(),
    })
}

/// CreateToken: a new token pinning the CA whose hash is `ca_hash`.
pub async fn create_token(
    store: &dyn Store,
    ca_hash: &str,
    request: CreateTokenRequest,
    now: SystemTime,
) -> Result<CreateTokenResponse, Status> {
    let new = new_token(&request)?;
    let (token, record) = tokens::create(store, ca_hash, &new, now)
        .await
        .map_err(token_status)?;
    tracing::info!(
        token = record.id,
        expires = record.info().expires,
        uses = ?record.uses_left,
        node = ?record.node,
        "join token created"
    );
    Ok(CreateTokenResponse {
        token: token.to_string(),
        info: Some(record.info()),
    })
}

/// ListTokens: every token's public part, by id.
pub fn list_tokens(store: &dyn Store, _request: ListTokensRequest) -> ListTokensResponse {
    ListTokensResponse {
        tokens: tokens::list(store).iter().map(|r| r.info()).collect(),
    }
}

/// DeleteToken: removes a token by id; later joins with it are refused.
pub async fn delete_token(
    store: &dyn Store,
    request: DeleteTokenRequest,
) -> Result<DeleteTokenResponse, Status> {
    let gone = tokens::delete(store, &request.id)
        .await
        .map_err(token_status)?;
    tracing::info!(token = gone.id, "join token deleted");
    Ok(DeleteTokenResponse {
        token: Some(gone.info()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use tonic::Code;
    use twinset_proto::token::{sha256_hex, Token};

    #[tokio::test]
    async fn create_list_delete_show_the_secret_only_once() {
        let store = MemoryStore::new(100);
        let ca = sha256_hex(b"ca");
        let made = create_token(
            &store,
            &ca,
            CreateTokenRequest {
                ttl_seconds: 3600,
                uses: 2,
                node: "node1".into(),
                description: "lab".into(),
            },
            SystemTime::now(),
        )
        .await
        .unwrap();
        let token = Token::parse(&made.token).unwrap();
        assert_eq!(token.ca_hash(), ca);
        let info = made.info.unwrap();
        assert_eq!(info.id, token.id());
        assert_eq!(info.uses_left, Some(2));
        assert_eq!(info.node, "node1");
        assert!(!info.expires.is_empty());

        let listed = list_tokens(&store, ListTokensRequest {});
        assert_eq!(listed.tokens, vec![info.clone()]);
        let text = format!("{listed:?}");
        assert!(!text.contains(&token.secret_hash()), "{text}");

        let gone = delete_token(
            &store,
            DeleteTokenRequest {
                id: token.id().into(),
            },
        )
        .await
        .unwrap();
        assert_eq!(gone.token.unwrap().id, token.id());
        let err = delete_token(
            &store,
            DeleteTokenRequest {
                id: token.id().into(),
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(list_tokens(&store, ListTokensRequest {}).tokens.is_empty());
    }

    #[tokio::test]
    async fn negative_numbers_are_refused_and_zero_means_unbounded() {
        let store = MemoryStore::new(100);
        let ca = sha256_hex(b"ca");
        for r in [
            CreateTokenRequest {
                ttl_seconds: -1,
                ..Default::default()
            },
            CreateTokenRequest {
                uses: -1,
                ..Default::default()
            },
        ] {
            let err = create_token(&store, &ca, r, SystemTime::now())
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        }
        let made = create_token(&store, &ca, Default::default(), SystemTime::now())
            .await
            .unwrap();
        let info = made.info.unwrap();
        assert_eq!((info.expires.as_str(), info.uses_left), ("", None));
    }
}

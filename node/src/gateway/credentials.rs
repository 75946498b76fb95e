//! Token strings: how a secret is drawn, how a token names its record, and how a
//! presented secret is checked against the stored digest.
//!
//! A token reads `hodei_<kind>_<id>_<secret>`: `kind` is `t` (a tenant's), `a` (the
//! first start's admin token) or `j` (a pool's join token), `id` its record's id (16 hex
//! digits) and `secret` 64 hex digits drawn from the operating system. The cluster keeps
//! only the SHA-256 digest of the secret.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::gateway::{ErrorCode, GatewayError};
use hodei_domain::access::SecretDigest;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Tenant,
    Admin,
    Join,
}

impl TokenKind {
    fn letter(self) -> &'static str {
        match self {
            TokenKind::Tenant => "t",
            TokenKind::Admin => "a",
            TokenKind::Join => "j",
        }
    }
}

/// A token just drawn: the string the caller is shown once, and what the cluster keeps.
#[derive(Debug, Clone)]
pub struct DrawnToken {
    pub id: String,
    pub token: String,
    pub digest: SecretDigest,
}

/// Draws a new token of `kind` from the operating system's random source.
pub fn draw(kind: TokenKind) -> Result<DrawnToken, GatewayError> {
    let mut bytes = [0u8; 40];
    getrandom::fill(&mut bytes).map_err(|error| {
        GatewayError::new(
            ErrorCode::Internal,
            format!("the operating system gave no random bytes: {error}"),
        )
    })?;
    let id = hex::encode(&bytes[..8]);
    let secret = hex::encode(&bytes[8..]);
    Ok(DrawnToken {
        token: format!("hodei_{}_{id}_{secret}", kind.letter()),
        digest: digest(&secret),
        id,
    })
}

/// A presented token, split: its kind, record id and secret.
pub fn parse(token: &str) -> Option<(TokenKind, &str, &str)> {
    let rest = token.strip_prefix("hodei_")?;
    let (letter, rest) = rest.split_once('_')?;
    let (id, secret) = rest.split_once('_')?;
    let kind = match letter {
        "t" => TokenKind::Tenant,
        "a" => TokenKind::Admin,
        "j" => TokenKind::Join,
        _ => return None,
    };
    let hex_of = |text: &str, len: usize| {
        text.len() == len && text.bytes().all(|byte| byte.is_ascii_hexdigit())
    };
    (hex_of(id, 16) && hex_of(secret, 64)).then_some((kind, id, secret))
}

/// The digest the cluster keeps of a secret.
pub fn digest(secret: &str) -> SecretDigest {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether a presented secret is the one whose digest is stored, in constant time.
pub fn matches(secret: &str, stored: &SecretDigest) -> bool {
    digest(secret).ct_eq(stored).into()
}

/// The join credential a node gives the agents it starts for one of its process pools:
/// an HMAC of the pool's id under the cluster secret, which every member can check and no
/// one without the secret can make.
pub fn node_join_credential(cluster_secret: &str, pool: &str) -> String {
    let label = [b"hodei worker join\0".as_slice(), pool.as_bytes()].concat();
    format!(
        "hodei_n_{}",
        hex::encode(derived_key(cluster_secret, &label))
    )
}

/// The credential one member presents to another's public API (to ask for its metrics
/// endpoint, say): an HMAC under the cluster secret, which authenticates as an admin. A
/// holder of the cluster secret can take part in Raft, so it grants nothing more.
pub fn member_credential(cluster_secret: &str) -> String {
    format!(
        "hodei_m_{}",
        hex::encode(derived_key(cluster_secret, b"hodei member\0"))
    )
}

/// A key for one purpose (`label`) derived from the cluster secret: HMAC-SHA256, so that
/// no derived key reveals the secret or another purpose's key.
pub fn derived_key(cluster_secret: &str, label: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(cluster_secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// Whether a presented credential is the expected one, in constant time.
pub fn same(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drawn_token_parses_and_its_secret_matches_only_its_digest() {
        let drawn = draw(TokenKind::Tenant).unwrap();
        let (kind, id, secret) = parse(&drawn.token).unwrap();
        assert_eq!(kind, TokenKind::Tenant);
        assert_eq!(id, drawn.id);
        assert!(matches(secret, &drawn.digest));
        let other = draw(TokenKind::Tenant).unwrap();
        assert_ne!(other.id, drawn.id);
        assert!(!matches(secret, &other.digest));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let drawn = draw(TokenKind::Join).unwrap();
        for bad in [
            "",
            "hodei_",
            "hodei_x_0123456789abcdef_00",
            &drawn.token[..drawn.token.len() - 1],
            &drawn.token.replace("hodei_j", "hodei_z"),
            &format!("{}g", &drawn.token[..drawn.token.len() - 1]),
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_node_join_credential_is_bound_to_its_pool_and_secret() {
        let credential = node_join_credential("secret", "batch");
        assert!(same(&credential, &node_join_credential("secret", "batch")));
        assert!(!same(&credential, &node_join_credential("secret", "gpu")));
        assert!(!same(&credential, &node_join_credential("other", "batch")));
    }
}

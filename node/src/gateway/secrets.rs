//! Secret job variables (issue 21): `command.secret_env` values are sealed here before a
//! job is proposed, so the Raft log, the sled files and snapshots hold ciphertext only.
//! A sealed value sits in the job's `env` as `hodei-sealed:v1:<hex>`; answers show it as
//! `<redacted>`; the leader opens it only to send the job to its worker.
//!
//! ChaCha20-Poly1305 under a key derived from `cluster.secret` (HMAC-SHA256 with a fixed
//! label), a random nonce per value, and the tenant and variable name as associated
//! data: a sealed value copied to another job's variable or tenant does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::gateway::{ErrorCode, GatewayError};

/// How a sealed value starts.
pub const SEALED_PREFIX: &str = "hodei-sealed:v1:";
/// What answers show instead of a sealed value.
pub const REDACTED: &str = "<redacted>";

/// Seals and opens secret variables with the cluster's key.
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Sealer(<key redacted>)")
    }
}

fn associated(tenant: &str, name: &str) -> Vec<u8> {
    format!("{tenant}\0{name}").into_bytes()
}

impl Sealer {
    /// The sealer of a cluster whose members share `cluster_secret`.
    pub fn new(cluster_secret: &str) -> Self {
        let key = crate::gateway::credentials::derived_key(
            cluster_secret,
            b"hodei secret job variables v1",
        );
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// `value` sealed for variable `name` of a job of `tenant`.
    pub fn seal(&self, tenant: &str, name: &str, value: &str) -> Result<String, GatewayError> {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|error| {
            GatewayError::new(
                ErrorCode::Internal,
                format!("the operating system gave no random bytes: {error}"),
            )
        })?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &associated(tenant, name),
                },
            )
            .map_err(|_| GatewayError::new(ErrorCode::Internal, "a secret could not be sealed"))?;
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&sealed);
        Ok(format!("{SEALED_PREFIX}{}", hex::encode(bytes)))
    }

    /// The value a sealed one holds, if this key sealed it for this tenant and name.
    pub fn open(&self, tenant: &str, name: &str, sealed: &str) -> Option<String> {
        let bytes = hex::decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &associated(tenant, name),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_tenant_name_and_key() {
        let sealer = Sealer::new("cluster-secret-0123456789");
        let sealed = sealer.seal("acme", "DB_PASSWORD", "hunter2").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            sealer.open("acme", "DB_PASSWORD", &sealed).as_deref(),
            Some("hunter2")
        );
        assert_eq!(sealer.open("other", "DB_PASSWORD", &sealed), None);
        assert_eq!(sealer.open("acme", "OTHER", &sealed), None);
        assert_eq!(
            Sealer::new("another-secret-0123456").open("acme", "DB_PASSWORD", &sealed),
            None
        );
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(
            sealed,
            sealer.seal("acme", "DB_PASSWORD", "hunter2").unwrap()
        );
        assert_eq!(
            sealer.open("acme", "DB_PASSWORD", "hodei-sealed:v1:zz"),
            None
        );
    }
}

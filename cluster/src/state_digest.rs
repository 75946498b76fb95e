//! An order-independent digest of the replicated state: the wrapping sum of a 128-bit
//! hash of every key and value in the state keyspace (the cluster's own progress keys
//! aside). Two replicas at the same applied index hold the same state exactly when, short
//! of a hash collision, their digests agree. It is kept up to date write by write, so it
//! costs one read of the old value per written key, not a scan.

use std::collections::HashMap;

use xxhash_rust::xxh3::Xxh3;

use crate::storage::{Keyspace, StorageError, WriteBatch, WriteOperation};

/// Keys the digest leaves out: where the cluster records how far it applied, and the
/// digest itself. They differ between replicas at the same state only in timing.
const EXCLUDED_KEYS: [&[u8]; 3] = [
    crate::state_machine::LAST_APPLIED_KEY,
    crate::state_machine::MEMBERSHIP_KEY,
    crate::state_machine::DIGEST_KEY,
];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateDigest(pub u128);

fn counted(key: &[u8]) -> bool {
    !EXCLUDED_KEYS.contains(&key)
}

fn pair_hash(key: &[u8], value: &[u8]) -> u128 {
    let mut hasher = Xxh3::new();
    // The key's length first, so that no two different pairs hash the same bytes.
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key);
    hasher.update(value);
    hasher.digest128()
}

impl StateDigest {
    /// The digest of everything stored in `keyspace` (a full scan: at start and in tests).
    pub fn of_keyspace(keyspace: &dyn Keyspace) -> Result<Self, StorageError> {
        let pairs = keyspace.range(
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            usize::MAX,
        )?;
        let mut digest = Self::default();
        for (key, value) in pairs {
            if counted(&key) {
                digest.0 = digest.0.wrapping_add(pair_hash(&key, &value));
            }
        }
        Ok(digest)
    }

    /// Moves the digest over `writes`, about to be written to `keyspace` (which still
    /// holds the old values).
    pub fn apply_writes(
        &mut self,
        writes: &WriteBatch,
        keyspace: &dyn Keyspace,
    ) -> Result<(), StorageError> {
        // The hash each key has once the batch's earlier operations are done.
        let mut current: HashMap<&[u8], Option<u128>> = HashMap::new();
        for operation in writes.operations() {
            let (key, new_value) = match operation {
                WriteOperation::Put { key, value } => (key.as_slice(), Some(value.as_slice())),
                WriteOperation::Delete { key } => (key.as_slice(), None),
            };
            if !counted(key) {
                continue;
            }
            let old = match current.get(key) {
                Some(hash) => *hash,
                None => keyspace.get(key)?.map(|value| pair_hash(key, &value)),
            };
            let new = new_value.map(|value| pair_hash(key, value));
            if let Some(old) = old {
                self.0 = self.0.wrapping_sub(old);
            }
            if let Some(new) = new {
                self.0 = self.0.wrapping_add(new);
            }
            current.insert(key, new);
        }
        Ok(())
    }

    pub fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 16] = bytes.try_into().ok()?;
        Some(Self(u128::from_le_bytes(array)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sled_storage::SledStorage;
    use crate::storage::Storage;

    #[test]
    fn the_running_digest_equals_a_full_scan_whatever_the_order_of_writes() {
        let storage = SledStorage::temporary().unwrap();
        let keyspace = storage.keyspace("state").unwrap();
        let mut running = StateDigest::default();
        let steps: Vec<Vec<(&str, Option<&str>)>> = vec![
            vec![("a", Some("1")), ("b", Some("2")), ("a", Some("3"))],
            vec![("b", None), ("c", Some("4")), ("c", None), ("c", Some("5"))],
            vec![("missing", None), ("a", Some("3"))],
        ];
        for step in steps {
            let mut batch = WriteBatch::new();
            for (key, value) in step {
                match value {
                    Some(value) => batch.put(key.as_bytes().to_vec(), value.as_bytes().to_vec()),
                    None => batch.delete(key.as_bytes().to_vec()),
                }
            }
            running.apply_writes(&batch, keyspace.as_ref()).unwrap();
            keyspace.write(batch).unwrap();
            assert_eq!(
                running,
                StateDigest::of_keyspace(keyspace.as_ref()).unwrap()
            );
        }
        // Another store reaching the same content in another order has the same digest.
        let other_storage = SledStorage::temporary().unwrap();
        let other = other_storage.keyspace("state").unwrap();
        let mut batch = WriteBatch::new();
        batch.put(b"c".to_vec(), b"5".to_vec());
        batch.put(b"a".to_vec(), b"3".to_vec());
        batch.put(
            crate::state_machine::LAST_APPLIED_KEY.to_vec(),
            b"9".to_vec(),
        );
        other.write(batch).unwrap();
        assert_eq!(running, StateDigest::of_keyspace(other.as_ref()).unwrap());
        let mut batch = WriteBatch::new();
        batch.put(b"a".to_vec(), b"4".to_vec());
        other.write(batch).unwrap();
        assert_ne!(running, StateDigest::of_keyspace(other.as_ref()).unwrap());
    }
}

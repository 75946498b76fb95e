//! The narrow storage interface everything above stands on: named keyspaces of ordered
//! byte keys, atomic write batches, and an explicit durability point. sled is the engine
//! today ([`crate::sled_storage`]); another embedded engine only has to pass
//! [`crate::storage_conformance`] to replace it.

use std::fmt::Debug;
use std::ops::Bound;
use std::sync::Arc;

#[derive(Debug, Clone, thiserror::Error)]
#[error("storage {operation}: {message}")]
pub struct StorageError {
    pub operation: &'static str,
    pub message: String,
}

impl StorageError {
    pub fn new(operation: &'static str, error: impl std::fmt::Display) -> Self {
        Self {
            operation,
            message: error.to_string(),
        }
    }
}

pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A set of writes applied to one keyspace atomically, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WriteBatch {
    operations: Vec<WriteOperation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOperation {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl WriteOperation {
    pub fn key(&self) -> &[u8] {
        match self {
            WriteOperation::Put { key, .. } | WriteOperation::Delete { key } => key,
        }
    }
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.operations.push(WriteOperation::Put {
            key: key.into(),
            value: value.into(),
        });
    }

    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.operations
            .push(WriteOperation::Delete { key: key.into() });
    }

    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    pub fn len(&self) -> usize {
        self.operations.len()
    }

    pub fn operations(&self) -> &[WriteOperation] {
        &self.operations
    }

    pub fn into_operations(self) -> Vec<WriteOperation> {
        self.operations
    }

    /// The same batch with only the last operation on each key (in the order those last
    /// operations were made): what it leaves stored is unchanged, and a job written at
    /// submission, assignment, start and end within one batch is written once.
    pub fn last_per_key(self) -> WriteBatch {
        let mut last: std::collections::HashMap<&[u8], usize> =
            std::collections::HashMap::with_capacity(self.operations.len());
        for (position, operation) in self.operations.iter().enumerate() {
            last.insert(operation.key(), position);
        }
        if last.len() == self.operations.len() {
            return self;
        }
        let keep: Vec<bool> = self
            .operations
            .iter()
            .enumerate()
            .map(|(position, operation)| last.get(operation.key()) == Some(&position))
            .collect();
        let operations = self
            .operations
            .into_iter()
            .zip(keep)
            .filter_map(|(operation, kept)| kept.then_some(operation))
            .collect();
        WriteBatch { operations }
    }
}

/// One ordered keyspace. Reads see every completed `write`; `flush` makes every completed
/// write durable (it survives a crash of the process or the machine).
pub trait Keyspace: Debug + Send + Sync + 'static {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// Pairs with `start <= key < end` (by the bounds given) in key order, at most `limit`.
    fn range(
        &self,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError>;

    /// Like [`Keyspace::range`], in reverse key order (the last `limit` pairs, last first).
    fn range_rev(
        &self,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError>;

    fn first(&self) -> Result<Option<KeyValue>, StorageError>;

    fn last(&self) -> Result<Option<KeyValue>, StorageError>;

    /// Applies every operation of the batch, or none of them.
    fn write(&self, batch: WriteBatch) -> Result<(), StorageError>;

    /// Returns once every write completed before the call is durable.
    fn flush(&self) -> Result<(), StorageError>;

    /// Every pair whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StorageError> {
        let start = Bound::Included(prefix.to_vec());
        let end = match prefix_successor(prefix) {
            Some(successor) => Bound::Excluded(successor),
            None => Bound::Unbounded,
        };
        self.range(start, end, usize::MAX)
    }
}

/// A database of named keyspaces.
pub trait Storage: Debug + Send + Sync + 'static {
    fn keyspace(&self, name: &str) -> Result<Arc<dyn Keyspace>, StorageError>;

    /// A folder beside the keyspaces for files too large to be values (snapshots).
    fn snapshot_dir(&self) -> std::path::PathBuf;
}

/// The smallest key greater than every key that starts with `prefix`, if one exists.
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut successor = prefix.to_vec();
    while let Some(last) = successor.pop() {
        if last < u8::MAX {
            successor.push(last + 1);
            return Some(successor);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_per_key_keeps_what_the_batch_leaves_stored() {
        let mut batch = WriteBatch::new();
        batch.put(b"job/a".to_vec(), b"pending".to_vec());
        batch.put(b"job/b".to_vec(), b"pending".to_vec());
        batch.put(b"job/a".to_vec(), b"running".to_vec());
        batch.delete(b"job/b".to_vec());
        batch.put(b"job/a".to_vec(), b"done".to_vec());
        let compact = batch.last_per_key();
        assert_eq!(
            compact.operations(),
            &[
                WriteOperation::Delete {
                    key: b"job/b".to_vec()
                },
                WriteOperation::Put {
                    key: b"job/a".to_vec(),
                    value: b"done".to_vec()
                },
            ]
        );
    }
}

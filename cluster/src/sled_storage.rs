//! [`Storage`] on sled: one sled `Tree` per keyspace.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use crate::storage::{KeyValue, Keyspace, Storage, StorageError, WriteBatch, WriteOperation};

/// sled's page cache. The node keeps its active state in memory and reads sled back only
/// at start (and the log's tail is cached above sled), so a large cache (sled's default
/// is 1 GiB) would only hold copies of what memory already has.
const CACHE_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct SledStorage {
    db: sled::Db,
}

impl SledStorage {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|error| StorageError::new("open", error))?;
        Ok(Self { db })
    }

    /// A storage in a temporary folder that sled deletes when it is dropped; for tests.
    pub fn temporary() -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|error| StorageError::new("open", error))?;
        Ok(Self { db })
    }
}

impl Storage for SledStorage {
    fn keyspace(&self, name: &str) -> Result<Arc<dyn Keyspace>, StorageError> {
        let tree = self
            .db
            .open_tree(name)
            .map_err(|error| StorageError::new("open keyspace", error))?;
        Ok(Arc::new(SledKeyspace { tree }))
    }
}

#[derive(Debug, Clone)]
pub struct SledKeyspace {
    tree: sled::Tree,
}

fn pair(result: sled::Result<(sled::IVec, sled::IVec)>) -> Result<KeyValue, StorageError> {
    let (key, value) = result.map_err(|error| StorageError::new("read", error))?;
    Ok((key.to_vec(), value.to_vec()))
}

impl Keyspace for SledKeyspace {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.tree
            .get(key)
            .map(|value| value.map(|value| value.to_vec()))
            .map_err(|error| StorageError::new("get", error))
    }

    fn range(
        &self,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        let empty_range = match (&start, &end) {
            (Bound::Included(low) | Bound::Excluded(low), Bound::Excluded(high)) => low >= high,
            (Bound::Excluded(low), Bound::Included(high)) => low >= high,
            (Bound::Included(low), Bound::Included(high)) => low > high,
            _ => false,
        };
        if empty_range {
            return Ok(Vec::new());
        }
        self.tree
            .range::<Vec<u8>, _>((start, end))
            .take(limit)
            .map(pair)
            .collect()
    }

    fn first(&self) -> Result<Option<KeyValue>, StorageError> {
        self.tree
            .first()
            .map(|found| found.map(|(key, value)| (key.to_vec(), value.to_vec())))
            .map_err(|error| StorageError::new("first", error))
    }

    fn last(&self) -> Result<Option<KeyValue>, StorageError> {
        self.tree
            .last()
            .map(|found| found.map(|(key, value)| (key.to_vec(), value.to_vec())))
            .map_err(|error| StorageError::new("last", error))
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        let mut sled_batch = sled::Batch::default();
        for operation in batch.into_operations() {
            match operation {
                WriteOperation::Put { key, value } => sled_batch.insert(key, value),
                WriteOperation::Delete { key } => sled_batch.remove(key),
            }
        }
        self.tree
            .apply_batch(sled_batch)
            .map_err(|error| StorageError::new("write", error))
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.tree
            .flush()
            .map(|_| ())
            .map_err(|error| StorageError::new("flush", error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_storage_passes_the_conformance_suite() {
        let storage = SledStorage::temporary().unwrap();
        crate::storage_conformance::run_all(&storage);
    }

    #[test]
    fn sled_storage_keeps_flushed_writes_across_reopen() {
        let folder = tempfile::tempdir().unwrap();
        {
            let storage = SledStorage::open(folder.path()).unwrap();
            let keyspace = storage.keyspace("durable").unwrap();
            let mut batch = WriteBatch::new();
            batch.put(b"key".to_vec(), b"value".to_vec());
            keyspace.write(batch).unwrap();
            keyspace.flush().unwrap();
        }
        // sled's background flusher may hold the file lock for a moment after the drop.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let storage = loop {
            match SledStorage::open(folder.path()) {
                Ok(storage) => break storage,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(error) => panic!("{error}"),
            }
        };
        let keyspace = storage.keyspace("durable").unwrap();
        assert_eq!(keyspace.get(b"key").unwrap(), Some(b"value".to_vec()));
    }
}

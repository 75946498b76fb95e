//! [`Storage`] on sled: one sled `Tree` per keyspace.

use std::fs::File;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::storage::{KeyValue, Keyspace, Storage, StorageError, WriteBatch, WriteOperation};

/// sled's page cache. The node keeps its active state in memory and reads sled back only
/// at start (and the log's tail is cached above sled), so a large cache (sled's default
/// is 1 GiB) would only hold copies of what memory already has.
const CACHE_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct SledStorage {
    db: sled::Db,
    durability: Option<Arc<Durability>>,
    snapshot_dir: PathBuf,
    /// A temporary storage's snapshot folder, deleted with the last clone.
    _temporary: Option<Arc<tempfile::TempDir>>,
}

/// What makes a flush durable. sled 0.34 makes its log stable with `sync_file_range`,
/// which persists neither the file's metadata nor the device's write cache, and writes
/// values too large for a segment (Raft entries of batch submissions, snapshots) to
/// files under `blobs/` without syncing them at all. After sled's flush, this syncs the
/// data file with `fdatasync`, the blob files written since the last sync, and the blob
/// directory, so that what a flush returned for survives a power loss.
#[derive(Debug)]
struct Durability {
    db_file: File,
    blobs: PathBuf,
    /// When the last durable flush began: blob files modified since are synced.
    last_sync: Mutex<SystemTime>,
}

impl Durability {
    fn open(path: &Path) -> Result<Self, StorageError> {
        let db_file = File::open(path.join("db"))
            .map_err(|error| StorageError::new("open db file", error))?;
        Ok(Self {
            db_file,
            blobs: path.join("blobs"),
            last_sync: Mutex::new(SystemTime::UNIX_EPOCH),
        })
    }

    fn sync(&self) -> Result<(), StorageError> {
        // One sync at a time: the keyspaces flush from several tasks.
        let mut last_sync = self
            .last_sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let started = SystemTime::now();
        self.db_file
            .sync_data()
            .map_err(|error| StorageError::new("fdatasync", error))?;
        // A second of slack for file systems with coarse timestamps.
        let since = last_sync
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        match std::fs::read_dir(&self.blobs) {
            Ok(entries) => {
                let mut synced_any = false;
                for entry in entries.flatten() {
                    let modified = entry
                        .metadata()
                        .and_then(|metadata| metadata.modified())
                        .unwrap_or(SystemTime::now());
                    if modified < since {
                        continue;
                    }
                    // sled may have removed it meanwhile (a blob it no longer needs).
                    if let Ok(blob) = File::open(entry.path()) {
                        blob.sync_data()
                            .map_err(|error| StorageError::new("fdatasync blob", error))?;
                        synced_any = true;
                    }
                }
                if synced_any {
                    File::open(&self.blobs)
                        .and_then(|directory| directory.sync_all())
                        .map_err(|error| StorageError::new("fsync blob directory", error))?;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(StorageError::new("list blobs", error)),
        }
        *last_sync = started;
        Ok(())
    }
}

impl SledStorage {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|error| StorageError::new("open", error))?;
        let durability = Durability::open(path)?;
        // The blob directory's own entry must be durable before any blob in it is.
        File::open(path)
            .and_then(|directory| directory.sync_all())
            .map_err(|error| StorageError::new("fsync data dir", error))?;
        Ok(Self {
            db,
            durability: Some(Arc::new(durability)),
            snapshot_dir: path.join("snapshots"),
            _temporary: None,
        })
    }

    /// A storage in a temporary folder that sled deletes when it is dropped; for tests.
    pub fn temporary() -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|error| StorageError::new("open", error))?;
        let folder = tempfile::tempdir().map_err(|error| StorageError::new("open", error))?;
        Ok(Self {
            db,
            durability: None,
            snapshot_dir: folder.path().join("snapshots"),
            _temporary: Some(Arc::new(folder)),
        })
    }
}

impl Storage for SledStorage {
    fn keyspace(&self, name: &str) -> Result<Arc<dyn Keyspace>, StorageError> {
        let tree = self
            .db
            .open_tree(name)
            .map_err(|error| StorageError::new("open keyspace", error))?;
        Ok(Arc::new(SledKeyspace {
            tree,
            durability: self.durability.clone(),
        }))
    }

    fn snapshot_dir(&self) -> PathBuf {
        self.snapshot_dir.clone()
    }
}

#[derive(Debug, Clone)]
pub struct SledKeyspace {
    tree: sled::Tree,
    durability: Option<Arc<Durability>>,
}

fn pair(result: sled::Result<(sled::IVec, sled::IVec)>) -> Result<KeyValue, StorageError> {
    let (key, value) = result.map_err(|error| StorageError::new("read", error))?;
    Ok((key.to_vec(), value.to_vec()))
}

impl SledKeyspace {
    /// The pairs within the bounds; `None` when they hold no key (sled panics on a range
    /// whose start is past its end).
    fn pairs_within(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> Option<sled::Iter> {
        let empty = match (&start, &end) {
            (Bound::Included(low) | Bound::Excluded(low), Bound::Excluded(high)) => low >= high,
            (Bound::Excluded(low), Bound::Included(high)) => low >= high,
            (Bound::Included(low), Bound::Included(high)) => low > high,
            _ => false,
        };
        (!empty).then(|| self.tree.range::<Vec<u8>, _>((start, end)))
    }
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
        match self.pairs_within(start, end) {
            Some(pairs) => pairs.take(limit).map(pair).collect(),
            None => Ok(Vec::new()),
        }
    }

    fn range_rev(
        &self,
        start: Bound<Vec<u8>>,
        end: Bound<Vec<u8>>,
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        match self.pairs_within(start, end) {
            Some(pairs) => pairs.rev().take(limit).map(pair).collect(),
            None => Ok(Vec::new()),
        }
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
            .map_err(|error| StorageError::new("flush", error))?;
        match &self.durability {
            Some(durability) => durability.sync(),
            None => Ok(()),
        }
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

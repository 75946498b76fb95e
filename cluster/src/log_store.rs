//! openraft's log storage on a [`Keyspace`]: entries keyed by big-endian index (in the
//! binary form of [`crate::codec`]), and the vote, committed id and last purged id (JSON)
//! in a metadata keyspace. An append is one atomic
//! batch and one flush before openraft is told it is durable.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft_types::{Entry, LogId, NodeId, RaftStorageError, TypeConfig, Vote};
use crate::storage::{Keyspace, StorageError, WriteBatch};

const VOTE_KEY: &[u8] = b"vote";
const COMMITTED_KEY: &[u8] = b"committed";
const LAST_PURGED_KEY: &[u8] = b"last_purged";

#[derive(Debug, Clone)]
pub struct LogStore {
    entries: Arc<dyn Keyspace>,
    meta: Arc<dyn Keyspace>,
}

fn index_key(index: u64) -> Vec<u8> {
    index.to_be_bytes().to_vec()
}

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    error: impl std::fmt::Display,
) -> RaftStorageError {
    let io = std::io::Error::other(error.to_string());
    RaftStorageError::IO {
        source: StorageIOError::new(subject, verb, openraft::AnyError::new(&io)),
    }
}

fn logs_error(verb: ErrorVerb, error: StorageError) -> RaftStorageError {
    io_error(ErrorSubject::Logs, verb, error)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, RaftStorageError> {
    serde_json::from_slice(bytes)
        .map_err(|error| io_error(ErrorSubject::Store, ErrorVerb::Read, error))
}

/// The first byte of an entry whose commands carry request ids (log version 2); entries
/// of version 1 start with the codec's own version byte and are upgraded when read.
pub(crate) const ENTRY_V2: u8 = 2;

pub(crate) fn decode_entry(bytes: &[u8]) -> Result<Entry, RaftStorageError> {
    let decoded = match crate::codec::decode_tagged::<Entry>(ENTRY_V2, bytes) {
        Some(current) => current,
        None => crate::codec::decode::<openraft::Entry<crate::raft_types::LegacyTypeConfig>>(bytes)
            .map(crate::raft_types::upgrade_legacy_entry),
    };
    decoded.map_err(|error| logs_error(ErrorVerb::Read, StorageError::new("decode", error)))
}

pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, RaftStorageError> {
    crate::codec::encode_tagged(ENTRY_V2, entry)
        .map_err(|error| logs_error(ErrorVerb::Write, StorageError::new("encode", error)))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, RaftStorageError> {
    serde_json::to_vec(value)
        .map_err(|error| io_error(ErrorSubject::Store, ErrorVerb::Write, error))
}

impl LogStore {
    pub fn new(entries: Arc<dyn Keyspace>, meta: Arc<dyn Keyspace>) -> Self {
        Self { entries, meta }
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, RaftStorageError> {
        let bytes = self
            .meta
            .get(key)
            .map_err(|error| io_error(ErrorSubject::Store, ErrorVerb::Read, error))?;
        bytes.as_deref().map(decode).transpose()
    }

    fn write_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        durable: bool,
    ) -> Result<(), RaftStorageError> {
        let mut batch = WriteBatch::new();
        batch.put(key.to_vec(), encode(value)?);
        self.meta
            .write(batch)
            .map_err(|error| io_error(ErrorSubject::Store, ErrorVerb::Write, error))?;
        if durable {
            self.meta
                .flush()
                .map_err(|error| io_error(ErrorSubject::Store, ErrorVerb::Write, error))?;
        }
        Ok(())
    }

    /// Deletes every entry whose index lies in `[from, to]`.
    fn delete_entries(&self, from: Bound<u64>, to: Bound<u64>) -> Result<(), RaftStorageError> {
        let start = from.map(index_key);
        let end = to.map(index_key);
        let doomed = self
            .entries
            .range(start, end, usize::MAX)
            .map_err(|error| logs_error(ErrorVerb::Read, error))?;
        let mut batch = WriteBatch::new();
        for (key, _) in doomed {
            batch.delete(key);
        }
        self.entries
            .write(batch)
            .map_err(|error| logs_error(ErrorVerb::Delete, error))?;
        self.entries
            .flush()
            .map_err(|error| logs_error(ErrorVerb::Delete, error))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        let start = range.start_bound().cloned().map(index_key);
        let end = range.end_bound().cloned().map(index_key);
        let found = self
            .entries
            .range(start, end, usize::MAX)
            .map_err(|error| logs_error(ErrorVerb::Read, error))?;
        found.iter().map(|(_, value)| decode_entry(value)).collect()
    }

    /// What the leader sends a follower next: entries from `start`, up to about
    /// [`crate::network::MAX_APPEND_BYTES`] (always at least one). openraft asks for up
    /// to `max_payload_entries` at a time; a follower far behind during batch submissions
    /// would otherwise have hundreds of megabytes read and decoded for every call, of
    /// which one call carries a few.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, RaftStorageError> {
        const READ_AHEAD: usize = 8;
        let mut entries = Vec::new();
        let mut bytes = 0;
        let mut next = start;
        while next < end && (entries.is_empty() || bytes < crate::network::MAX_APPEND_BYTES) {
            let found = self
                .entries
                .range(
                    Bound::Included(index_key(next)),
                    Bound::Excluded(index_key(end)),
                    READ_AHEAD,
                )
                .map_err(|error| logs_error(ErrorVerb::Read, error))?;
            if found.is_empty() {
                break;
            }
            for (_, value) in &found {
                if !entries.is_empty() && bytes + value.len() > crate::network::MAX_APPEND_BYTES {
                    return Ok(entries);
                }
                bytes += value.len();
                let entry = decode_entry(value)?;
                next = entry.log_id.index + 1;
                entries.push(entry);
            }
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, RaftStorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(LAST_PURGED_KEY)?;
        let last_entry = self
            .entries
            .last()
            .map_err(|error| logs_error(ErrorVerb::Read, error))?;
        let last_log_id = match last_entry {
            Some((_, value)) => Some(decode_entry(&value)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), RaftStorageError> {
        self.write_meta(VOTE_KEY, vote, true).map_err(|_| {
            io_error(
                ErrorSubject::Vote,
                ErrorVerb::Write,
                "cannot persist the vote",
            )
        })
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, RaftStorageError> {
        self.read_meta(VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), RaftStorageError> {
        // Not flushed: a lost committed id is recomputed by the leader, and openraft only
        // uses it to re-apply on restart what is already known committed.
        self.write_meta(COMMITTED_KEY, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, RaftStorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), RaftStorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut batch = WriteBatch::new();
        for entry in entries {
            batch.put(index_key(entry.log_id.index), encode_entry(&entry)?);
        }
        self.entries
            .write(batch)
            .map_err(|error| logs_error(ErrorVerb::Write, error))?;
        let flushed = self.entries.flush();
        let outcome = flushed
            .as_ref()
            .map(|_| ())
            .map_err(|error| std::io::Error::other(error.to_string()));
        callback.log_io_completed(outcome);
        flushed.map_err(|error| logs_error(ErrorVerb::Write, error))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        self.delete_entries(Bound::Included(log_id.index), Bound::Unbounded)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), RaftStorageError> {
        // The purged id is recorded first so that a crash mid-purge never leaves a hole
        // that get_log_state would not explain.
        self.write_meta(LAST_PURGED_KEY, &Some(log_id), true)?;
        self.delete_entries(Bound::Unbounded, Bound::Included(log_id.index))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::raft_types::{CommandBatch, ProposedCommand};
    use crate::sled_storage::SledStorage;
    use crate::storage::Storage;

    fn store_entries(sizes: &[usize]) -> LogStore {
        let storage = SledStorage::temporary().unwrap();
        let entries = storage.keyspace("logs").unwrap();
        let mut batch = WriteBatch::new();
        for (position, bytes) in sizes.iter().enumerate() {
            let entry = Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), position as u64 + 1),
                payload: EntryPayload::Normal(CommandBatch {
                    proposed_at_ms: 1,
                    commands: vec![ProposedCommand {
                        request_id: None,
                        command: vec![7; *bytes],
                    }],
                }),
            };
            batch.put(index_key(entry.log_id.index), encode_entry(&entry).unwrap());
        }
        entries.write(batch).unwrap();
        LogStore::new(entries, storage.keyspace("meta").unwrap())
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|entry| entry.log_id.index).collect()
    }

    #[tokio::test]
    async fn what_a_follower_is_sent_is_bounded_in_bytes_not_only_in_entries() {
        let budget = crate::network::MAX_APPEND_BYTES;
        // Large entries: as many as fit in the budget, then the next call goes on.
        let mut store = store_entries(&[budget * 2 / 5; 10]);
        assert_eq!(
            indexes(&store.limited_get_log_entries(1, 11).await.unwrap()),
            vec![1, 2]
        );
        assert_eq!(
            indexes(&store.limited_get_log_entries(3, 11).await.unwrap()),
            vec![3, 4]
        );
        // An entry larger than the budget still goes, alone (the range is never empty).
        let mut store = store_entries(&[budget + 1, 10, 10]);
        assert_eq!(
            indexes(&store.limited_get_log_entries(1, 4).await.unwrap()),
            vec![1]
        );
        assert_eq!(
            indexes(&store.limited_get_log_entries(2, 4).await.unwrap()),
            vec![2, 3]
        );
        // Small entries: the whole range asked for, and nothing past its end.
        let mut store = store_entries(&[100; 40]);
        assert_eq!(
            indexes(&store.limited_get_log_entries(5, 30).await.unwrap()),
            (5..30).collect::<Vec<_>>()
        );
    }
}

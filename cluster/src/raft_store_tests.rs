//! openraft's storage conformance suite run against our sled-backed stores.

use std::sync::{Arc, RwLock};

use openraft::testing::{StoreBuilder, Suite};

use crate::log_store::LogStore;
use crate::raft_types::{RaftStorageError, TypeConfig};
use crate::sled_storage::SledStorage;
use crate::state_machine::{StateMachine, StateMachineStore};
use crate::storage::{Storage, WriteBatch};

/// A state machine that records every command, enough for the suite.
#[derive(Debug, Default)]
struct RecordingMachine {
    applied: Vec<String>,
}

impl StateMachine for RecordingMachine {
    fn apply(&mut self, index: u64, command: &[u8], writes: &mut WriteBatch) -> Vec<u8> {
        self.applied
            .push(String::from_utf8_lossy(command).into_owned());
        writes.put(format!("cmd/{index:020}").into_bytes(), command.to_vec());
        format!("applied {index}").into_bytes()
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec(&self.applied).map_err(|error| error.to_string())
    }

    fn restore(&mut self, snapshot: &[u8], writes: &mut WriteBatch) -> Result<(), String> {
        self.applied = serde_json::from_slice(snapshot).map_err(|error| error.to_string())?;
        for (position, command) in self.applied.iter().enumerate() {
            writes.put(
                format!("cmd/{position:020}").into_bytes(),
                command.as_bytes().to_vec(),
            );
        }
        Ok(())
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore<RecordingMachine>, tempfile::TempDir>
    for SledBuilder
{
    async fn build(
        &self,
    ) -> Result<
        (
            tempfile::TempDir,
            LogStore,
            StateMachineStore<RecordingMachine>,
        ),
        RaftStorageError,
    > {
        let folder = tempfile::tempdir().expect("temporary folder");
        let storage = SledStorage::open(folder.path()).expect("open sled");
        let keyspace = |name: &str| storage.keyspace(name).expect("keyspace");
        let log_store = LogStore::new(keyspace("raft_log"), keyspace("raft_meta"));
        let state = Arc::new(RwLock::new(RecordingMachine::default()));
        let state_machine = StateMachineStore::open(
            state,
            keyspace("state"),
            keyspace("raft_snapshot"),
            storage.snapshot_dir(),
            crate::recent_requests::DedupLimits::default(),
        )?;
        Ok((folder, log_store, state_machine))
    }
}

#[test]
fn sled_raft_store_passes_openraft_suite() -> Result<(), RaftStorageError> {
    Suite::test_all(SledBuilder)?;
    Ok(())
}

//! Snapshots are exact and replicas never diverge: snapshots taken while commands go on
//! applying, each installed on a fresh store that then replays the rest of the log, give
//! the same state digest as the original at every index; and a repeated request id is
//! answered with its first response on every replica, also across a snapshot.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};

use crate::raft_types::{CommandBatch, Entry, ProposedCommand};
use crate::recent_requests::DedupLimits;
use crate::sled_storage::SledStorage;
use crate::state_machine::{StateMachine, StateMachineStore};
use crate::storage::{Storage, WriteBatch};

/// Counts: a command adds its amount to a running total and records itself, so a
/// command applied twice shows in the total.
#[derive(Debug, Default)]
struct Tally {
    total: u64,
    commands: BTreeMap<u64, u64>,
}

impl StateMachine for Tally {
    fn apply(&mut self, index: u64, command: &[u8], writes: &mut WriteBatch) -> Vec<u8> {
        let amount = command.len() as u64;
        self.total += amount;
        let key = index * 1_000 + self.commands.len() as u64 % 1_000;
        self.commands.insert(key, amount);
        writes.put(b"total".to_vec(), self.total.to_le_bytes().to_vec());
        writes.put(
            format!("cmd/{key:020}").into_bytes(),
            amount.to_le_bytes().to_vec(),
        );
        self.total.to_le_bytes().to_vec()
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        crate::codec::encode(&(self.total, &self.commands))
    }

    fn restore(&mut self, snapshot: &[u8], writes: &mut WriteBatch) -> Result<(), String> {
        let (total, commands): (u64, BTreeMap<u64, u64>) = crate::codec::decode(snapshot)?;
        self.total = total;
        self.commands = commands;
        writes.put(b"total".to_vec(), total.to_le_bytes().to_vec());
        for (key, amount) in &self.commands {
            writes.put(
                format!("cmd/{key:020}").into_bytes(),
                amount.to_le_bytes().to_vec(),
            );
        }
        Ok(())
    }
}

/// The snapshot's file as a follower receives it: copied into a file it begins receiving.
async fn receive<S: StateMachine>(
    store: &mut StateMachineStore<S>,
    snapshot: &crate::raft_types::Snapshot,
) -> Box<tokio::fs::File> {
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let mut source = snapshot.snapshot.try_clone().await.unwrap();
    source.seek(std::io::SeekFrom::Start(0)).await.unwrap();
    let mut received = store.begin_receiving_snapshot().await.unwrap();
    tokio::io::copy(&mut source, received.as_mut())
        .await
        .unwrap();
    received.flush().await.unwrap();
    received
}

struct Replica {
    _folder: tempfile::TempDir,
    store: StateMachineStore<Tally>,
}

fn replica() -> Replica {
    let folder = tempfile::tempdir().unwrap();
    let storage = SledStorage::open(folder.path()).unwrap();
    let state = Arc::new(RwLock::new(Tally::default()));
    let store = StateMachineStore::open(
        state,
        storage.keyspace("state").unwrap(),
        storage.keyspace("raft_snapshot").unwrap(),
        storage.snapshot_dir(),
        DedupLimits::default(),
    )
    .unwrap();
    Replica {
        _folder: folder,
        store,
    }
}

fn entry(index: u64, commands: Vec<ProposedCommand>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(CommandBatch {
            proposed_at_ms: 1_000 + index,
            commands,
        }),
    }
}

fn command(request_id: Option<String>, amount: usize) -> ProposedCommand {
    ProposedCommand {
        request_id,
        command: vec![b'x'; amount],
    }
}

/// A log of `entries` entries with a few commands each; every fifth command repeats
/// the request id of one a little earlier (a client's retry).
fn log(entries: u64) -> Vec<Entry> {
    (1..=entries)
        .map(|index| {
            let commands = (0..4)
                .map(|position| {
                    let request = index * 4 + position;
                    let request_id = if request % 5 == 0 && request > 8 {
                        Some(format!("req-{}", request - 7))
                    } else {
                        Some(format!("req-{request}"))
                    };
                    command(request_id, 1 + (request % 7) as usize)
                })
                .collect();
            entry(index, commands)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_taken_while_applying_replay_to_the_same_digest_at_every_index() {
    const ENTRIES: u64 = 1_500;
    const SNAPSHOT_EVERY: u64 = 150;
    let log = log(ENTRIES);
    let mut original = replica();
    let mut digests = BTreeMap::new();
    let mut builds = Vec::new();
    let mut waiting = Vec::new();
    for entry in &log {
        let index = entry.log_id.index;
        original.store.apply([entry.clone()]).await.unwrap();
        let reading = original.store.stats().digest();
        assert_eq!(reading.index, Some(index));
        digests.insert(index, reading.digest);
        // A builder asked for a few entries ago starts building now, while the next
        // entries apply, as openraft does; so its state must not be read at build time.
        for (asked_at, builder) in std::mem::take(&mut waiting) {
            if index < asked_at + 3 {
                waiting.push((asked_at, builder));
                continue;
            }
            let mut builder: crate::state_machine::ExactSnapshotBuilder = builder;
            builds.push(tokio::spawn(async move { builder.build_snapshot().await }));
        }
        if index % SNAPSHOT_EVERY == 0 {
            waiting.push((index, original.store.get_snapshot_builder().await));
        }
    }
    assert!(builds.len() >= 9);
    // Installed over a store that already holds a state (and its digest), as on a
    // follower that fell behind, and on fresh ones.
    let mut behind = replica();
    behind.store.apply(log[..10].to_vec()).await.unwrap();
    for (position, build) in builds.into_iter().enumerate() {
        let snapshot = build.await.unwrap().unwrap();
        let last = snapshot.meta.last_log_id.unwrap().index;
        if position == 0 {
            let received = receive(&mut behind.store, &snapshot).await;
            behind
                .store
                .install_snapshot(&snapshot.meta, received)
                .await
                .unwrap();
            assert_eq!(behind.store.stats().digest().digest, digests[&last]);
        }
        let mut follower = replica();
        let received = receive(&mut follower.store, &snapshot).await;
        follower
            .store
            .install_snapshot(&snapshot.meta, received)
            .await
            .unwrap();
        assert_eq!(
            follower.store.stats().digest().digest,
            digests[&last],
            "the snapshot at {last} holds exactly the state at {last}"
        );
        for entry in &log[last as usize..] {
            let index = entry.log_id.index;
            follower.store.apply([entry.clone()]).await.unwrap();
            assert_eq!(
                follower.store.stats().digest().digest,
                digests[&index],
                "a follower that installed the snapshot at {last} diverged at {index}"
            );
        }
    }
}

#[tokio::test]
async fn a_repeated_request_id_gets_the_first_response_and_changes_nothing() {
    let mut replica = replica();
    let first = replica
        .store
        .apply([entry(1, vec![command(Some("a".into()), 3)])])
        .await
        .unwrap();
    let digest = replica.store.stats().digest().digest;
    let again = replica
        .store
        .apply([entry(2, vec![command(Some("a".into()), 5)])])
        .await
        .unwrap();
    assert_eq!(
        first, again,
        "the repeat is answered with the first response"
    );
    assert_eq!(replica.store.stats().read().repeated_requests, 1);
    assert_ne!(
        replica.store.stats().digest().digest,
        digest,
        "the table's clock moved"
    );
    // Without an id, the same bytes apply again.
    let other = replica
        .store
        .apply([entry(3, vec![command(None, 3)])])
        .await
        .unwrap();
    assert_ne!(first, other);
    // A follower that installs a snapshot taken now answers the repeat the same way.
    let mut builder = replica.store.get_snapshot_builder().await;
    let snapshot = builder.build_snapshot().await.unwrap();
    let mut follower = self::replica();
    let received = receive(&mut follower.store, &snapshot).await;
    follower
        .store
        .install_snapshot(&snapshot.meta, received)
        .await
        .unwrap();
    let from_follower = follower
        .store
        .apply([entry(4, vec![command(Some("a".into()), 9)])])
        .await
        .unwrap();
    assert_eq!(from_follower, first);
}

/// Keeps numbers only as cold keys (`c/<n>`, written once with the entry's index,
/// deleted once): `put n` and `del n`.
#[derive(Debug, Default)]
struct ColdKeys;

impl StateMachine for ColdKeys {
    const COLD_PREFIX: &'static [u8] = b"c/";

    fn apply(&mut self, index: u64, command: &[u8], writes: &mut WriteBatch) -> Vec<u8> {
        let text = String::from_utf8_lossy(command);
        match text.split_once(' ') {
            Some(("put", number)) => writes.put(
                format!("c/{number}").into_bytes(),
                crate::state_machine::cold_value(index, number.as_bytes()),
            ),
            Some(("del", number)) => writes.delete(format!("c/{number}").into_bytes()),
            _ => {}
        }
        Vec::new()
    }

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }

    fn restore(&mut self, _snapshot: &[u8], _writes: &mut WriteBatch) -> Result<(), String> {
        Ok(())
    }
}

fn cold_replica() -> (tempfile::TempDir, StateMachineStore<ColdKeys>) {
    let folder = tempfile::tempdir().unwrap();
    let storage = SledStorage::open(folder.path()).unwrap();
    let store = StateMachineStore::open(
        Arc::new(RwLock::new(ColdKeys)),
        storage.keyspace("state").unwrap(),
        storage.keyspace("raft_snapshot").unwrap(),
        storage.snapshot_dir(),
        DedupLimits::default(),
    )
    .unwrap();
    (folder, store)
}

fn cold_entry(index: u64, command: &str) -> Entry {
    entry(
        index,
        vec![ProposedCommand {
            request_id: None,
            command: command.as_bytes().to_vec(),
        }],
    )
}

/// Cold keys are copied into a snapshot from the keyspace while applies go on: a key
/// written after the snapshot's index is left out, and a delete applied meanwhile waits
/// for the copy, so the snapshot holds exactly the cold keys at its index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_holds_exactly_the_cold_keys_at_its_index_while_applies_go_on() {
    let (_folder, mut original) = cold_replica();
    for number in 1..=100u64 {
        original
            .apply([cold_entry(number, &format!("put {number}"))])
            .await
            .unwrap();
    }
    let at_100 = original.stats().digest();
    let mut builder = original.get_snapshot_builder().await;
    // The next entries apply beside the build: one deletes a key the snapshot holds,
    // one writes a key it must not.
    let applying = tokio::spawn(async move {
        original
            .apply([cold_entry(101, "del 5"), cold_entry(102, "put 200")])
            .await
            .unwrap();
        original
    });
    tokio::task::yield_now().await;
    let snapshot = builder.build_snapshot().await.unwrap();
    let mut original = applying.await.unwrap();
    let at_102 = original.stats().digest();
    assert_eq!(snapshot.meta.last_log_id.unwrap().index, 100);

    let (_follower_folder, mut follower) = cold_replica();
    let received = receive(&mut follower, &snapshot).await;
    follower
        .install_snapshot(&snapshot.meta, received)
        .await
        .unwrap();
    assert_eq!(
        follower.stats().digest().digest,
        at_100.digest,
        "the snapshot at 100 holds exactly the cold keys at 100"
    );
    follower
        .apply([cold_entry(101, "del 5"), cold_entry(102, "put 200")])
        .await
        .unwrap();
    assert_eq!(follower.stats().digest().digest, at_102.digest);
    // The original's next snapshot has the delete and the new key.
    let mut builder = original.get_snapshot_builder().await;
    let later = builder.build_snapshot().await.unwrap();
    let (_third_folder, mut third) = cold_replica();
    let received = receive(&mut third, &later).await;
    third.install_snapshot(&later.meta, received).await.unwrap();
    assert_eq!(third.stats().digest().digest, at_102.digest);
}

/// A snapshot an earlier version kept in the snapshot keyspace (one value, version 2) is
/// moved to a file when the store opens, is served as the current snapshot, and installs.
#[tokio::test]
async fn a_snapshot_kept_in_the_keyspace_by_an_earlier_version_moves_to_a_file() {
    let mut original = replica();
    original.store.apply(log(20)).await.unwrap();
    let at_20 = original.store.stats().digest();
    let head = crate::state_machine::tests_support::head_v2(&original.store);
    let folder = tempfile::tempdir().unwrap();
    let storage = SledStorage::open(folder.path()).unwrap();
    let snapshots = storage.keyspace("raft_snapshot").unwrap();
    crate::state_machine::tests_support::store_legacy(snapshots.as_ref(), 20, head);
    let mut store = StateMachineStore::open(
        Arc::new(RwLock::new(Tally::default())),
        storage.keyspace("state").unwrap(),
        snapshots.clone(),
        storage.snapshot_dir(),
        DedupLimits::default(),
    )
    .unwrap();
    assert!(snapshots.get(b"snapshot").unwrap().is_none(), "moved out");
    let current = store.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta.last_log_id.unwrap().index, 20);
    let mut follower = replica();
    let received = receive(&mut follower.store, &current).await;
    follower
        .store
        .install_snapshot(&current.meta, received)
        .await
        .unwrap();
    assert_eq!(follower.store.stats().digest().digest, at_20.digest);
}

//! The behaviour every [`Storage`] engine must have. Run it from the engine's tests:
//! `storage_conformance::run_all(&engine)`. Panics (with the case's name) on a violation.

use std::ops::Bound;

use crate::storage::{Storage, WriteBatch};

pub fn run_all(storage: &dyn Storage) {
    get_returns_what_was_put(storage);
    batch_applies_in_order(storage);
    keyspaces_are_independent(storage);
    range_respects_bounds_order_and_limit(storage);
    first_and_last(storage);
    scan_prefix_stops_at_the_prefix(storage);
    delete_of_missing_key_is_harmless(storage);
    flush_succeeds(storage);
}

fn put(storage: &dyn Storage, keyspace: &str, pairs: &[(&[u8], &[u8])]) {
    let keyspace = storage.keyspace(keyspace).unwrap();
    let mut batch = WriteBatch::new();
    for (key, value) in pairs {
        batch.put(key.to_vec(), value.to_vec());
    }
    keyspace.write(batch).unwrap();
}

fn get_returns_what_was_put(storage: &dyn Storage) {
    put(storage, "conformance-get", &[(b"a", b"1")]);
    let keyspace = storage.keyspace("conformance-get").unwrap();
    assert_eq!(
        keyspace.get(b"a").unwrap(),
        Some(b"1".to_vec()),
        "get_returns_what_was_put"
    );
    assert_eq!(
        keyspace.get(b"b").unwrap(),
        None,
        "get_returns_what_was_put: missing key"
    );
}

fn batch_applies_in_order(storage: &dyn Storage) {
    let keyspace = storage.keyspace("conformance-order").unwrap();
    let mut batch = WriteBatch::new();
    batch.put(b"k".to_vec(), b"first".to_vec());
    batch.delete(b"k".to_vec());
    batch.put(b"k".to_vec(), b"last".to_vec());
    batch.put(b"gone".to_vec(), b"x".to_vec());
    batch.delete(b"gone".to_vec());
    keyspace.write(batch).unwrap();
    assert_eq!(
        keyspace.get(b"k").unwrap(),
        Some(b"last".to_vec()),
        "batch_applies_in_order"
    );
    assert_eq!(
        keyspace.get(b"gone").unwrap(),
        None,
        "batch_applies_in_order: delete"
    );
}

fn keyspaces_are_independent(storage: &dyn Storage) {
    put(storage, "conformance-left", &[(b"shared", b"left")]);
    put(storage, "conformance-right", &[(b"shared", b"right")]);
    let left = storage.keyspace("conformance-left").unwrap();
    let right = storage.keyspace("conformance-right").unwrap();
    assert_eq!(
        left.get(b"shared").unwrap(),
        Some(b"left".to_vec()),
        "keyspaces_are_independent"
    );
    assert_eq!(
        right.get(b"shared").unwrap(),
        Some(b"right".to_vec()),
        "keyspaces_are_independent"
    );
}

fn range_respects_bounds_order_and_limit(storage: &dyn Storage) {
    let keys: Vec<[u8; 1]> = (0u8..10).map(|byte| [byte]).collect();
    let pairs: Vec<(&[u8], &[u8])> = keys.iter().map(|key| (&key[..], &b"v"[..])).collect();
    put(storage, "conformance-range", &pairs);
    let keyspace = storage.keyspace("conformance-range").unwrap();
    let keys_of = |found: Vec<(Vec<u8>, Vec<u8>)>| {
        found.into_iter().map(|(key, _)| key[0]).collect::<Vec<_>>()
    };
    let inclusive = keyspace
        .range(
            Bound::Included(vec![2]),
            Bound::Included(vec![5]),
            usize::MAX,
        )
        .unwrap();
    assert_eq!(
        keys_of(inclusive),
        vec![2, 3, 4, 5],
        "range: included bounds"
    );
    let exclusive = keyspace
        .range(
            Bound::Excluded(vec![2]),
            Bound::Excluded(vec![5]),
            usize::MAX,
        )
        .unwrap();
    assert_eq!(keys_of(exclusive), vec![3, 4], "range: excluded bounds");
    let limited = keyspace
        .range(Bound::Unbounded, Bound::Unbounded, 3)
        .unwrap();
    assert_eq!(keys_of(limited), vec![0, 1, 2], "range: limit");
    let empty = keyspace
        .range(
            Bound::Included(vec![5]),
            Bound::Excluded(vec![5]),
            usize::MAX,
        )
        .unwrap();
    assert!(empty.is_empty(), "range: empty range");
    let inverted = keyspace
        .range(
            Bound::Included(vec![7]),
            Bound::Excluded(vec![3]),
            usize::MAX,
        )
        .unwrap();
    assert!(
        inverted.is_empty(),
        "range: inverted range is empty, not an error"
    );
    let reversed = keyspace
        .range_rev(Bound::Excluded(vec![2]), Bound::Included(vec![7]), 3)
        .unwrap();
    assert_eq!(
        keys_of(reversed),
        vec![7, 6, 5],
        "range_rev: last first, limit"
    );
    let reversed_inverted = keyspace
        .range_rev(Bound::Included(vec![7]), Bound::Excluded(vec![3]), 3)
        .unwrap();
    assert!(
        reversed_inverted.is_empty(),
        "range_rev: inverted range is empty"
    );
}

fn first_and_last(storage: &dyn Storage) {
    let keyspace = storage.keyspace("conformance-ends").unwrap();
    assert_eq!(keyspace.first().unwrap(), None, "first of empty keyspace");
    assert_eq!(keyspace.last().unwrap(), None, "last of empty keyspace");
    put(
        storage,
        "conformance-ends",
        &[(b"m", b"1"), (b"a", b"2"), (b"z", b"3")],
    );
    assert_eq!(keyspace.first().unwrap().unwrap().0, b"a".to_vec(), "first");
    assert_eq!(keyspace.last().unwrap().unwrap().0, b"z".to_vec(), "last");
}

fn scan_prefix_stops_at_the_prefix(storage: &dyn Storage) {
    put(
        storage,
        "conformance-prefix",
        &[
            (b"tenant/a", b"1"),
            (b"tenant/b", b"2"),
            (b"tenanu", b"3"),
            (b"pool/a", b"4"),
        ],
    );
    let keyspace = storage.keyspace("conformance-prefix").unwrap();
    let found = keyspace.scan_prefix(b"tenant/").unwrap();
    assert_eq!(
        found.into_iter().map(|(key, _)| key).collect::<Vec<_>>(),
        vec![b"tenant/a".to_vec(), b"tenant/b".to_vec()],
        "scan_prefix"
    );
    let all_high = [0xff_u8, 0xff];
    put(storage, "conformance-prefix", &[(&all_high[..], b"5")]);
    assert_eq!(
        keyspace.scan_prefix(&[0xff]).unwrap().len(),
        1,
        "scan_prefix of 0xff"
    );
}

fn delete_of_missing_key_is_harmless(storage: &dyn Storage) {
    let keyspace = storage.keyspace("conformance-delete").unwrap();
    let mut batch = WriteBatch::new();
    batch.delete(b"never-written".to_vec());
    keyspace.write(batch).unwrap();
    assert_eq!(
        keyspace.get(b"never-written").unwrap(),
        None,
        "delete of a missing key"
    );
}

fn flush_succeeds(storage: &dyn Storage) {
    put(storage, "conformance-flush", &[(b"k", b"v")]);
    storage
        .keyspace("conformance-flush")
        .unwrap()
        .flush()
        .unwrap();
}

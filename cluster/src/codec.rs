//! The binary encoding of what is stored and replicated in bulk: log entries on disk and
//! `AppendEntries` on the wire here, and the node's commands and stored entities. JSON
//! costs a tenth of the CPU of a batch submission in escaping alone and four times the
//! bytes; this is postcard behind a version byte. Bytes that start with `{` decode as
//! JSON, so a hand-written JSON command (the Raft benchmark's probe) is accepted too.
//!
//! postcard does not name fields: a type stored this way changes shape only with a new
//! version byte (or a new enum variant at the end), and cannot use
//! `skip_serializing_if`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first byte of the binary form, version 1.
const BINARY_V1: u8 = 1;

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut bytes = vec![BINARY_V1];
    postcard::to_io(value, &mut bytes).map_err(|error| error.to_string())?;
    Ok(bytes)
}

/// The binary form with another first byte, for a type whose shape changed: its
/// readers tell the old shape from the new by that byte (see [`decode_tagged`]).
pub fn encode_tagged<T: Serialize>(tag: u8, value: &T) -> Result<Vec<u8>, String> {
    let mut bytes = vec![tag];
    postcard::to_io(value, &mut bytes).map_err(|error| error.to_string())?;
    Ok(bytes)
}

/// Decodes what [`encode_tagged`] wrote with `tag`; `None` when the bytes carry
/// another tag (an older shape, for the caller to read as such).
pub fn decode_tagged<T: DeserializeOwned>(tag: u8, bytes: &[u8]) -> Option<Result<T, String>> {
    match bytes.split_first() {
        Some((&first, rest)) if first == tag => {
            Some(postcard::from_bytes(rest).map_err(|error| error.to_string()))
        }
        _ => None,
    }
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.first() {
        Some(&BINARY_V1) => postcard::from_bytes(&bytes[1..]).map_err(|error| error.to_string()),
        Some(b'{') => serde_json::from_slice(bytes).map_err(|error| error.to_string()),
        Some(other) => Err(format!("unknown encoding (first byte {other})")),
        None => Err("nothing to decode".to_string()),
    }
}

/// Like [`decode`], but the value must take every byte: what a reader of several shapes
/// (each a prefix of the next) uses, so that bytes of a shape it does not know are an
/// error rather than a shorter shape with the rest silently dropped.
pub fn decode_whole<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.first() {
        Some(&BINARY_V1) => {
            let (value, rest) =
                postcard::take_from_bytes(&bytes[1..]).map_err(|error| error.to_string())?;
            if rest.is_empty() {
                Ok(value)
            } else {
                Err(format!("{} bytes left after the value", rest.len()))
            }
        }
        _ => decode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_types::{CommandBatch, Entry, LegacyCommandBatch, ProposedCommand};

    fn entry(commands: &[&str]) -> Entry {
        Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 2), 41),
            payload: openraft::EntryPayload::Normal(CommandBatch {
                proposed_at_ms: 1_700_000_000_000,
                commands: commands
                    .iter()
                    .map(|command| ProposedCommand {
                        request_id: Some(format!("r-{command}")),
                        command: command.as_bytes().to_vec(),
                    })
                    .collect(),
            }),
        }
    }

    #[test]
    fn entries_round_trip_without_escaping_their_commands() {
        let command = r#"{"V1":{"Probe":{"payload":"a \"quoted\" word, ü and \n"}}}"#;
        let original = entry(&[command, ""]);
        let bytes = encode(&original).unwrap();
        assert_eq!(bytes[0], BINARY_V1);
        // The command is stored as it is: no escaping.
        assert!(
            bytes
                .windows(command.len())
                .any(|window| window == command.as_bytes())
        );
        assert_eq!(decode::<Entry>(&bytes).unwrap(), original);
    }

    #[test]
    fn a_version_1_log_entry_is_read_as_commands_without_request_ids() {
        let legacy = openraft::Entry::<crate::raft_types::LegacyTypeConfig> {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 2), 41),
            payload: openraft::EntryPayload::Normal(LegacyCommandBatch {
                commands: vec![b"one".to_vec(), b"two".to_vec()],
            }),
        };
        let bytes = encode(&legacy).unwrap();
        let upgraded = crate::log_store::decode_entry(&bytes).unwrap();
        let openraft::EntryPayload::Normal(batch) = upgraded.payload else {
            panic!("a normal entry stays normal");
        };
        assert_eq!(batch.commands.len(), 2);
        assert_eq!(batch.commands[1].command, b"two");
        assert!(
            batch
                .commands
                .iter()
                .all(|command| command.request_id.is_none())
        );
        // Today's entries carry their own first byte and round trip with their ids.
        let current = entry(&["x"]);
        let bytes = crate::log_store::encode_entry(&current).unwrap();
        assert_eq!(crate::log_store::decode_entry(&bytes).unwrap(), current);
    }

    #[test]
    fn json_still_decodes() {
        let original = entry(&[r#"{"V1":{}}"#]);
        let json = serde_json::to_vec(&original).unwrap();
        assert_eq!(decode::<Entry>(&json).unwrap(), original);
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let bytes = encode(&entry(&["x"])).unwrap();
        assert!(decode::<Entry>(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode::<Entry>(&[]).is_err());
        assert!(decode::<Entry>(&[7, 1, 2]).is_err());
    }
}

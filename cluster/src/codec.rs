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

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    match bytes.first() {
        Some(&BINARY_V1) => postcard::from_bytes(&bytes[1..]).map_err(|error| error.to_string()),
        Some(b'{') => serde_json::from_slice(bytes).map_err(|error| error.to_string()),
        Some(other) => Err(format!("unknown encoding (first byte {other})")),
        None => Err("nothing to decode".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft_types::{CommandBatch, Entry};

    fn entry(commands: &[&str]) -> Entry {
        Entry {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(3, 2), 41),
            payload: openraft::EntryPayload::Normal(CommandBatch {
                commands: commands
                    .iter()
                    .map(|command| command.as_bytes().to_vec())
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

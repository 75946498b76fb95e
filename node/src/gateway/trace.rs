//! Trace ids: W3C `traceparent` is honoured when present and valid; otherwise a new id is
//! drawn. The id goes back in `x-trace-id` and in every JSON body's `trace_id`.

use std::fmt;

pub const TRACE_ID_HEADER: &str = "x-trace-id";
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// 32 lowercase hex digits, as in W3C Trace Context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceId(String);

impl TraceId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// The trace id of a valid `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if it is one.
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let parts: Vec<&str> = header.trim().split('-').collect();
        let [version, trace_id, parent_id, flags] = parts.as_slice() else {
            return None;
        };
        let is_hex = |text: &str, len: usize| {
            text.len() == len
                && text
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        };
        let valid = is_hex(version, 2)
            && *version != "ff"
            && is_hex(trace_id, 32)
            && trace_id.chars().any(|c| c != '0')
            && is_hex(parent_id, 16)
            && parent_id.chars().any(|c| c != '0')
            && is_hex(flags, 2);
        valid.then(|| Self(trace_id.to_string()))
    }

    /// The incoming traceparent's id, or a fresh one.
    pub fn from_header_or_new(traceparent: Option<&str>) -> Self {
        traceparent
            .and_then(Self::from_traceparent)
            .unwrap_or_else(Self::generate)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn honours_a_valid_traceparent() {
        let id =
            TraceId::from_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
                .unwrap();
        assert_eq!(id.as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }

    #[test]
    fn ignores_invalid_traceparents() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceId::from_traceparent(bad).is_none(), "{bad}");
        }
        let fresh = TraceId::from_header_or_new(Some("garbage"));
        assert_eq!(fresh.as_str().len(), 32);
    }
}

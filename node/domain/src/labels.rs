//! Labels: small string maps attached to tenants (and later pools and jobs), with the
//! Kubernetes-like limits users expect.

use std::collections::BTreeMap;

use crate::DomainError;

pub type Labels = BTreeMap<String, String>;

pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY_LEN: usize = 63;
pub const MAX_LABEL_VALUE_LEN: usize = 253;

fn is_label_key(key: &str) -> bool {
    let mut chars = key.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    key.len() <= MAX_LABEL_KEY_LEN
        && first.is_ascii_alphanumeric()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// Checks a label map; `field` names it in errors (`labels`).
pub fn validate_labels(field: &str, labels: &Labels) -> Result<(), DomainError> {
    if labels.len() > MAX_LABELS {
        return Err(DomainError::invalid(
            field,
            format!("at most {MAX_LABELS} labels, got {}", labels.len()),
        ));
    }
    for (key, value) in labels {
        if !is_label_key(key) {
            return Err(DomainError::invalid(
                format!("{field}.{key}"),
                format!(
                    "label keys are 1-{MAX_LABEL_KEY_LEN} characters of [A-Za-z0-9-_./] starting with a letter or digit"
                ),
            ));
        }
        if value.len() > MAX_LABEL_VALUE_LEN || value.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                format!("{field}.{key}"),
                format!(
                    "label values are at most {MAX_LABEL_VALUE_LEN} bytes without control characters"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_labels() {
        let labels = Labels::from([
            ("team".to_string(), "ml".to_string()),
            ("cost-center/id".to_string(), "42".to_string()),
        ]);
        assert!(validate_labels("labels", &labels).is_ok());
    }

    #[test]
    fn refuses_bad_keys_naming_them() {
        let labels = Labels::from([("-bad".to_string(), "x".to_string())]);
        let error = validate_labels("labels", &labels).unwrap_err();
        assert!(matches!(error, DomainError::Invalid { ref field, .. } if field == "labels.-bad"));
    }

    #[test]
    fn refuses_too_many_labels() {
        let labels: Labels = (0..=MAX_LABELS)
            .map(|n| (format!("k{n}"), "v".to_string()))
            .collect();
        assert!(validate_labels("labels", &labels).is_err());
    }
}

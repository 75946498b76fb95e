//! Tenants (US-09.1.1): identity, tier, fair-share weight, labels and status.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::labels::{Labels, validate_labels};
use crate::quota::Quota;

pub const DEFAULT_TENANT_ID: &str = "default";
pub const MIN_WEIGHT: f64 = 0.1;
pub const MAX_WEIGHT: f64 = 100.0;
pub const MAX_DISPLAY_NAME_LEN: usize = 200;

/// A tenant id: a slug `[a-z0-9][a-z0-9-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        Self::try_from(raw.to_string()).map_err(|rule| DomainError::invalid("id", rule))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn default_tenant() -> Self {
        Self(DEFAULT_TENANT_ID.to_string())
    }

    /// Who the cost ledger names when `cost_tracking.track_by_tenant` is off: `*`, which
    /// no tenant id can be.
    pub fn untracked() -> Self {
        Self("*".to_string())
    }
}

/// Whether `text` is a slug `[a-z0-9][a-z0-9-]{0,62}`.
pub fn is_slug(text: &str) -> bool {
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    text.len() <= 63
        && (first.is_ascii_lowercase() || first.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl TryFrom<String> for TenantId {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        if is_slug(&raw) {
            Ok(Self(raw))
        } else {
            Err(format!(
                "must match [a-z0-9][a-z0-9-]{{0,62}} (lowercase letters, digits and dashes, 1-63 long), got `{raw}`"
            ))
        }
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> Self {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Free,
    #[default]
    Standard,
    Premium,
    Enterprise,
}

impl Tier {
    pub const ALL: [Tier; 4] = [Tier::Free, Tier::Standard, Tier::Premium, Tier::Enterprise];

    /// The fair-share weight a tenant of this tier gets unless it sets its own.
    pub fn default_weight(self) -> f64 {
        match self {
            Tier::Free => 1.0,
            Tier::Standard => 2.0,
            Tier::Premium => 3.0,
            Tier::Enterprise => 5.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Free => "free",
            Tier::Standard => "standard",
            Tier::Premium => "premium",
            Tier::Enterprise => "enterprise",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        Self::ALL
            .into_iter()
            .find(|tier| tier.as_str() == raw)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!("must be one of free, standard, premium, enterprise, got `{raw}`"),
                )
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    #[default]
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }

    pub fn parse(field: &str, raw: &str) -> Result<Self, DomainError> {
        match raw {
            "active" => Ok(TenantStatus::Active),
            "suspended" => Ok(TenantStatus::Suspended),
            _ => Err(DomainError::invalid(
                field,
                format!("must be one of active, suspended, got `{raw}`"),
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub display_name: String,
    pub tier: Tier,
    pub weight: f64,
    pub labels: Labels,
    pub status: TenantStatus,
    /// What the tenant may run; set from the configured default when it is created.
    #[serde(default)]
    pub quota: Quota,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// What a caller asks for when creating a tenant, already parsed but not yet checked.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTenant {
    pub id: TenantId,
    pub display_name: Option<String>,
    pub tier: Tier,
    pub weight: Option<f64>,
    pub labels: Labels,
    pub quota: Quota,
}

/// A partial update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantPatch {
    pub display_name: Option<String>,
    pub tier: Option<Tier>,
    pub weight: Option<f64>,
    pub labels: Option<Labels>,
    pub status: Option<TenantStatus>,
}

fn validate_weight(weight: f64) -> Result<(), DomainError> {
    if weight.is_finite() && (MIN_WEIGHT..=MAX_WEIGHT).contains(&weight) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "weight",
            format!("must be between {MIN_WEIGHT} and {MAX_WEIGHT}, got {weight}"),
        ))
    }
}

fn validate_display_name(name: &str) -> Result<(), DomainError> {
    if name.trim().is_empty() {
        return Err(DomainError::invalid("display_name", "must not be blank"));
    }
    if name.chars().count() > MAX_DISPLAY_NAME_LEN || name.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "display_name",
            format!("at most {MAX_DISPLAY_NAME_LEN} characters without control characters"),
        ));
    }
    Ok(())
}

impl NewTenant {
    /// Checks every field and builds the tenant as it will be stored, created at `now_ms`.
    pub fn into_tenant(self, now_ms: u64) -> Result<Tenant, DomainError> {
        let display_name = self.display_name.unwrap_or_else(|| self.id.to_string());
        validate_display_name(&display_name)?;
        let weight = self.weight.unwrap_or_else(|| self.tier.default_weight());
        validate_weight(weight)?;
        validate_labels("labels", &self.labels)?;
        Ok(Tenant {
            id: self.id,
            display_name,
            tier: self.tier,
            weight,
            labels: self.labels,
            status: TenantStatus::Active,
            quota: self.quota,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        })
    }
}

impl TenantPatch {
    pub fn is_empty(&self) -> bool {
        *self == TenantPatch::default()
    }

    /// Checks the fields the patch sets.
    pub fn validate(&self) -> Result<(), DomainError> {
        if let Some(name) = &self.display_name {
            validate_display_name(name)?;
        }
        if let Some(weight) = self.weight {
            validate_weight(weight)?;
        }
        if let Some(labels) = &self.labels {
            validate_labels("labels", labels)?;
        }
        Ok(())
    }
}

impl Tenant {
    /// Checks every field of a tenant as it will be stored: the id, what
    /// [`NewTenant::into_tenant`] checks, and the quota. The gateway builds tenants through
    /// `into_tenant`; apply calls this on `CreateTenant` too, since a forwarded or raw
    /// command reaches it without having passed the gateway.
    pub fn validate(&self) -> Result<(), DomainError> {
        // A decoded id is a slug already (`TenantId` is parsed on deserialization); checked
        // again so that the rule does not depend on how the value was built.
        TenantId::parse(self.id.as_str())?;
        validate_display_name(&self.display_name)?;
        validate_weight(self.weight)?;
        validate_labels("labels", &self.labels)?;
        self.quota.validate().map_err(|error| match error {
            DomainError::Invalid { field, rule } => DomainError::Invalid {
                field: format!("quota.{field}"),
                rule,
            },
            other => other,
        })
    }

    /// The default tenant bootstrap creates: every request that names no tenant acts for it.
    pub fn default_tenant(now_ms: u64, quota: Quota) -> Tenant {
        Tenant {
            id: TenantId::default_tenant(),
            display_name: "Default tenant".to_string(),
            tier: Tier::Standard,
            weight: Tier::Standard.default_weight(),
            labels: Labels::new(),
            status: TenantStatus::Active,
            quota,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }
    }

    /// Applies a validated patch at `now_ms`. Changing the tier without naming a weight
    /// moves a tenant that had its tier's default weight to the new tier's default; a
    /// weight set by hand is kept.
    pub fn apply_patch(&mut self, patch: &TenantPatch, now_ms: u64) {
        if let Some(tier) = patch.tier {
            let had_default_weight = self.weight == self.tier.default_weight();
            if patch.weight.is_none() && had_default_weight {
                self.weight = tier.default_weight();
            }
            self.tier = tier;
        }
        if let Some(weight) = patch.weight {
            self.weight = weight;
        }
        if let Some(name) = &patch.display_name {
            self.display_name = name.clone();
        }
        if let Some(labels) = &patch.labels {
            self.labels = labels.clone();
        }
        if let Some(status) = patch.status {
            self.status = status;
        }
        self.updated_at_ms = self.updated_at_ms.max(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn new_tenant(id: &str) -> NewTenant {
        NewTenant {
            id: TenantId::parse(id).unwrap(),
            display_name: None,
            tier: Tier::Standard,
            weight: None,
            labels: Labels::new(),
            quota: Quota::default(),
        }
    }

    #[test]
    fn tenant_ids_are_slugs() {
        for good in ["a", "acme", "team-1", "0abc", &"a".repeat(63)] {
            assert!(TenantId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "A", "ac_me", "ac me", "ümlaut", &"a".repeat(64)] {
            let error = TenantId::parse(bad).unwrap_err();
            assert!(
                matches!(error, DomainError::Invalid { ref field, .. } if field == "id"),
                "{bad}"
            );
        }
    }

    #[test]
    fn weight_defaults_by_tier() {
        let expectations = [
            (Tier::Free, 1.0),
            (Tier::Standard, 2.0),
            (Tier::Premium, 3.0),
            (Tier::Enterprise, 5.0),
        ];
        for (tier, weight) in expectations {
            let tenant = NewTenant {
                tier,
                ..new_tenant("t")
            }
            .into_tenant(7)
            .unwrap();
            assert_eq!(tenant.weight, weight);
            assert_eq!(tenant.created_at_ms, 7);
            assert_eq!(tenant.status, TenantStatus::Active);
            assert_eq!(tenant.display_name, "t");
        }
    }

    #[test]
    fn weight_outside_bounds_is_refused_naming_weight() {
        for weight in [0.0, 0.09, 100.5, f64::NAN, f64::INFINITY, -1.0] {
            let error = NewTenant {
                weight: Some(weight),
                ..new_tenant("t")
            }
            .into_tenant(0)
            .unwrap_err();
            assert!(
                matches!(error, DomainError::Invalid { ref field, .. } if field == "weight"),
                "{weight}"
            );
        }
        for weight in [0.1, 1.0, 100.0] {
            assert!(
                NewTenant {
                    weight: Some(weight),
                    ..new_tenant("t")
                }
                .into_tenant(0)
                .is_ok()
            );
        }
    }

    #[test]
    fn blank_display_name_is_refused() {
        let error = NewTenant {
            display_name: Some("  ".to_string()),
            ..new_tenant("t")
        }
        .into_tenant(0)
        .unwrap_err();
        assert!(matches!(error, DomainError::Invalid { ref field, .. } if field == "display_name"));
    }

    #[test]
    fn tier_change_moves_default_weight_but_keeps_custom_weight() {
        let mut with_default = new_tenant("a").into_tenant(0).unwrap();
        with_default.apply_patch(
            &TenantPatch {
                tier: Some(Tier::Enterprise),
                ..Default::default()
            },
            5,
        );
        assert_eq!(with_default.weight, 5.0);
        assert_eq!(with_default.updated_at_ms, 5);

        let mut with_custom = NewTenant {
            weight: Some(7.5),
            ..new_tenant("b")
        }
        .into_tenant(0)
        .unwrap();
        with_custom.apply_patch(
            &TenantPatch {
                tier: Some(Tier::Free),
                ..Default::default()
            },
            5,
        );
        assert_eq!(with_custom.weight, 7.5);
        assert_eq!(with_custom.tier, Tier::Free);
    }

    #[test]
    fn unknown_tier_and_status_name_their_field() {
        assert!(
            matches!(Tier::parse("tier", "gold"), Err(DomainError::Invalid { ref field, .. }) if field == "tier")
        );
        assert!(matches!(
            TenantStatus::parse("status", "paused"),
            Err(DomainError::Invalid { ref field, .. }) if field == "status"
        ));
    }

    proptest! {
        #[test]
        fn patch_never_moves_updated_at_backwards(start in 0u64..1_000_000, later in 0u64..1_000_000) {
            let mut tenant = new_tenant("p").into_tenant(start).unwrap();
            tenant.apply_patch(&TenantPatch { weight: Some(3.0), ..Default::default() }, later);
            prop_assert!(tenant.updated_at_ms >= start);
            prop_assert!(tenant.updated_at_ms >= later);
        }

        #[test]
        fn any_slug_round_trips_through_serde(id in "[a-z0-9][a-z0-9-]{0,62}") {
            let parsed = TenantId::parse(&id).unwrap();
            let json = serde_json::to_string(&parsed).unwrap();
            let back: TenantId = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, parsed);
        }
    }
}

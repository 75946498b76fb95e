//! Principals: every request acts as an admin or as one tenant. Today the caller names
//! it in `x-hodei-principal` (or the configured default applies); token authentication
//! will produce the same value without touching handlers.

use std::fmt;

use crate::gateway::GatewayError;
use hodei_domain::tenant::TenantId;

pub const PRINCIPAL_HEADER: &str = "x-hodei-principal";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Tenant(TenantId),
}

impl Principal {
    /// Parses `admin` or `tenant:<id>`.
    pub fn parse(raw: &str) -> Result<Self, GatewayError> {
        if raw == "admin" {
            return Ok(Principal::Admin);
        }
        let Some(id) = raw.strip_prefix("tenant:") else {
            return Err(GatewayError::invalid(
                PRINCIPAL_HEADER,
                format!("must be `admin` or `tenant:<tenant id>`, got `{raw}`"),
            ));
        };
        TenantId::parse(id).map(Principal::Tenant).map_err(|_| {
            GatewayError::invalid(PRINCIPAL_HEADER, format!("`{id}` is not a valid tenant id"))
        })
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }

    /// Whether this principal may see or act on `tenant`'s own resources.
    pub fn may_access(&self, tenant: &TenantId) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Tenant(own) => own == tenant,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Admin => formatter.write_str("admin"),
            Principal::Tenant(id) => write!(formatter, "tenant:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_admin_and_tenants() {
        assert_eq!(Principal::parse("admin").unwrap(), Principal::Admin);
        let tenant = Principal::parse("tenant:acme").unwrap();
        assert!(tenant.may_access(&TenantId::parse("acme").unwrap()));
        assert!(!tenant.may_access(&TenantId::parse("other").unwrap()));
        assert_eq!(tenant.to_string(), "tenant:acme");
    }

    #[test]
    fn refuses_anything_else_naming_the_header() {
        for raw in ["root", "tenant:", "tenant:Bad", ""] {
            let error = Principal::parse(raw).unwrap_err();
            assert_eq!(error.field.as_deref(), Some(PRINCIPAL_HEADER), "{raw}");
        }
    }
}

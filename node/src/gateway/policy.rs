//! The authorization policy: one function decides whether a caller may run an operation
//! and whether it may touch one tenant's resources. Every operation declares what it
//! needs ([`crate::gateway::Operation::ACCESS`]); the gateway asks [`authorize`] before
//! the operation runs, and the handlers ask it again for each tenant whose resources the
//! operation reaches once they know it (a job's owner, say).

use crate::gateway::{GatewayError, Principal, RequestContext};
use hodei_domain::DomainError;
use hodei_domain::access::Scope;
use hodei_domain::tenant::TenantId;

/// What an operation needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The cluster's operators: workers, pools' settings, the cluster, observability,
    /// tenants' quotas and lifecycle.
    Admin,
    /// A tenant holding this scope, on its own resources only (an admin on any).
    Tenant(Scope),
}

/// What is asked: an operation as a whole, or one tenant's resources within it.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    Operation {
        name: &'a str,
        access: Access,
    },
    /// `what` reaches `owner`'s resources (`what` names the operation in the refusal).
    TenantResource {
        owner: &'a TenantId,
        what: &'a str,
    },
}

/// The policy. Admins may do anything; a tenant may run an operation open to tenants when
/// its token holds the operation's scope, and reach no tenant's resources but its own.
pub fn authorize(context: &RequestContext, request: Request<'_>) -> Result<(), GatewayError> {
    let Principal::Tenant(own) = &context.principal else {
        return Ok(());
    };
    match request {
        Request::Operation {
            name,
            access: Access::Admin,
        } => Err(deny(format!(
            "{name} requires an admin; this request acts as tenant:{own}"
        ))),
        Request::Operation {
            name,
            access: Access::Tenant(scope),
        } if !context.scopes.contains(&scope) => Err(deny(format!(
            "`{name}` needs the `{scope}` scope, which this token of tenant:{own} does not hold"
        ))),
        Request::Operation { .. } => Ok(()),
        Request::TenantResource { owner, what } if owner != own => Err(deny(format!(
            "tenant:{own} may not {what} of tenant `{owner}`"
        ))),
        Request::TenantResource { .. } => Ok(()),
    }
}

fn deny(reason: String) -> GatewayError {
    DomainError::Forbidden(reason).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::TraceId;
    use hodei_domain::access::Scopes;

    fn tenant(id: &str, scopes: &[Scope]) -> RequestContext {
        RequestContext::new(
            Principal::Tenant(TenantId::parse(id).unwrap()),
            TraceId::generate(),
        )
        .with_scopes(scopes.iter().copied().collect::<Scopes>())
    }

    #[test]
    fn admins_may_do_anything() {
        let admin = RequestContext::new(Principal::Admin, TraceId::generate());
        let other = TenantId::parse("other").unwrap();
        for request in [
            Request::Operation {
                name: "create_tenant",
                access: Access::Admin,
            },
            Request::Operation {
                name: "submit_job",
                access: Access::Tenant(Scope::Submit),
            },
            Request::TenantResource {
                owner: &other,
                what: "read the jobs",
            },
        ] {
            assert!(authorize(&admin, request).is_ok());
        }
    }

    #[test]
    fn a_tenant_needs_the_scope_and_its_own_resources() {
        let reader = tenant("acme", &[Scope::Read]);
        let admin_only = Request::Operation {
            name: "create_tenant",
            access: Access::Admin,
        };
        let error = authorize(&reader, admin_only).unwrap_err();
        assert_eq!(error.code, crate::gateway::ErrorCode::Forbidden);
        assert!(
            error.detail.contains("requires an admin"),
            "{}",
            error.detail
        );
        let submit = Request::Operation {
            name: "submit_job",
            access: Access::Tenant(Scope::Submit),
        };
        let error = authorize(&reader, submit).unwrap_err();
        assert!(error.detail.contains("`submit` scope"), "{}", error.detail);
        assert!(authorize(&tenant("acme", &[Scope::Submit]), submit).is_ok());
        let own = TenantId::parse("acme").unwrap();
        let other = TenantId::parse("other").unwrap();
        let what = "read the jobs";
        assert!(authorize(&reader, Request::TenantResource { owner: &own, what }).is_ok());
        let error = authorize(
            &reader,
            Request::TenantResource {
                owner: &other,
                what,
            },
        )
        .unwrap_err();
        assert!(error.detail.contains("tenant `other`"), "{}", error.detail);
    }
}

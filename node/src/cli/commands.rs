//! Which CLI command runs each REST operation. A test holds this map against the OpenAPI
//! document (every operation has a command) and against the CLI itself (every command
//! named here exists).

/// (HTTP method, path template, the `hodei` command that calls it).
pub const OPERATIONS: &[(&str, &str, &str)] = &[
    ("get", "/api/v1/health", "health"),
    ("get", "/api/v1/audit", "audit"),
    ("post", "/api/v1/tenants/{id}/tokens", "token create"),
    ("get", "/api/v1/tenants/{id}/tokens", "token list"),
    (
        "delete",
        "/api/v1/tenants/{id}/tokens/{token_id}",
        "token revoke",
    ),
    ("delete", "/api/v1/tokens/{token_id}", "token delete"),
    (
        "post",
        "/api/v1/pools/{id}/join-tokens",
        "join-token create",
    ),
    ("get", "/api/v1/pools/{id}/join-tokens", "join-token list"),
    (
        "delete",
        "/api/v1/pools/{id}/join-tokens/{token_id}",
        "join-token revoke",
    ),
    ("get", "/api/v1/cluster/status", "cluster status"),
    ("get", "/api/v1/cluster/digests", "cluster digests"),
    ("post", "/api/v1/cluster/init", "cluster init"),
    ("post", "/api/v1/cluster/members", "cluster join"),
    (
        "delete",
        "/api/v1/cluster/members/{node_id}",
        "cluster leave",
    ),
    (
        "post",
        "/api/v1/cluster/transfer-leader",
        "cluster transfer-leader",
    ),
    ("post", "/api/v1/tenants", "tenant create"),
    ("get", "/api/v1/tenants", "tenant list"),
    ("get", "/api/v1/tenants/{id}", "tenant get"),
    ("patch", "/api/v1/tenants/{id}", "tenant update"),
    ("delete", "/api/v1/tenants/{id}", "tenant delete"),
    ("get", "/api/v1/tenants/{id}/quotas", "quota get"),
    ("put", "/api/v1/tenants/{id}/quotas", "quota set"),
    ("get", "/api/v1/tenants/{id}/usage", "quota usage"),
    ("post", "/api/v1/quotas/enforce", "quota enforce"),
    ("get", "/api/v1/quotas/violations", "quota violations"),
    ("post", "/api/v1/tenants/{id}/burst", "burst request"),
    ("get", "/api/v1/tenants/{id}/burst", "burst list"),
    ("delete", "/api/v1/tenants/{id}/burst", "burst end"),
    (
        "post",
        "/api/v1/tenants/{id}/burst/{session}/approve",
        "burst approve",
    ),
    ("post", "/api/v1/jobs", "job submit"),
    ("post", "/api/v1/jobs/batch", "job submit"),
    ("get", "/api/v1/jobs", "job list"),
    ("get", "/api/v1/jobs/{id}", "job get"),
    ("post", "/api/v1/jobs/{id}/cancel", "job cancel"),
    ("get", "/api/v1/jobs/{id}/logs", "job logs"),
    ("get", "/api/v1/jobs/{id}/position", "job position"),
    ("get", "/api/v1/jobs/{id}/sla", "job sla"),
    ("get", "/api/v1/sla/summary", "sla summary"),
    ("get", "/api/v1/queues", "queue list"),
    ("post", "/api/v1/queues", "queue create"),
    ("get", "/api/v1/queues/{id}", "queue get"),
    ("patch", "/api/v1/queues/{id}", "queue update"),
    ("delete", "/api/v1/queues/{id}", "queue delete"),
    ("get", "/api/v1/queues/status", "queue status"),
    ("get", "/api/v1/queues/{id}/status", "queue status"),
    ("get", "/api/v1/queues/{id}/fair-share", "queue fair-share"),
    ("get", "/api/v1/workers", "worker list"),
    ("get", "/api/v1/pools", "pool list"),
    ("post", "/api/v1/pools", "pool create"),
    ("get", "/api/v1/pools/{id}", "pool get"),
    ("patch", "/api/v1/pools/{id}", "pool update"),
    ("delete", "/api/v1/pools/{id}", "pool delete"),
    ("get", "/api/v1/pools/{id}/lifecycle", "pool lifecycle"),
    ("post", "/api/v1/pools/{id}/lifecycle", "pool lifecycle"),
    ("get", "/api/v1/pools/{id}/metrics", "pool metrics"),
    ("get", "/api/v1/pools/{id}/workers", "pool workers"),
    ("get", "/api/v1/pools/{id}/static", "pool static"),
    ("put", "/api/v1/pools/{id}/static", "pool static"),
    ("get", "/api/v1/pools/{id}/dynamic", "pool dynamic"),
    ("put", "/api/v1/pools/{id}/dynamic", "pool resize"),
    ("get", "/api/v1/pools/{id}/scaling", "pool scaling show"),
    ("put", "/api/v1/pools/{id}/scaling", "pool scaling enable"),
    (
        "get",
        "/api/v1/pools/{id}/scaling/policies",
        "pool scaling policy list",
    ),
    (
        "post",
        "/api/v1/pools/{id}/scaling/policies",
        "pool scaling policy set",
    ),
    (
        "get",
        "/api/v1/pools/{id}/scaling/policies/{policy_id}",
        "pool scaling policy get",
    ),
    (
        "put",
        "/api/v1/pools/{id}/scaling/policies/{policy_id}",
        "pool scaling policy set",
    ),
    (
        "delete",
        "/api/v1/pools/{id}/scaling/policies/{policy_id}",
        "pool scaling policy delete",
    ),
    (
        "get",
        "/api/v1/pools/{id}/scaling/triggers",
        "pool scaling trigger list",
    ),
    (
        "post",
        "/api/v1/pools/{id}/scaling/triggers",
        "pool scaling trigger set",
    ),
    (
        "get",
        "/api/v1/pools/{id}/scaling/triggers/{trigger_id}",
        "pool scaling trigger get",
    ),
    (
        "put",
        "/api/v1/pools/{id}/scaling/triggers/{trigger_id}",
        "pool scaling trigger set",
    ),
    (
        "delete",
        "/api/v1/pools/{id}/scaling/triggers/{trigger_id}",
        "pool scaling trigger delete",
    ),
    (
        "post",
        "/api/v1/pools/{id}/scaling/triggers/{trigger_id}/fire",
        "pool scaling trigger fire",
    ),
    (
        "get",
        "/api/v1/pools/{id}/scaling/cooldown",
        "pool scaling cooldown",
    ),
    (
        "put",
        "/api/v1/pools/{id}/scaling/cooldown",
        "pool scaling cooldown",
    ),
    (
        "get",
        "/api/v1/pools/{id}/scaling/history",
        "pool scaling history",
    ),
    (
        "post",
        "/api/v1/pools/{id}/scaling/evaluate",
        "pool scaling evaluate",
    ),
    ("get", "/api/v1/pools/{id}/pricing", "pool pricing"),
    ("get", "/api/v1/cost-reports", "cost report"),
    ("post", "/api/v1/cost-reports", "cost definition create"),
    (
        "get",
        "/api/v1/cost-reports/definitions",
        "cost definition list",
    ),
    ("get", "/api/v1/cost-reports/{id}", "cost definition run"),
    (
        "delete",
        "/api/v1/cost-reports/{id}",
        "cost definition delete",
    ),
    (
        "get",
        "/api/v1/cost-optimization/breakdown",
        "cost breakdown",
    ),
    (
        "get",
        "/api/v1/cost-optimization/recommendations",
        "cost recommendations",
    ),
    (
        "get",
        "/api/v1/observability/config",
        "observability config",
    ),
    (
        "get",
        "/api/v1/observability/dashboards",
        "observability dashboards",
    ),
    (
        "get",
        "/api/v1/observability/dashboards/{uid}",
        "observability dashboards",
    ),
    (
        "get",
        "/api/v1/observability/alerts",
        "observability alerts",
    ),
    (
        "get",
        "/api/v1/observability/health",
        "observability health",
    ),
    ("get", "/api/v1/metrics/historical", "observability history"),
    ("put", "/api/v1/pools/{id}/pricing", "pool pricing"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use clap::CommandFactory;

    use super::OPERATIONS;
    use crate::cli::Cli;

    #[test]
    fn every_rest_operation_has_a_cli_command_and_every_mapped_command_exists() {
        let document = crate::api::rest::api_document();
        let mut operations = BTreeSet::new();
        for (path, item) in &document.paths.paths {
            let methods = [
                ("get", item.get.is_some()),
                ("post", item.post.is_some()),
                ("put", item.put.is_some()),
                ("patch", item.patch.is_some()),
                ("delete", item.delete.is_some()),
            ];
            for (method, present) in methods {
                if present {
                    operations.insert((method.to_string(), path.clone()));
                }
            }
        }
        let mapped: BTreeSet<(String, String)> = OPERATIONS
            .iter()
            .map(|(method, path, _)| (method.to_string(), path.to_string()))
            .collect();
        let missing: Vec<_> = operations.difference(&mapped).collect();
        assert!(
            missing.is_empty(),
            "REST operations without a CLI command: {missing:?}"
        );
        let stale: Vec<_> = mapped.difference(&operations).collect();
        assert!(
            stale.is_empty(),
            "mapped operations the API does not have: {stale:?}"
        );
        let cli = Cli::command();
        for (_, path, command) in OPERATIONS {
            let mut found = &cli;
            for word in command.split(' ') {
                found = found
                    .find_subcommand(word)
                    .unwrap_or_else(|| panic!("`hodei {command}` (for {path}) does not exist"));
            }
        }
    }

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_flag_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "hodei", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }
}

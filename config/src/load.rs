//! Loading: defaults < file < `HODEI_*` variables < flags, then validation.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized};
use figment::value::Value;
use serde_saphyr::figment::Yaml;

use crate::env::key_for;
use crate::schema::Config;
use crate::validate::{ValidationError, validate};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid configuration:\n{}", render(.0))]
    Invalid(Vec<ValidationError>),
}

impl ConfigError {
    /// Every problem found, one per line, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::File { .. } => vec![self.to_string()],
            ConfigError::Invalid(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }
}

fn render(errors: &[ValidationError]) -> String {
    errors
        .iter()
        .map(|error| format!("  {error}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Keys of the specification whose feature this version does not have yet, with why. They
/// are not part of [`Config`]: a file, variable or flag that sets one is refused, naming
/// it, rather than accepted as a switch that does nothing.
pub const NOT_BUILT: &[(&str, &str)] = &[];

/// The keys of [`NOT_BUILT`] that `figment` sets, each with its rule and origin.
fn not_built(
    figment: &Figment,
    file: Option<&Path>,
    sources: &[(String, String)],
) -> Vec<ValidationError> {
    let mut found = Vec::new();
    for (key, why) in NOT_BUILT {
        let set: Vec<String> = match key.split_once("[].") {
            Some((list, field)) => match figment.find_value(list) {
                Ok(Value::Array(_, items)) => items
                    .iter()
                    .enumerate()
                    .filter(|(_, item)| {
                        matches!(item, Value::Dict(_, entries) if entries.contains_key(field))
                    })
                    .map(|(index, _)| format!("{list}[{index}].{field}"))
                    .collect(),
                _ => Vec::new(),
            },
            None => figment
                .find_value(key)
                .map(|_| vec![key.to_string()])
                .unwrap_or_default(),
        };
        for key in set {
            let origin = origin_of(&key, file, sources)
                .map(|origin| format!(" (set by {origin})"))
                .unwrap_or_default();
            found.push(ValidationError::new(
                &key,
                format!("not in this version: {why}; remove it{origin}"),
            ));
        }
    }
    found
}

fn origin_of(key: &str, file: Option<&Path>, sources: &[(String, String)]) -> Option<String> {
    sources
        .iter()
        .rev()
        .find(|(source_key, _)| source_key == key)
        .map(|(_, origin)| origin.clone())
        .or_else(|| file.map(|path| format!("file {}", path.display())))
}

/// Builds a [`Config`] from its layers. The environment is passed in rather than read
/// here, so that precedence is testable without touching the process environment.
#[derive(Debug, Default, Clone)]
pub struct ConfigLoader {
    file: Option<PathBuf>,
    env: Vec<(String, String)>,
    flags: Vec<(String, String)>,
}

impl ConfigLoader {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// The process environment; only variables of [`crate::ENV_VARIABLES`] are used.
    pub fn env_vars(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = vars.into_iter().collect();
        self
    }

    /// A command-line override of one key (`server.port`, `8081`); the highest layer.
    pub fn flag(mut self, key: &str, value: impl Into<String>) -> Self {
        self.flags.push((key.to_string(), value.into()));
        self
    }

    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &self.file {
            if !path.is_file() {
                return Err(ConfigError::File {
                    path: path.clone(),
                    message: "no such file".to_string(),
                });
            }
            figment = figment.merge(Yaml::file_exact(path));
        }
        // (key, what set it) for every override, to name the culprit of a bad value.
        let mut sources: Vec<(String, String)> = Vec::new();
        for (name, raw_value) in &self.env {
            let Some(key) = key_for(name) else { continue };
            figment = figment.merge(Serialized::default(key, parse_value(raw_value)));
            sources.push((key.to_string(), format!("environment variable {name}")));
        }
        for (key, raw_value) in &self.flags {
            figment = figment.merge(Serialized::default(key, parse_value(raw_value)));
            sources.push((key.clone(), "command-line flag".to_string()));
        }
        let refused = not_built(&figment, self.file.as_deref(), &sources);
        if !refused.is_empty() {
            return Err(ConfigError::Invalid(refused));
        }
        let config = extract_all(&figment, self.file.as_deref(), &sources)?;
        let problems = validate(&config);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

fn parse_value(raw_value: &str) -> Value {
    raw_value
        .parse::<Value>()
        .unwrap_or_else(|never| match never {})
}

/// Extracts the configuration; when keys have values of the wrong type, names every one
/// of them, not only the first: each failing key is set aside and the rest extracted again
/// (at most 64 rounds), and what then extracts is validated too, so that one run of
/// `hodei config check` lists every problem.
fn extract_all(
    figment: &Figment,
    file: Option<&Path>,
    sources: &[(String, String)],
) -> Result<Config, ConfigError> {
    let mut error = match figment.extract::<Config>() {
        Ok(config) => return Ok(config),
        Err(error) => error,
    };
    let Ok(mut tree) = figment.extract::<Value>() else {
        return Err(ConfigError::Invalid(
            error
                .into_iter()
                .map(|single| problem(&single, file, sources))
                .collect(),
        ));
    };
    let mut problems = Vec::new();
    for _ in 0..64 {
        let mut set_aside = false;
        for single in error {
            problems.push(problem(&single, file, sources));
            set_aside |= remove_path(&mut tree, &key_path(&single));
        }
        if !set_aside {
            break;
        }
        match Figment::from(Serialized::defaults(&tree)).extract::<Config>() {
            Ok(rest) => {
                let named: Vec<String> = problems.iter().map(|found| found.key.clone()).collect();
                problems.extend(
                    validate(&rest)
                        .into_iter()
                        .filter(|found| !named.contains(&found.key)),
                );
                break;
            }
            Err(next) => error = next,
        }
    }
    Err(ConfigError::Invalid(problems))
}

/// Removes the value at `path` (keys of maps, indexes of lists); whether it was there.
fn remove_path(tree: &mut Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut node = tree;
    for step in parents {
        node = match node {
            Value::Dict(_, entries) => match entries.get_mut(step) {
                Some(next) => next,
                None => return false,
            },
            Value::Array(_, items) => {
                match step.parse::<usize>().ok().and_then(|at| items.get_mut(at)) {
                    Some(next) => next,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    match node {
        Value::Dict(_, entries) => entries.remove(last).is_some(),
        _ => false,
    }
}

/// The path of the key an extraction error is about (an unknown key's own name
/// included).
fn key_path(single: &figment::Error) -> Vec<String> {
    let mut path = single.path.clone();
    if let figment::error::Kind::UnknownField(field, _) = &single.kind
        && path.last() != Some(field)
    {
        path.push(field.clone());
    }
    path
}

/// One extraction error as a problem naming its key, its rule and what set it.
fn problem(
    single: &figment::Error,
    file: Option<&Path>,
    sources: &[(String, String)],
) -> ValidationError {
    let key = key_path(single).join(".");
    let origin = origin_of(&key, file, sources);
    let mut rule = plain_rule(&single.kind);
    if let Some(origin) = origin {
        rule = format!("{rule} (set by {origin})");
    }
    ValidationError::new(if key.is_empty() { "<root>" } else { &key }, rule)
}

/// The rule in the user's words: `expected a whole number >= 0`, not `expected u64`; a
/// long value is not echoed back whole.
fn plain_rule(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    let expected = |raw: &str| match raw {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number >= 0".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a boolean" | "bool" => "true or false".to_string(),
        other => other.to_string(),
    };
    let shown = |actual: &figment::error::Actual| {
        let text = actual.to_string();
        if text.chars().count() > 40 {
            format!("{}...", text.chars().take(40).collect::<String>())
        } else {
            text
        }
    };
    match kind {
        Kind::InvalidType(actual, wanted) | Kind::InvalidValue(actual, wanted) => {
            format!("expected {}, found {}", expected(wanted), shown(actual))
        }
        Kind::UnknownField(field, known) => format!(
            "unknown key `{field}`; this section takes: {}",
            known.join(", ")
        ),
        Kind::UnknownVariant(value, known) => {
            format!("`{value}` is not one of: {}", known.join(", "))
        }
        other => other.to_string(),
    }
}

/// The effective configuration as YAML, with every secret replaced by `<redacted>`.
pub fn redacted_yaml(config: &Config) -> String {
    let mut printable = config.clone();
    if printable.server.admin_token.is_some() {
        printable.server.admin_token = Some("<redacted>".to_string());
    }
    if printable.cluster.secret.is_some() {
        printable.cluster.secret = Some("<redacted>".to_string());
    }
    serde_saphyr::to_string(&printable)
        .unwrap_or_else(|error| format!("# could not render the configuration: {error}\n"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::schema::LogFormat;

    fn yaml_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_specifications() {
        let config = ConfigLoader::new().load().unwrap();
        assert_eq!(config.server.port, 8080);
        assert_eq!(config.server.grpc_port, 9090);
        assert_eq!(config.metrics.prometheus.port, 9091);
        assert_eq!(config.metrics.prometheus.path, "/metrics");
        assert_eq!(config.multi_tenancy.default_tenant_quota.cpu_m, 4000);
        assert_eq!(config.multi_tenancy.default_tenant_quota.memory_mb, 8192);
        assert_eq!(
            config
                .multi_tenancy
                .default_tenant_quota
                .max_concurrent_jobs,
            10
        );
        assert_eq!(config.burst_capacity.max_overage_percentage, 150);
        assert_eq!(config.burst_capacity.burst_duration_minutes, 60);
        assert_eq!(config.resource_pools.pools[0].id, "pool-default");
        assert_eq!(config.resource_pools.pools[0].min_size, 2);
        assert_eq!(config.resource_pools.pools[0].max_size, 20);
    }

    #[test]
    fn file_overrides_defaults_and_keeps_the_rest() {
        let file =
            yaml_file("server:\n  port: 7000\nburst_capacity:\n  max_overage_percentage: 200\n");
        let config = ConfigLoader::new().file(file.path()).load().unwrap();
        assert_eq!(config.server.port, 7000);
        assert_eq!(config.server.grpc_port, 9090);
        assert_eq!(config.burst_capacity.max_overage_percentage, 200);
        assert_eq!(config.burst_capacity.burst_duration_minutes, 60);
    }

    #[test]
    fn env_overrides_file_and_flag_overrides_env() {
        let file = yaml_file(
            "metrics:\n  prometheus:\n    port: 9500\nmulti_tenancy:\n  default_tenant_quota:\n    cpu_m: 1000\n",
        );
        let loader = ConfigLoader::new().file(file.path()).env_vars(env(&[
            ("HODEI_PROMETHEUS_PORT", "9600"),
            ("HODEI_DEFAULT_TENANT_QUOTA_CPU", "2000"),
            ("HODEI_BURST_CAPACITY_ENABLED", "false"),
            ("HODEI_LOG_FORMAT", "json"),
            ("PATH", "/usr/bin"),
        ]));
        let from_env = loader.load().unwrap();
        assert_eq!(from_env.metrics.prometheus.port, 9600);
        assert_eq!(from_env.multi_tenancy.default_tenant_quota.cpu_m, 2000);
        assert!(!from_env.burst_capacity.enabled);
        assert_eq!(from_env.server.log_format, LogFormat::Json);

        let from_flag = loader
            .clone()
            .flag("metrics.prometheus.port", "9700")
            .load()
            .unwrap();
        assert_eq!(from_flag.metrics.prometheus.port, 9700);
        assert_eq!(from_flag.multi_tenancy.default_tenant_quota.cpu_m, 2000);
    }

    #[test]
    fn every_specification_variable_reaches_its_key() {
        let config = ConfigLoader::new()
            .env_vars(env(&[
                ("HODEI_RESOURCE_POOLS_ENABLED", "false"),
                ("HODEI_RESOURCE_POOL_TYPE", "dynamic"),
                ("HODEI_MULTI_TENANCY_ENABLED", "false"),
                ("HODEI_DEFAULT_TENANT_QUOTA_MEMORY", "4096"),
                ("HODEI_BURST_MAX_OVERAGE", "175"),
                ("HODEI_BURST_DURATION_MINUTES", "30"),
                ("HODEI_COST_TRACKING_ENABLED", "false"),
                ("HODEI_PROMETHEUS_ENABLED", "false"),
                ("HODEI_GRAFANA_ENABLED", "false"),
                ("HODEI_ALERTING_ENABLED", "false"),
            ]))
            .load()
            .unwrap();
        assert!(!config.resource_pools.enabled);
        assert_eq!(
            config.resource_pools.default_pool_type,
            crate::PoolType::Dynamic
        );
        assert!(!config.multi_tenancy.enabled);
        assert_eq!(config.multi_tenancy.default_tenant_quota.memory_mb, 4096);
        assert_eq!(config.burst_capacity.max_overage_percentage, 175);
        assert_eq!(config.burst_capacity.burst_duration_minutes, 30);
        assert!(!config.cost_tracking.enabled);
        assert!(!config.metrics.prometheus.enabled);
        assert!(!config.observability.grafana.enabled);
        assert!(!config.observability.alerting.enabled);
    }

    #[test]
    fn every_key_of_the_wrong_type_is_listed_with_the_rules_broken_elsewhere() {
        // Quoted: a 300-character string is echoed back in the rule unless it is cut.
        let long = format!("\"{}\"", "9".repeat(300));
        let file = yaml_file(&format!(
            "server:\n  port: eighty\n  log_format: xml\n  grpc_prot: 1\nworkers:\n  missed_heartbeats: {long}\nburst_capacity:\n  max_overage_percentage: 50\n"
        ));
        let problems = ConfigLoader::new()
            .file(file.path())
            .load()
            .unwrap_err()
            .problems();
        let keys: Vec<&str> = problems
            .iter()
            .map(|problem| problem.split(':').next().unwrap_or_default())
            .collect();
        for key in [
            "server.port",
            "server.log_format",
            "server.grpc_prot",
            "workers.missed_heartbeats",
            "burst_capacity.max_overage_percentage",
        ] {
            assert!(keys.contains(&key), "{key} missing from {problems:?}");
        }
        let port = problems
            .iter()
            .find(|problem| problem.starts_with("server.port"))
            .unwrap();
        assert!(port.contains("a whole number >= 0"), "{port}");
        assert!(
            problems.iter().all(|problem| problem.len() < 300),
            "a huge value is not echoed back: {problems:?}"
        );
    }

    #[test]
    fn validation_reports_every_bad_key_with_its_rule() {
        let file = yaml_file(
            "burst_capacity:\n  max_overage_percentage: 50\nserver:\n  port: 9090\n  grpc_port: 9090\n",
        );
        let error = ConfigLoader::new().file(file.path()).load().unwrap_err();
        let problems = error.problems();
        assert!(
            problems.contains(
                &"burst_capacity.max_overage_percentage: must be >= 100, got 50".to_string()
            ),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(
                |problem| problem.starts_with("server.grpc_port: must differ from server.port")
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn rate_limits_are_positive_with_a_burst_that_can_hold_a_tenth_of_a_second() {
        let file = yaml_file("server:\n  rate_limit:\n    requests_per_second: 0\n");
        let problems = ConfigLoader::new()
            .file(file.path())
            .load()
            .unwrap_err()
            .problems();
        assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with("server.rate_limit.requests_per_second")),
            "{problems:?}"
        );
        let file =
            yaml_file("server:\n  rate_limit:\n    requests_per_second: 1000\n    burst: 50\n");
        let problems = ConfigLoader::new()
            .file(file.path())
            .load()
            .unwrap_err()
            .problems();
        assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with("server.rate_limit.burst")),
            "{problems:?}"
        );
        let config = ConfigLoader::new()
            .env_vars(env(&[
                ("HODEI_RATE_LIMIT_REQUESTS_PER_SECOND", "50"),
                ("HODEI_RATE_LIMIT_ADMIN", "true"),
            ]))
            .load()
            .unwrap();
        assert_eq!(config.server.rate_limit.requests_per_second, 50);
        assert!(config.server.rate_limit.limit_admin);
    }

    #[test]
    fn a_worker_may_miss_one_beat_before_its_lease_ends() {
        for (missed, refused) in [(1, true), (2, true), (3, false), (5, false)] {
            let file = yaml_file(&format!("workers:\n  missed_heartbeats: {missed}\n"));
            let outcome = ConfigLoader::new().file(file.path()).load();
            match outcome {
                Ok(config) => {
                    assert!(!refused, "{missed} accepted");
                    assert_eq!(config.workers.missed_heartbeats, missed);
                }
                Err(error) => {
                    assert!(refused, "{missed} refused: {error}");
                    let problems = error.problems();
                    assert!(
                        problems.iter().any(|problem| problem
                            .starts_with("workers.missed_heartbeats: must be >= 3")
                            && problem.contains("one beat fewer")),
                        "{problems:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn server_limits_are_bounded_and_the_request_timeout_outlasts_the_leader_wait() {
        let problems = |yaml: &str| -> Vec<String> {
            let file = yaml_file(yaml);
            ConfigLoader::new()
                .file(file.path())
                .load()
                .unwrap_err()
                .problems()
        };
        let found = problems(
            "server:\n  leader_wait_ms: 5000\n  limits:\n    request_timeout_ms: 5000\n    max_connections: 0\n    max_in_flight: 0\n    header_read_timeout_ms: 10\n",
        );
        for key in [
            "server.limits.request_timeout_ms: must be more than server.leader_wait_ms (5000)",
            "server.limits.max_connections",
            "server.limits.max_in_flight",
            "server.limits.header_read_timeout_ms",
        ] {
            assert!(
                found.iter().any(|problem| problem.starts_with(key)),
                "{key}: {found:?}"
            );
        }
        let config = ConfigLoader::new()
            .env_vars(env(&[
                ("HODEI_MAX_CONNECTIONS", "64"),
                ("HODEI_MAX_IN_FLIGHT", "32"),
                ("HODEI_REQUEST_TIMEOUT_MS", "9000"),
                ("HODEI_HEADER_READ_TIMEOUT_MS", "2000"),
            ]))
            .load()
            .unwrap();
        let limits = &config.server.limits;
        assert_eq!(
            (
                limits.max_connections,
                limits.max_in_flight,
                limits.request_timeout_ms,
                limits.header_read_timeout_ms
            ),
            (64, 32, 9000, 2000)
        );
    }

    #[test]
    fn observability_urls_must_be_http_base_addresses() {
        let file = yaml_file(
            "observability:\n  prometheus_url: \"localhost:9090\"\n  alertmanager_url: \"http://127.0.0.1:9093/?x=1\"\n",
        );
        let problems = ConfigLoader::new()
            .file(file.path())
            .load()
            .unwrap_err()
            .problems();
        for key in ["prometheus_url", "alertmanager_url"] {
            assert!(
                problems.iter().any(|problem| problem.starts_with(&format!(
                    "observability.{key}: must be an http:// or https:// address"
                ))),
                "{problems:?}"
            );
        }
        let file = yaml_file(
            "observability:\n  alerting:\n    enabled: false\n  alertmanager_url: http://127.0.0.1:9093\n",
        );
        let problems = ConfigLoader::new()
            .file(file.path())
            .load()
            .unwrap_err()
            .problems();
        assert!(
            problems.iter().any(|problem| problem.starts_with(
                "observability.alertmanager_url: is set while observability.alerting.enabled is false"
            )),
            "{problems:?}"
        );
        let file =
            yaml_file("observability:\n  alertmanager_url: \"https://alerts.example.com/am\"\n");
        let config = ConfigLoader::new()
            .file(file.path())
            .env_vars(env(&[("HODEI_PROMETHEUS_URL", "http://127.0.0.1:9090")]))
            .load()
            .unwrap();
        assert_eq!(
            config.observability.prometheus_url.as_deref(),
            Some("http://127.0.0.1:9090")
        );
        assert_eq!(
            config.observability.alertmanager_url.as_deref(),
            Some("https://alerts.example.com/am")
        );
    }

    #[test]
    fn observability_folders_set_while_their_switch_is_off_are_refused() {
        let file = yaml_file(
            "observability:\n  grafana:\n    enabled: false\n    dashboards_dir: /srv/dashboards\n  alerting:\n    prometheus_alerts_dir: \"\"\n",
        );
        let problems = ConfigLoader::new()
            .file(file.path())
            .load()
            .unwrap_err()
            .problems();
        assert!(
            problems.iter().any(|problem| problem.starts_with("observability.grafana.dashboards_dir: is set while observability.grafana.enabled is false")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|problem| problem.starts_with(
                "observability.alerting.prometheus_alerts_dir: must be a folder's path"
            )),
            "{problems:?}"
        );
    }

    #[test]
    fn keys_whose_feature_is_not_built_are_refused_wherever_they_are_set() {
        let file = yaml_file(
            "observability:\n  grafana:\n    dashboards_dir: /srv/dashboards\n  alerting:\n    prometheus_alerts_dir: /srv/alerts\n",
        );
        // Every feature is built now: nothing is refused, and the dashboards' and alert
        // rules' folders load from the file (and the environment).
        assert!(NOT_BUILT.is_empty());
        let config = ConfigLoader::new()
            .file(file.path())
            .env_vars(env(&[("HODEI_PROMETHEUS_ALERTS_DIR", "/srv/rules")]))
            .load()
            .unwrap();
        assert_eq!(
            config.observability.grafana.dashboards_dir.as_deref(),
            Some("/srv/dashboards")
        );
        assert_eq!(
            config
                .observability
                .alerting
                .prometheus_alerts_dir
                .as_deref(),
            Some("/srv/rules")
        );
        // The cost ledger is built: its retention loads from the specification's variable.
        let config = ConfigLoader::new()
            .env_vars(env(&[("HODEI_COST_RETENTION_DAYS", "30")]))
            .load()
            .unwrap();
        assert_eq!(config.cost_tracking.retention_days, 30);
        // Autoscaling is built: the specification's variable and the per-pool key load.
        let file = yaml_file(
            "resource_pools:\n  pools:\n    - id: pool-default\n    - id: b\n      auto_scaling_enabled: false\n",
        );
        let config = ConfigLoader::new()
            .file(file.path())
            .env_vars(env(&[("HODEI_AUTO_SCALING_ENABLED", "false")]))
            .load()
            .unwrap();
        assert!(!config.resource_pools.auto_scaling_enabled);
        let switches: Vec<bool> = config
            .resource_pools
            .pools
            .iter()
            .map(|pool| pool.auto_scaling_enabled)
            .collect();
        assert_eq!(switches, [true, false]);
    }

    #[test]
    fn unknown_key_is_named() {
        let file = yaml_file("server:\n  prot: 8080\n");
        let problems = ConfigLoader::new()
            .file(file.path())
            .load()
            .unwrap_err()
            .problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("prot"), "{problems:?}");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let problems = ConfigLoader::new()
            .env_vars(env(&[("HODEI_PROMETHEUS_PORT", "not-a-port")]))
            .load()
            .unwrap_err()
            .problems();
        assert!(
            problems[0].starts_with("metrics.prometheus.port:")
                && problems[0].contains("HODEI_PROMETHEUS_PORT"),
            "{problems:?}"
        );
    }

    #[test]
    fn peers_are_node_id_at_address() {
        let file = yaml_file(
            "cluster:\n  node_id: 1\n  peers: [\"2@127.0.0.1:9092\", \"127.0.0.1:9093\", \"1@h:1\"]\n",
        );
        let problems = ConfigLoader::new()
            .file(file.path())
            .load()
            .unwrap_err()
            .problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("cluster.peers[1]: expected <node id>@<host>:<port>"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("cluster.peers[2]: node id 1 appears twice"),
            "{problems:?}"
        );
        assert_eq!(
            crate::parse_peer("3@node-c:9090").unwrap(),
            (3, "node-c:9090".to_string())
        );
    }

    #[test]
    fn an_admin_token_is_refused_while_requests_are_not_authenticated() {
        let problems = ConfigLoader::new()
            .env_vars(env(&[("HODEI_ADMIN_TOKEN", "s3cret")]))
            .load()
            .unwrap_err()
            .problems();
        assert!(
            problems.iter().any(|problem| problem
                .starts_with("server.admin_token: is checked only with server.auth: token")),
            "{problems:?}"
        );
    }

    #[test]
    fn token_authentication_takes_a_long_admin_token_and_a_cluster_secret() {
        let problems = ConfigLoader::new()
            .env_vars(env(&[
                ("HODEI_AUTH", "token"),
                ("HODEI_ADMIN_TOKEN", "short"),
            ]))
            .load()
            .unwrap_err()
            .problems();
        for key in [
            "server.admin_token: must be at least 32",
            "cluster.secret: is required with server.auth: token",
        ] {
            assert!(
                problems.iter().any(|problem| problem.starts_with(key)),
                "{key}: {problems:?}"
            );
        }
        let config = ConfigLoader::new()
            .env_vars(env(&[
                ("HODEI_AUTH", "token"),
                ("HODEI_ADMIN_TOKEN", &"a".repeat(32)),
                ("HODEI_CLUSTER_SECRET", &"s".repeat(16)),
                ("HODEI_WORKER_RUN_AS", "nobody"),
            ]))
            .load()
            .unwrap();
        assert_eq!(config.server.auth, crate::AuthMode::Token);
        // Off loopback, tokens need TLS.
        let problems = ConfigLoader::new()
            .env_vars(env(&[
                ("HODEI_AUTH", "token"),
                ("HODEI_CLUSTER_SECRET", &"s".repeat(16)),
                ("HODEI_WORKER_RUN_AS", "nobody"),
                ("HODEI_SERVER_HOST", "0.0.0.0"),
            ]))
            .load()
            .unwrap_err()
            .problems();
        assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with("server.tls: is required")),
            "{problems:?}"
        );
    }

    #[test]
    fn tls_files_must_be_readable_pem() {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let plain = dir.path().join("key.txt");
        std::fs::write(&plain, "not pem").unwrap();
        let problems = ConfigLoader::new()
            .env_vars(env(&[
                ("HODEI_TLS_CERT", "/nonexistent/node.pem"),
                ("HODEI_TLS_KEY", plain.to_str().unwrap()),
                ("HODEI_TLS_CLIENT_CA", pem.to_str().unwrap()),
            ]))
            .load()
            .unwrap_err()
            .problems();
        assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with("server.tls.cert: cannot read")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with("server.tls.key: ")
                    && problem.contains("not a PEM")),
            "{problems:?}"
        );
        assert!(
            !problems
                .iter()
                .any(|problem| problem.starts_with("server.tls.client_ca")),
            "{problems:?}"
        );
    }

    #[test]
    fn no_authentication_is_refused_off_loopback_unless_insecure() {
        let off_loopback = [
            ("HODEI_SERVER_HOST", "0.0.0.0"),
            ("HODEI_CLUSTER_SECRET", "ssssssssssssssss"),
        ];
        let problems = ConfigLoader::new()
            .env_vars(env(&off_loopback))
            .load()
            .unwrap_err()
            .problems();
        assert!(
            problems
                .iter()
                .any(|problem| problem
                    .starts_with("server.auth: is `none` on a non-loopback address")),
            "{problems:?}"
        );
        let insecure = ConfigLoader::new()
            .env_vars(env(&off_loopback))
            .flag("server.insecure", "true")
            .load()
            .unwrap();
        assert!(insecure.server.insecure);
        let problems = ConfigLoader::new()
            .env_vars(env(&[("HODEI_AUTH", "token"), ("HODEI_INSECURE", "true")]))
            .load()
            .unwrap_err()
            .problems();
        assert!(
            problems
                .iter()
                .any(|problem| problem.starts_with("server.insecure: has no effect")),
            "{problems:?}"
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        let error = ConfigLoader::new()
            .file("/nonexistent/hodei.yaml")
            .load()
            .unwrap_err();
        assert!(error.to_string().contains("no such file"));
    }

    #[test]
    fn printed_config_redacts_secrets_and_reloads() {
        let config = ConfigLoader::new()
            .env_vars(env(&[("HODEI_CLUSTER_SECRET", "s3cret-of-sixteen-chars")]))
            .load()
            .unwrap();
        let printed = redacted_yaml(&config);
        assert!(!printed.contains("s3cret"));
        assert!(printed.contains("<redacted>"));
        // Without secrets, what is printed loads back as it was.
        let plain = ConfigLoader::new().load().unwrap();
        let file = yaml_file(&redacted_yaml(&plain));
        let reloaded = ConfigLoader::new().file(file.path()).load().unwrap();
        assert_eq!(reloaded, plain);
    }
}

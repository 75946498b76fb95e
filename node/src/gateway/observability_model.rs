//! The observability API (US-09.6.4): what this node has switched on and where, the
//! dashboards it ships, and the alert rules in effect.

use crate::gateway::policy::Access;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::gateway::Operation;

/// What is enabled on this node and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ObservabilityConfigView {
    /// Prometheus metrics: on, and at which port and path.
    pub metrics_enabled: bool,
    pub metrics_port: u16,
    pub metrics_path: String,
    pub grafana_enabled: bool,
    /// Where this node writes the dashboards at start (`observability.grafana.dashboards_dir`).
    pub dashboards_dir: Option<String>,
    pub alerting_enabled: bool,
    /// Where this node writes the alert rules at start.
    pub alerts_dir: Option<String>,
    pub dashboards: usize,
    pub alert_rules: usize,
    /// `observability.prometheus_url`: the Prometheus asked for scrape health and alerts.
    pub prometheus_url: Option<String>,
    /// `observability.alertmanager_url`: the Alertmanager asked for alerts and silences.
    pub alertmanager_url: Option<String>,
}

/// A shipped dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DashboardSummaryView {
    pub uid: String,
    pub title: String,
    pub panels: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DashboardListView {
    pub items: Vec<DashboardSummaryView>,
}

/// An alert rule in effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleView {
    pub name: String,
    pub group: String,
    /// warning | critical
    pub severity: String,
    pub expr: String,
    /// How long the condition must hold (Prometheus duration), if any.
    pub for_duration: Option<String>,
    pub summary: String,
    pub runbook: String,
}

/// The alert rules in effect, and what the configured Prometheus and Alertmanager say
/// of them now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleListView {
    /// The rules.
    pub items: Vec<AlertRuleView>,
    /// Hodei's alerts (names starting `Hodei`) pending or firing in Prometheus, and those
    /// Alertmanager holds (empty when neither URL is configured).
    pub active: Vec<ActiveAlertView>,
    /// Alertmanager's silences, active or yet to start (empty without
    /// `observability.alertmanager_url`).
    pub silences: Vec<SilenceView>,
    /// Each monitoring server asked, and whether it answered.
    pub sources: Vec<SourceStatusView>,
}

/// An alert as Prometheus or Alertmanager holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActiveAlertView {
    pub name: String,
    /// prometheus | alertmanager
    pub source: String,
    /// Prometheus: pending | firing. Alertmanager: active | suppressed | unprocessed.
    pub state: String,
    pub severity: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub summary: String,
    /// When it became active (RFC 3339, as the source gives it).
    pub since: String,
    /// Alertmanager: the silences keeping it quiet.
    pub silenced_by: Vec<String>,
    /// Alertmanager: the alerts inhibiting it.
    pub inhibited_by: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SilenceMatcherView {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    pub is_equal: bool,
}

/// A silence of Alertmanager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SilenceView {
    pub id: String,
    /// active | pending | expired
    pub state: String,
    pub matchers: Vec<SilenceMatcherView>,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

/// A monitoring server the node asked, and whether it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceStatusView {
    /// prometheus | alertmanager
    pub name: String,
    pub url: String,
    pub reachable: bool,
    pub error: Option<String>,
}

/// A node's metrics endpoint and how it has been scraped since the node started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MetricsEndpointView {
    pub node_id: u64,
    /// `metrics.prometheus.enabled`.
    pub enabled: bool,
    /// host:port it is bound to (absent when disabled): `metrics.prometheus.port` on
    /// `server.host`, which may be a wildcard such as 0.0.0.0.
    pub address: Option<String>,
    pub path: String,
    /// Scrapes answered, and refused (metrics restarting or unavailable).
    pub scrapes: u64,
    pub failed_scrapes: u64,
    pub last_scrape_ms: Option<u64>,
    pub last_scrape_duration_micros: Option<u64>,
    pub last_scrape_bytes: Option<u64>,
}

/// A member of the cluster and its metrics endpoint, as that member reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberMetricsView {
    pub node_id: u64,
    /// Its public gRPC address, where it was asked (absent until learnt).
    pub api_addr: Option<String>,
    pub reachable: bool,
    pub error: Option<String>,
    pub endpoint: Option<MetricsEndpointView>,
}

/// A scrape target as Prometheus reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScrapeTargetView {
    pub instance: String,
    pub job: String,
    /// up | down | unknown
    pub health: String,
    pub last_scrape: String,
    pub last_scrape_duration_s: f64,
    pub last_error: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PrometheusTargetsView {
    pub source: SourceStatusView,
    pub targets: Vec<ScrapeTargetView>,
}

/// Whether metrics flow: this node's endpoint, every member's, and Prometheus's scrapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObservabilityHealthView {
    pub node: MetricsEndpointView,
    /// Every member of the cluster (this node included), asked over gRPC.
    pub members: Vec<MemberMetricsView>,
    /// With `observability.prometheus_url`: every active scrape target.
    pub prometheus: Option<PrometheusTargetsView>,
}

#[derive(Debug)]
pub struct GetObservabilityHealth {
    /// Only this node's endpoint (what a node asks the others).
    pub local_only: bool,
}

impl Operation for GetObservabilityHealth {
    type Reply = ObservabilityHealthView;
    const NAME: &'static str = "observability_health";
    const ACCESS: Access = Access::Admin;
}

#[derive(Debug)]
pub struct GetObservabilityConfig;

impl Operation for GetObservabilityConfig {
    type Reply = ObservabilityConfigView;
    const NAME: &'static str = "observability_config";
    const ACCESS: Access = Access::Admin;
}

#[derive(Debug)]
pub struct ListDashboards;

impl Operation for ListDashboards {
    type Reply = DashboardListView;
    const NAME: &'static str = "list_dashboards";
    const ACCESS: Access = Access::Admin;
}

/// One dashboard's Grafana JSON.
#[derive(Debug)]
pub struct GetDashboard {
    pub uid: String,
}

impl Operation for GetDashboard {
    type Reply = serde_json::Value;
    const NAME: &'static str = "get_dashboard";
    const ACCESS: Access = Access::Admin;
}

#[derive(Debug)]
pub struct ListAlertRules;

impl Operation for ListAlertRules {
    type Reply = AlertRuleListView;
    const NAME: &'static str = "list_alert_rules";
    const ACCESS: Access = Access::Admin;
}

/// One series of the historical metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoricalSeriesView {
    pub labels: std::collections::BTreeMap<String, String>,
    /// `[time ms, value]`, each time a multiple of the step: the average of the samples in
    /// [time, time + step).
    pub points: Vec<(u64, f64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoricalMetricsView {
    pub metric: String,
    pub from_ms: u64,
    pub to_ms: u64,
    pub step_ms: u64,
    /// 10s | 1m | 1h: the stored resolution the points come from.
    pub resolution: String,
    pub series: Vec<HistoricalSeriesView>,
}

/// A metric's history on this node.
#[derive(Debug)]
pub struct GetHistoricalMetrics {
    pub metric: String,
    pub labels: Option<String>,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub step_s: Option<u64>,
}

impl Operation for GetHistoricalMetrics {
    type Reply = HistoricalMetricsView;
    const NAME: &'static str = "historical_metrics";
    const ACCESS: Access = Access::Admin;
}

/// The audit log: state-changing requests, of every member unless `local_only`.
#[derive(Debug)]
pub struct ListAudit {
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub principal: Option<String>,
    pub limit: Option<u32>,
    pub local_only: bool,
}

impl Operation for ListAudit {
    type Reply = AuditView;
    const NAME: &'static str = "list_audit";
    const ACCESS: Access = Access::Admin;
}

/// Audit records, oldest first, and the members that could not be asked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditView {
    pub items: Vec<AuditRecord>,
    /// Whether more records matched than `limit` (ask again from the last one's time).
    pub truncated: bool,
    /// Members whose records are missing, and why.
    pub unreachable: Vec<String>,
}

/// One state-changing request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub at_ms: u64,
    /// The node that served it.
    pub node_id: u64,
    /// `admin` or `tenant:<id>`.
    pub principal: String,
    /// The operation (`create_tenant`, `submit_job`, ...).
    pub action: String,
    /// What it named: the REST method and path, or the gRPC method.
    pub resource: String,
    /// `ok`, or the refusal's type (`forbidden`, `invalid-field`, ...).
    pub result: String,
    pub trace_id: String,
    pub request_id: String,
}

//! The observability API (US-09.6.4): what this node has switched on and where, the
//! dashboards it ships, and the alert rules in effect.

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertRuleListView {
    pub items: Vec<AlertRuleView>,
}

#[derive(Debug)]
pub struct GetObservabilityConfig;

impl Operation for GetObservabilityConfig {
    type Reply = ObservabilityConfigView;
    const NAME: &'static str = "observability_config";
}

#[derive(Debug)]
pub struct ListDashboards;

impl Operation for ListDashboards {
    type Reply = DashboardListView;
    const NAME: &'static str = "list_dashboards";
}

/// One dashboard's Grafana JSON.
#[derive(Debug)]
pub struct GetDashboard {
    pub uid: String,
}

impl Operation for GetDashboard {
    type Reply = serde_json::Value;
    const NAME: &'static str = "get_dashboard";
}

#[derive(Debug)]
pub struct ListAlertRules;

impl Operation for ListAlertRules {
    type Reply = AlertRuleListView;
    const NAME: &'static str = "list_alert_rules";
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
}

//! The gateway's observability operations (US-09.6.4): this node's monitoring settings,
//! the dashboards and the alert rules it ships. Admin only: they describe every pool and
//! tenant series.

use crate::actors::NodeContext;
use crate::actors::gateway::{Handler, require_admin};
use crate::gateway::observability_model::{
    AlertRuleListView, AlertRuleView, DashboardListView, DashboardSummaryView, GetDashboard,
    GetObservabilityConfig, ListAlertRules, ListDashboards, ObservabilityConfigView,
};
use crate::gateway::{GatewayError, RequestContext};
use crate::observability::{alert_rules, dashboard_json, dashboards};

impl Handler for GetObservabilityConfig {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<ObservabilityConfigView, GatewayError> {
        require_admin(&context, "reading the observability settings")?;
        let settings = &node.limits.observability;
        Ok(ObservabilityConfigView {
            metrics_enabled: settings.metrics_enabled,
            metrics_port: settings.metrics_port,
            metrics_path: settings.metrics_path.clone(),
            grafana_enabled: settings.grafana_enabled,
            dashboards_dir: settings.dashboards_dir.clone(),
            alerting_enabled: settings.alerting_enabled,
            alerts_dir: settings.alerts_dir.clone(),
            dashboards: dashboards().len(),
            alert_rules: alert_rules().len(),
        })
    }
}

impl Handler for ListDashboards {
    async fn handle(
        self,
        _node: NodeContext,
        context: RequestContext,
    ) -> Result<DashboardListView, GatewayError> {
        require_admin(&context, "reading the dashboards")?;
        Ok(DashboardListView {
            items: dashboards()
                .iter()
                .map(|dashboard| DashboardSummaryView {
                    uid: dashboard.uid.to_string(),
                    title: dashboard.title.to_string(),
                    panels: dashboard.panels.len(),
                })
                .collect(),
        })
    }
}

impl Handler for GetDashboard {
    async fn handle(
        self,
        _node: NodeContext,
        context: RequestContext,
    ) -> Result<serde_json::Value, GatewayError> {
        require_admin(&context, "reading the dashboards")?;
        dashboards()
            .iter()
            .find(|dashboard| dashboard.uid == self.uid)
            .map(dashboard_json)
            .ok_or_else(|| {
                GatewayError::from(hodei_domain::DomainError::not_found("dashboard", self.uid))
            })
    }
}

impl Handler for ListAlertRules {
    async fn handle(
        self,
        _node: NodeContext,
        context: RequestContext,
    ) -> Result<AlertRuleListView, GatewayError> {
        require_admin(&context, "reading the alert rules")?;
        Ok(AlertRuleListView {
            items: alert_rules()
                .into_iter()
                .map(|(group, rule)| AlertRuleView {
                    severity: rule.labels.get("severity").cloned().unwrap_or_default(),
                    summary: rule.annotations.get("summary").cloned().unwrap_or_default(),
                    runbook: rule.annotations.get("runbook").cloned().unwrap_or_default(),
                    name: rule.alert,
                    group,
                    expr: rule.expr,
                    for_duration: rule.for_duration,
                })
                .collect(),
        })
    }
}

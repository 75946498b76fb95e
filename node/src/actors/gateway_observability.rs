//! The gateway's observability operations (US-09.6.4): this node's monitoring settings,
//! the dashboards and the alert rules it ships. Admin only: they describe every pool and
//! tenant series.

use crate::actors::NodeContext;
use crate::actors::gateway::Handler;
use crate::actors::observability_sources as sources;
use crate::gateway::observability_model::{
    AlertRuleListView, AlertRuleView, DashboardListView, DashboardSummaryView, GetDashboard,
    GetHistoricalMetrics, GetObservabilityConfig, HistoricalMetricsView, HistoricalSeriesView,
    ListAlertRules, ListDashboards, ObservabilityConfigView,
};
use crate::gateway::observability_model::{
    GetObservabilityHealth, MemberMetricsView, MetricsEndpointView, ObservabilityHealthView,
    PrometheusTargetsView,
};
use crate::gateway::{GatewayError, RequestContext};
use crate::observability::{alert_rules, dashboard_json, dashboards};

impl Handler for GetObservabilityConfig {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<ObservabilityConfigView, GatewayError> {
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
            prometheus_url: settings.prometheus_url.clone(),
            alertmanager_url: settings.alertmanager_url.clone(),
        })
    }
}

/// The dashboard and alert routes answer this while their switch is off.
fn switched_off(what: &str, key: &str) -> GatewayError {
    GatewayError::new(
        crate::gateway::error::ErrorCode::Conflict,
        format!("{what} are off on this node ({key}: false)"),
    )
}

fn require_grafana(node: &NodeContext) -> Result<(), GatewayError> {
    if node.limits.observability.grafana_enabled {
        Ok(())
    } else {
        Err(switched_off(
            "Grafana dashboards",
            "observability.grafana.enabled",
        ))
    }
}

impl Handler for ListDashboards {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<DashboardListView, GatewayError> {
        require_grafana(&node)?;
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
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<serde_json::Value, GatewayError> {
        require_grafana(&node)?;
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
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<AlertRuleListView, GatewayError> {
        let settings = &node.limits.observability;
        if !settings.alerting_enabled {
            return Err(switched_off(
                "Alert rules and alerts",
                "observability.alerting.enabled",
            ));
        }
        let mut active = Vec::new();
        let mut silences = Vec::new();
        let mut sources = Vec::new();
        if let Some(url) = &settings.prometheus_url {
            let found = sources::prometheus_alerts(url).await;
            sources.push(sources::source_status("prometheus", url, &found));
            active.extend(found.unwrap_or_default());
        }
        if let Some(url) = &settings.alertmanager_url {
            let (alerts, silenced) = tokio::join!(
                sources::alertmanager_alerts(url),
                sources::alertmanager_silences(url)
            );
            let answered = alerts
                .as_ref()
                .and(silenced.as_ref())
                .map(|_| ())
                .map_err(|error| error.clone());
            sources.push(sources::source_status("alertmanager", url, &answered));
            active.extend(alerts.unwrap_or_default());
            silences = silenced.unwrap_or_default();
        }
        Ok(AlertRuleListView {
            active,
            silences,
            sources,
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

/// This node's metrics endpoint and how it has been scraped.
fn local_endpoint(node: &NodeContext) -> MetricsEndpointView {
    let settings = &node.limits.observability;
    let reading = node.scrapes.read();
    MetricsEndpointView {
        node_id: node.raft.node_id(),
        enabled: settings.metrics_enabled,
        address: reading.address,
        path: settings.metrics_path.clone(),
        scrapes: reading.scrapes,
        failed_scrapes: reading.failed,
        last_scrape_ms: reading.last.map(|(at_ms, _, _)| at_ms),
        last_scrape_duration_micros: reading.last.map(|(_, micros, _)| micros),
        last_scrape_bytes: reading.last.map(|(_, _, bytes)| bytes),
    }
}

impl Handler for GetObservabilityHealth {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<ObservabilityHealthView, GatewayError> {
        let local = local_endpoint(&node);
        if self.local_only {
            return Ok(ObservabilityHealthView {
                node: local,
                members: Vec::new(),
                prometheus: None,
            });
        }
        let own_id = local.node_id;
        let asked = node.raft.status().members.into_iter().map(|member| {
            let local = local.clone();
            let members = node.members.clone();
            async move {
                if member.node_id == own_id {
                    return MemberMetricsView {
                        node_id: member.node_id,
                        api_addr: member.api_addr,
                        reachable: true,
                        error: None,
                        endpoint: Some(local),
                    };
                }
                let Some(api_addr) = member.api_addr else {
                    return MemberMetricsView {
                        node_id: member.node_id,
                        api_addr: None,
                        reachable: false,
                        error: Some("its public address is not known here yet".to_string()),
                        endpoint: None,
                    };
                };
                let answer = sources::member_endpoint(&members, &api_addr).await;
                MemberMetricsView {
                    node_id: member.node_id,
                    api_addr: Some(api_addr),
                    reachable: answer.is_ok(),
                    error: answer.as_ref().err().cloned(),
                    endpoint: answer.ok(),
                }
            }
        });
        let prometheus = async {
            match &node.limits.observability.prometheus_url {
                Some(url) => {
                    let found = sources::prometheus_targets(url).await;
                    Some(PrometheusTargetsView {
                        source: sources::source_status("prometheus", url, &found),
                        targets: found.unwrap_or_default(),
                    })
                }
                None => None,
            }
        };
        let (members, prometheus) = tokio::join!(futures::future::join_all(asked), prometheus);
        Ok(ObservabilityHealthView {
            node: local,
            members,
            prometheus,
        })
    }
}

/// The most points one series of an answer holds.
const MAX_POINTS: u64 = 11_000;

/// The most points of all series together one answer holds.
const MAX_ANSWER_POINTS: usize = 200_000;

impl Handler for GetHistoricalMetrics {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<HistoricalMetricsView, GatewayError> {
        use crate::actors::metrics_history::{METRICS, query};
        if !METRICS.iter().any(|(name, _)| *name == self.metric) {
            let names: Vec<&str> = METRICS.iter().map(|(name, _)| *name).collect();
            return Err(GatewayError::invalid(
                "metric",
                format!("must be one of {}, got {:?}", names.join(", "), self.metric),
            ));
        }
        let mut labels = std::collections::BTreeMap::new();
        for pair in self
            .labels
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|pair| !pair.is_empty())
        {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(GatewayError::invalid(
                    "labels",
                    format!("must be name=value pairs separated by commas, got {pair:?}"),
                ));
            };
            labels.insert(name.trim().to_string(), value.trim().to_string());
        }
        let step_s = self.step_s.unwrap_or(10);
        if step_s < 10 || !step_s.is_multiple_of(10) || step_s > 86_400 {
            return Err(GatewayError::invalid(
                "step",
                format!("must be a multiple of 10 s from 10 to 86400, got {step_s}"),
            ));
        }
        let step_ms = step_s * 1_000;
        let now = crate::actors::now_ms();
        let to_ms = self.to_ms.unwrap_or(now);
        let from_ms = self.from_ms.unwrap_or(to_ms.saturating_sub(3_600_000));
        if from_ms >= to_ms {
            return Err(GatewayError::invalid(
                "from",
                format!("must be before to ({to_ms}), got {from_ms}"),
            ));
        }
        // Aligned: the window widens to whole steps.
        let from_ms = from_ms / step_ms * step_ms;
        let to_ms = to_ms.div_ceil(step_ms).saturating_mul(step_ms);
        if (to_ms - from_ms) / step_ms > MAX_POINTS {
            return Err(GatewayError::invalid(
                "step",
                format!(
                    "at most {MAX_POINTS} points per series: use a larger step or a shorter window"
                ),
            ));
        }
        let Some(store) = node.metrics_history.clone() else {
            return Err(GatewayError::invalid(
                "metric",
                "this node keeps no historical metrics",
            ));
        };
        let metric = self.metric.clone();
        let series = tokio::task::spawn_blocking(move || {
            query(store.as_ref(), &metric, &labels, from_ms, to_ms, step_ms)
        })
        .await
        .map_err(|error| GatewayError::internal(error.to_string()))?
        .map_err(|limit| {
            GatewayError::invalid(
                "from",
                format!("the window holds more than {limit} stored points: use a shorter window or a step of a minute or an hour"),
            )
        })?;
        let points: usize = series.iter().map(|found| found.points.len()).sum();
        if points > MAX_ANSWER_POINTS {
            return Err(GatewayError::invalid(
                "labels",
                format!(
                    "the answer would hold {points} points of {} series, more than {MAX_ANSWER_POINTS}: filter the series with labels, or use a larger step or a shorter window",
                    series.len()
                ),
            ));
        }
        let resolution = match crate::actors::metrics_history::resolution_of(step_ms).1 {
            3_600_000 => "1h",
            60_000 => "1m",
            _ => "10s",
        };
        Ok(HistoricalMetricsView {
            metric: self.metric,
            from_ms,
            to_ms,
            step_ms,
            resolution: resolution.to_string(),
            series: series
                .into_iter()
                .map(|found| HistoricalSeriesView {
                    labels: found.labels,
                    points: found.points,
                })
                .collect(),
        })
    }
}

impl Handler for crate::gateway::observability_model::ListAudit {
    async fn handle(
        self,
        node: NodeContext,
        _context: RequestContext,
    ) -> Result<crate::gateway::observability_model::AuditView, GatewayError> {
        let limit = crate::gateway::model::page_size(self.limit)?;
        let to_ms = self.to_ms.unwrap_or(u64::MAX);
        let from_ms = self.from_ms.unwrap_or(0);
        if from_ms > to_ms {
            return Err(GatewayError::invalid(
                "from",
                format!("must not be after to ({to_ms}), got {from_ms}"),
            ));
        }
        let principal = self.principal.filter(|principal| !principal.is_empty());
        if let Some(principal) = &principal {
            crate::gateway::Principal::parse(principal).map_err(|_| {
                GatewayError::invalid("principal", "must be `admin` or `tenant:<tenant id>`")
            })?;
        }
        let mut items = node
            .audit
            .as_ref()
            .map(|audit| audit.query(from_ms, to_ms, principal.as_deref(), limit + 1))
            .unwrap_or_default();
        let mut unreachable = Vec::new();
        if !self.local_only {
            let own_id = node.raft.status().node_id;
            let asked = node
                .raft
                .status()
                .members
                .into_iter()
                .filter(|member| member.node_id != own_id)
                .map(|member| {
                    let members = node.members.clone();
                    let principal = principal.clone();
                    async move {
                        let Some(api_addr) = member.api_addr else {
                            return Err(format!(
                                "node {}: its public address is not known here yet",
                                member.node_id
                            ));
                        };
                        sources::member_audit(
                            &members,
                            &api_addr,
                            from_ms,
                            to_ms,
                            principal,
                            limit + 1,
                        )
                        .await
                        .map_err(|error| format!("node {}: {error}", member.node_id))
                    }
                });
            for answer in futures::future::join_all(asked).await {
                match answer {
                    Ok(records) => items.extend(records),
                    Err(why) => unreachable.push(why),
                }
            }
        }
        items.sort_by_key(|record| (record.at_ms, record.node_id));
        let truncated = items.len() > limit;
        items.truncate(limit);
        Ok(crate::gateway::observability_model::AuditView {
            items,
            truncated,
            unreachable,
        })
    }
}

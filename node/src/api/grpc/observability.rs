//! `hodei.v1.ObservabilityService`: the same gateway messages as REST's
//! `/api/v1/observability/*` and `/api/v1/metrics/historical`.

use hodei_proto::v1 as pb;
use hodei_proto::v1::observability_service_server::ObservabilityService;

use crate::actors::gateway::GatewayHandle;
use crate::api::grpc::{GrpcGateway, GrpcResult, non_empty};
use crate::gateway::observability_model::{
    ActiveAlertView, AlertRuleListView, GetDashboard, GetHistoricalMetrics, GetObservabilityConfig,
    GetObservabilityHealth, HistoricalMetricsView, ListAlertRules, ListDashboards,
    MetricsEndpointView, ObservabilityConfigView, ObservabilityHealthView, SourceStatusView,
};

pub struct ObservabilityGrpc {
    grpc: GrpcGateway,
}

impl ObservabilityGrpc {
    pub fn new(
        gateway: GatewayHandle,
        authenticator: crate::actors::authenticator::Authenticator,
    ) -> Self {
        Self {
            grpc: GrpcGateway::new(gateway, authenticator),
        }
    }
}

fn config_message(view: ObservabilityConfigView) -> pb::ObservabilityConfig {
    pb::ObservabilityConfig {
        metrics_enabled: view.metrics_enabled,
        metrics_port: u32::from(view.metrics_port),
        metrics_path: view.metrics_path,
        grafana_enabled: view.grafana_enabled,
        dashboards_dir: view.dashboards_dir,
        alerting_enabled: view.alerting_enabled,
        alerts_dir: view.alerts_dir,
        dashboards: view.dashboards as u32,
        alert_rules: view.alert_rules as u32,
        prometheus_url: view.prometheus_url,
        alertmanager_url: view.alertmanager_url,
    }
}

fn source_message(view: SourceStatusView) -> pb::SourceStatus {
    pb::SourceStatus {
        name: view.name,
        url: view.url,
        reachable: view.reachable,
        error: view.error,
    }
}

fn active_message(view: ActiveAlertView) -> pb::ActiveAlert {
    pb::ActiveAlert {
        name: view.name,
        source: view.source,
        state: view.state,
        severity: view.severity,
        labels: view.labels.into_iter().collect(),
        summary: view.summary,
        since: view.since,
        silenced_by: view.silenced_by,
        inhibited_by: view.inhibited_by,
    }
}

fn alerts_message(view: AlertRuleListView) -> pb::Alerts {
    pb::Alerts {
        rules: view
            .items
            .into_iter()
            .map(|rule| pb::AlertRule {
                name: rule.name,
                group: rule.group,
                severity: rule.severity,
                expr: rule.expr,
                for_duration: rule.for_duration,
                summary: rule.summary,
                runbook: rule.runbook,
            })
            .collect(),
        active: view.active.into_iter().map(active_message).collect(),
        silences: view
            .silences
            .into_iter()
            .map(|silence| pb::Silence {
                id: silence.id,
                state: silence.state,
                matchers: silence
                    .matchers
                    .into_iter()
                    .map(|matcher| pb::SilenceMatcher {
                        name: matcher.name,
                        value: matcher.value,
                        is_regex: matcher.is_regex,
                        is_equal: matcher.is_equal,
                    })
                    .collect(),
                starts_at: silence.starts_at,
                ends_at: silence.ends_at,
                created_by: silence.created_by,
                comment: silence.comment,
            })
            .collect(),
        sources: view.sources.into_iter().map(source_message).collect(),
    }
}

/// A metrics endpoint in its wire form (`observability_sources::endpoint_view` reads it
/// back on the asking node).
pub fn endpoint_message(view: MetricsEndpointView) -> pb::MetricsEndpoint {
    pb::MetricsEndpoint {
        node_id: view.node_id,
        enabled: view.enabled,
        address: view.address.unwrap_or_default(),
        path: view.path,
        scrapes: view.scrapes,
        failed_scrapes: view.failed_scrapes,
        last_scrape_ms: view.last_scrape_ms,
        last_scrape_duration_micros: view.last_scrape_duration_micros,
        last_scrape_bytes: view.last_scrape_bytes,
    }
}

fn health_message(view: ObservabilityHealthView) -> pb::ObservabilityHealth {
    pb::ObservabilityHealth {
        node: Some(endpoint_message(view.node)),
        members: view
            .members
            .into_iter()
            .map(|member| pb::MemberMetrics {
                node_id: member.node_id,
                api_addr: member.api_addr.unwrap_or_default(),
                reachable: member.reachable,
                error: member.error,
                endpoint: member.endpoint.map(endpoint_message),
            })
            .collect(),
        prometheus: view.prometheus.map(|prometheus| pb::PrometheusTargets {
            source: Some(source_message(prometheus.source)),
            targets: prometheus
                .targets
                .into_iter()
                .map(|target| pb::ScrapeTarget {
                    instance: target.instance,
                    job: target.job,
                    health: target.health,
                    last_scrape: target.last_scrape,
                    last_scrape_duration_s: target.last_scrape_duration_s,
                    last_error: target.last_error,
                })
                .collect(),
        }),
    }
}

fn historical_message(view: HistoricalMetricsView) -> pb::HistoricalMetrics {
    pb::HistoricalMetrics {
        metric: view.metric,
        from_ms: view.from_ms,
        to_ms: view.to_ms,
        step_ms: view.step_ms,
        resolution: view.resolution,
        series: view
            .series
            .into_iter()
            .map(|series| pb::HistoricalSeries {
                labels: series.labels.into_iter().collect(),
                points: series
                    .points
                    .into_iter()
                    .map(|(at_ms, value)| pb::HistoricalPoint { at_ms, value })
                    .collect(),
            })
            .collect(),
    }
}

#[tonic::async_trait]
impl ObservabilityService for ObservabilityGrpc {
    async fn get_config(
        &self,
        request: tonic::Request<pb::GetObservabilityConfigRequest>,
    ) -> GrpcResult<pb::ObservabilityConfig> {
        self.grpc
            .call(request, |_| Ok(GetObservabilityConfig), config_message)
            .await
    }

    async fn list_dashboards(
        &self,
        request: tonic::Request<pb::ListDashboardsRequest>,
    ) -> GrpcResult<pb::DashboardList> {
        let encode =
            |view: crate::gateway::observability_model::DashboardListView| pb::DashboardList {
                items: view
                    .items
                    .into_iter()
                    .map(|item| pb::DashboardSummary {
                        uid: item.uid,
                        title: item.title,
                        panels: item.panels as u32,
                    })
                    .collect(),
            };
        self.grpc
            .call(request, |_| Ok(ListDashboards), encode)
            .await
    }

    async fn get_dashboard(
        &self,
        request: tonic::Request<pb::GetDashboardRequest>,
    ) -> GrpcResult<pb::Dashboard> {
        let uid = request.get_ref().uid.clone();
        let operation = |message: pb::GetDashboardRequest| Ok(GetDashboard { uid: message.uid });
        let encode = move |json: serde_json::Value| pb::Dashboard {
            uid,
            json: json.to_string(),
        };
        self.grpc.call(request, operation, encode).await
    }

    async fn list_alerts(
        &self,
        request: tonic::Request<pb::ListAlertsRequest>,
    ) -> GrpcResult<pb::Alerts> {
        self.grpc
            .call(request, |_| Ok(ListAlertRules), alerts_message)
            .await
    }

    async fn get_health(
        &self,
        request: tonic::Request<pb::GetObservabilityHealthRequest>,
    ) -> GrpcResult<pb::ObservabilityHealth> {
        let operation = |message: pb::GetObservabilityHealthRequest| {
            Ok(GetObservabilityHealth {
                local_only: message.local_only,
            })
        };
        self.grpc.call(request, operation, health_message).await
    }

    async fn get_historical_metrics(
        &self,
        request: tonic::Request<pb::HistoricalMetricsRequest>,
    ) -> GrpcResult<pb::HistoricalMetrics> {
        let operation = |message: pb::HistoricalMetricsRequest| {
            Ok(GetHistoricalMetrics {
                metric: message.metric,
                labels: non_empty(message.labels),
                from_ms: message.from_ms,
                to_ms: message.to_ms,
                step_s: message.step_s,
            })
        };
        self.grpc.call(request, operation, historical_message).await
    }

    async fn list_audit(
        &self,
        request: tonic::Request<pb::ListAuditRequest>,
    ) -> GrpcResult<pb::AuditRecords> {
        let operation = |message: pb::ListAuditRequest| {
            Ok(crate::gateway::observability_model::ListAudit {
                from_ms: message.from_ms,
                to_ms: message.to_ms,
                principal: non_empty(message.principal),
                limit: message.limit,
                local_only: message.local_only,
            })
        };
        self.grpc
            .call(request, operation, |view| pb::AuditRecords {
                items: view
                    .items
                    .into_iter()
                    .map(|record| pb::AuditRecord {
                        at_ms: record.at_ms,
                        node_id: record.node_id,
                        principal: record.principal,
                        action: record.action,
                        resource: record.resource,
                        result: record.result,
                        trace_id: record.trace_id,
                        request_id: record.request_id,
                    })
                    .collect(),
                truncated: view.truncated,
                unreachable: view.unreachable,
            })
            .await
    }
}

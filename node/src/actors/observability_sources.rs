//! What the observability API asks outside this node: the configured Prometheus (alerts,
//! scrape targets) and Alertmanager (alerts, silences) over their HTTP APIs, and the
//! other members' metrics endpoints over Hodei's gRPC. Each answer is bounded in time;
//! a server that does not answer is reported as such, never as an empty list.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::gateway::observability_model::{
    ActiveAlertView, MetricsEndpointView, ScrapeTargetView, SilenceMatcherView, SilenceView,
    SourceStatusView,
};

/// How long a monitoring server or another member has to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// The largest answer read from a monitoring server.
const MAX_ANSWER_BYTES: usize = 8 * 1024 * 1024;

/// Hodei's alerts, by the prefix every shipped rule's name has: the monitoring servers
/// may hold other systems' alerts too, which are not shown.
const ALERT_PREFIX: &str = "Hodei";

/// A source's status from the outcome of asking it.
pub fn source_status<T>(name: &str, url: &str, outcome: &Result<T, String>) -> SourceStatusView {
    SourceStatusView {
        name: name.to_string(),
        url: url.to_string(),
        reachable: outcome.is_ok(),
        error: outcome.as_ref().err().cloned(),
    }
}

async fn get_json<T: serde::de::DeserializeOwned>(base: &str, path: &str) -> Result<T, String> {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let client = reqwest::Client::builder()
        .timeout(ANSWER_WITHIN)
        .build()
        .map_err(|error| error.to_string())?;
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|error| format!("GET {url}: {error}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: {status}"));
    }
    let mut response = response;
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| format!("GET {url}: {error}"))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "GET {url}: the answer is larger than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice::<T>(&body)
        .map_err(|error| format!("GET {url}: unexpected answer: {error}"))
}

fn is_hodeis(labels: &BTreeMap<String, String>) -> bool {
    labels
        .get("alertname")
        .is_some_and(|name| name.starts_with(ALERT_PREFIX))
}

#[derive(Deserialize)]
struct PrometheusAnswer<T> {
    data: T,
}

#[derive(Deserialize)]
struct PrometheusAlerts {
    alerts: Vec<PrometheusAlert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrometheusAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    state: String,
    #[serde(default)]
    active_at: String,
}

/// Hodei's alerts Prometheus evaluates as pending or firing (`GET /api/v1/alerts`).
pub async fn prometheus_alerts(base: &str) -> Result<Vec<ActiveAlertView>, String> {
    let answer: PrometheusAnswer<PrometheusAlerts> = get_json(base, "/api/v1/alerts").await?;
    Ok(answer
        .data
        .alerts
        .into_iter()
        .filter(|alert| is_hodeis(&alert.labels))
        .map(|alert| {
            active_alert(
                "prometheus",
                alert.state,
                alert.labels,
                &alert.annotations,
                alert.active_at,
                Vec::new(),
                Vec::new(),
            )
        })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertmanagerAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    status: AlertmanagerStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertmanagerStatus {
    state: String,
    #[serde(default)]
    silenced_by: Vec<String>,
    #[serde(default)]
    inhibited_by: Vec<String>,
}

/// Hodei's alerts Alertmanager holds, silenced and inhibited ones included
/// (`GET /api/v2/alerts`).
pub async fn alertmanager_alerts(base: &str) -> Result<Vec<ActiveAlertView>, String> {
    let alerts: Vec<AlertmanagerAlert> =
        get_json(base, "/api/v2/alerts?filter=alertname%3D~%22Hodei.%2A%22").await?;
    Ok(alerts
        .into_iter()
        .filter(|alert| is_hodeis(&alert.labels))
        .map(|alert| {
            active_alert(
                "alertmanager",
                alert.status.state,
                alert.labels,
                &alert.annotations,
                alert.starts_at,
                alert.status.silenced_by,
                alert.status.inhibited_by,
            )
        })
        .collect())
}

fn active_alert(
    source: &str,
    state: String,
    mut labels: BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    since: String,
    silenced_by: Vec<String>,
    inhibited_by: Vec<String>,
) -> ActiveAlertView {
    ActiveAlertView {
        name: labels.remove("alertname").unwrap_or_default(),
        source: source.to_string(),
        state,
        severity: labels.get("severity").cloned().unwrap_or_default(),
        summary: annotations.get("summary").cloned().unwrap_or_default(),
        labels,
        since,
        silenced_by,
        inhibited_by,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertmanagerSilence {
    id: String,
    matchers: Vec<AlertmanagerMatcher>,
    starts_at: String,
    ends_at: String,
    #[serde(default)]
    created_by: String,
    #[serde(default)]
    comment: String,
    status: AlertmanagerSilenceStatus,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertmanagerMatcher {
    name: String,
    value: String,
    #[serde(default)]
    is_regex: bool,
    #[serde(default = "equal_by_default")]
    is_equal: bool,
}

fn equal_by_default() -> bool {
    true
}

#[derive(Deserialize)]
struct AlertmanagerSilenceStatus {
    state: String,
}

/// Alertmanager's silences that are active or yet to start (`GET /api/v2/silences`;
/// expired ones, which it keeps for days, are left out).
pub async fn alertmanager_silences(base: &str) -> Result<Vec<SilenceView>, String> {
    let silences: Vec<AlertmanagerSilence> = get_json(base, "/api/v2/silences").await?;
    Ok(silences
        .into_iter()
        .filter(|silence| silence.status.state != "expired")
        .map(|silence| SilenceView {
            id: silence.id,
            state: silence.status.state,
            matchers: silence
                .matchers
                .into_iter()
                .map(|matcher| SilenceMatcherView {
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
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrometheusTargets {
    active_targets: Vec<PrometheusTarget>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrometheusTarget {
    labels: BTreeMap<String, String>,
    health: String,
    #[serde(default)]
    last_scrape: String,
    #[serde(default)]
    last_scrape_duration: f64,
    #[serde(default)]
    last_error: String,
}

/// Every active scrape target of Prometheus and how its last scrape went
/// (`GET /api/v1/targets?state=active`).
pub async fn prometheus_targets(base: &str) -> Result<Vec<ScrapeTargetView>, String> {
    let answer: PrometheusAnswer<PrometheusTargets> =
        get_json(base, "/api/v1/targets?state=active").await?;
    Ok(answer
        .data
        .active_targets
        .into_iter()
        .map(|target| ScrapeTargetView {
            instance: target.labels.get("instance").cloned().unwrap_or_default(),
            job: target.labels.get("job").cloned().unwrap_or_default(),
            health: target.health,
            last_scrape: target.last_scrape,
            last_scrape_duration_s: target.last_scrape_duration,
            last_error: target.last_error,
        })
        .collect())
}

/// Another member's own metrics endpoint, asked over its public gRPC address.
pub async fn member_endpoint(
    members: &crate::actors::MemberAccess,
    api_addr: &str,
) -> Result<MetricsEndpointView, String> {
    use hodei_proto::v1 as pb;
    let channel = members.channel(api_addr, ANSWER_WITHIN).await?;
    let mut client = pb::observability_service_client::ObservabilityServiceClient::new(channel);
    let request = members.request(pb::GetObservabilityHealthRequest { local_only: true });
    let answer = client
        .get_health(request)
        .await
        .map_err(|status| answered(api_addr, &status))?
        .into_inner();
    answer
        .node
        .map(endpoint_view)
        .ok_or_else(|| format!("{api_addr} described no metrics endpoint"))
}

/// What a member's refusal says, for the caller.
fn answered(api_addr: &str, status: &tonic::Status) -> String {
    format!(
        "{api_addr} answered {:?}: {}",
        status.code(),
        status.message()
    )
}

/// A metrics endpoint from its wire form.
pub fn endpoint_view(endpoint: hodei_proto::v1::MetricsEndpoint) -> MetricsEndpointView {
    MetricsEndpointView {
        node_id: endpoint.node_id,
        enabled: endpoint.enabled,
        address: (!endpoint.address.is_empty()).then_some(endpoint.address),
        path: endpoint.path,
        scrapes: endpoint.scrapes,
        failed_scrapes: endpoint.failed_scrapes,
        last_scrape_ms: endpoint.last_scrape_ms,
        last_scrape_duration_micros: endpoint.last_scrape_duration_micros,
        last_scrape_bytes: endpoint.last_scrape_bytes,
    }
}

/// Another member's audit records, asked over its public gRPC address.
pub async fn member_audit(
    members: &crate::actors::MemberAccess,
    api_addr: &str,
    from_ms: u64,
    to_ms: u64,
    principal: Option<String>,
    limit: usize,
) -> Result<Vec<crate::actors::audit::AuditRecord>, String> {
    use hodei_proto::v1 as pb;
    let channel = members.channel(api_addr, ANSWER_WITHIN).await?;
    let mut client = pb::observability_service_client::ObservabilityServiceClient::new(channel);
    let request = members.request(pb::ListAuditRequest {
        from_ms: Some(from_ms),
        to_ms: Some(to_ms),
        principal: principal.unwrap_or_default(),
        limit: Some(limit.min(1_000) as u32),
        local_only: true,
    });
    let answer = client
        .list_audit(request)
        .await
        .map_err(|status| answered(api_addr, &status))?
        .into_inner();
    Ok(answer
        .items
        .into_iter()
        .map(|record| crate::actors::audit::AuditRecord {
            at_ms: record.at_ms,
            node_id: record.node_id,
            principal: record.principal,
            action: record.action,
            resource: record.resource,
            result: record.result,
            trace_id: record.trace_id,
            request_id: record.request_id,
        })
        .collect())
}

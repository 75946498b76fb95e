//! The REST adapter (axum). Handlers decode, send one gateway message and encode; the
//! middleware gives every request a trace id and turns every error into
//! `application/problem+json`.

mod cluster;
mod cost;
mod document;
mod extract;
mod jobs;
mod limits;
mod observability;
mod pools;
mod scaling;
mod tenants;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use self::extract::{
    ApiJson, Authorized, Context, QueryResult, ReadParams, consistency, page_limit, query,
};
use crate::actors::gateway::GatewayHandle;
use crate::gateway::model::ProblemView;
use crate::gateway::trace::{TRACE_ID_HEADER, TRACEPARENT_HEADER};
use crate::gateway::{ErrorCode, GatewayError, TraceId};

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// What every handler gets.
#[derive(Clone)]
pub struct RestState {
    pub gateway: GatewayHandle,
    pub openapi_json: Arc<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Hodei", description = "Multi-tenant job-scheduling control plane", version = "v1"),
    tags(
        (name = "tenants", description = "Tenant management (US-09.1.1)"),
        (name = "quotas", description = "Quotas, usage and enforcement (US-09.1.2, US-09.1.3)"),
        (name = "tokens", description = "Tenants' access tokens and pools' join tokens"),
        (name = "burst", description = "Burst capacity (US-09.1.4)"),
        (name = "jobs", description = "Jobs: submit, read, cancel, logs"),
        (name = "queues", description = "Queues and the pools they dispatch to"),
        (name = "workers", description = "Registered workers"),
        (name = "pools", description = "Resource pools and their lifecycle"),
        (name = "autoscaling", description = "Pool autoscaling: policies, triggers, cooldowns, history and evaluations"),
        (name = "cost", description = "Cost reports from the cost ledger, stored report definitions, the breakdown and recommendations"),
        (name = "observability", description = "Monitoring settings, dashboards and alert rules"),
        (name = "cluster", description = "Health, status and membership")
    )
)]
struct ApiDoc;

fn api_routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tenants::routes())
        .merge(tokens::routes())
        .merge(limits::routes())
        .merge(cluster::routes())
        .merge(jobs::routes())
        .merge(pools::routes())
        .merge(scaling::routes())
        .merge(cost::routes())
        .merge(observability::routes())
}

/// The OpenAPI document of every REST operation (what `/api/v1/openapi.json` serves).
pub fn api_document() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The document as served: [`api_document`] with what `document.rs` adds (rules utoipa's
/// model cannot hold, such as `propertyNames`).
pub fn api_document_json() -> serde_json::Value {
    let mut json = serde_json::to_value(api_document()).unwrap_or_default();
    document::complete(&mut json);
    json
}

/// Every REST route and the OpenAPI document that describes exactly them.
pub fn router(
    metrics: crate::actors::metrics::Metrics,
    gateway: GatewayHandle,
    authenticator: crate::actors::authenticator::Authenticator,
    max_body_bytes: usize,
) -> Router {
    let routes = api_routes().split_for_parts().0;
    let openapi_json = Arc::new(
        serde_json::to_string_pretty(&api_document_json())
            .unwrap_or_else(|error| format!("{{\"error\":\"{error}\"}}")),
    );
    let state = RestState {
        gateway,
        openapi_json,
    };
    routes
        .route("/api/v1/openapi.json", axum::routing::get(openapi_document))
        .route("/api/v1/docs", axum::routing::get(api_docs))
        .route_layer(middleware::from_fn_with_state(authenticator, authenticate))
        .route_layer(middleware::from_fn_with_state(metrics, record_metrics))
        .fallback(unknown_route)
        .with_state(state)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(trace_and_problems))
}

/// The one route served without credentials: liveness and readiness probes.
pub const UNAUTHENTICATED_ROUTE: &str = "/api/v1/health";

/// Authenticates every routed request but the health probe (`crate::actors::authenticator`):
/// handlers find the caller's context among the request's extensions; a request that
/// cannot be authenticated is answered 401 here.
async fn authenticate(
    State(authenticator): State<crate::actors::authenticator::Authenticator>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == UNAUTHENTICATED_ROUTE {
        return next.run(request).await;
    }
    let trace_id = request
        .extensions()
        .get::<TraceId>()
        .cloned()
        .unwrap_or_else(TraceId::generate);
    let resource = format!("{} {}", request.method(), request.uri().path());
    let context = authenticate_headers(&authenticator, request.headers(), trace_id)
        .map(|context| context.with_resource(resource));
    match context {
        Ok(context) => {
            request.extensions_mut().insert(context);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

fn authenticate_headers(
    authenticator: &crate::actors::authenticator::Authenticator,
    headers: &axum::http::HeaderMap,
    trace_id: TraceId,
) -> Result<crate::gateway::RequestContext, GatewayError> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|value| {
                value
                    .to_str()
                    .map_err(|_| GatewayError::invalid(name.to_string(), "must be ASCII"))
            })
            .transpose()
    };
    authenticator.context(
        crate::actors::authenticator::Presented {
            authorization: header(header::AUTHORIZATION.as_str())?,
            principal: header(crate::gateway::principal::PRINCIPAL_HEADER)?,
        },
        trace_id,
    )
}

/// Counts every routed request by its route template (bounded), method and status.
async fn record_metrics(
    State(metrics): State<crate::actors::metrics::Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.api_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The API reference page: one self-contained file in the binary (no CDN, no network)
/// that renders `/api/v1/openapi.json` in the browser.
const API_DOCS_PAGE: &str = include_str!("docs.html");

async fn api_docs() -> Response {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        API_DOCS_PAGE,
    )
        .into_response()
}

async fn openapi_document(State(state): State<RestState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi_json.as_str().to_string(),
    )
        .into_response()
}

async fn unknown_route(request: Request) -> GatewayError {
    GatewayError::new(
        ErrorCode::NotFound,
        format!("no route {} {}", request.method(), request.uri().path()),
    )
}

/// Gives the request its trace id (from `traceparent` or new), runs it in a span that
/// carries the id, echoes it in `x-trace-id`, and rewrites any error that is not yet a
/// problem document (axum's own 404, 405, 413 ...) into one.
async fn trace_and_problems(mut request: Request, next: Next) -> Response {
    let traceparent = request
        .headers()
        .get(TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok());
    let trace_id = TraceId::from_header_or_new(traceparent);
    request.extensions_mut().insert(trace_id.clone());
    let span = tracing::info_span!("request", trace_id = %trace_id, method = %request.method(), path = %request.uri().path());
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if let Some(error) = response.extensions_mut().remove::<GatewayError>() {
        response = problem_response(&error, &trace_id);
    } else if status.is_client_error() || status.is_server_error() {
        let is_problem = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| {
                value
                    .as_bytes()
                    .starts_with(PROBLEM_CONTENT_TYPE.as_bytes())
            });
        if !is_problem {
            let error = GatewayError::new(
                code_for_status(status),
                status.canonical_reason().unwrap_or("error").to_lowercase(),
            );
            response = problem_response(&error, &trace_id);
        }
    }
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "request served"));
    if let Ok(value) = HeaderValue::from_str(trace_id.as_str()) {
        response.headers_mut().insert(TRACE_ID_HEADER, value);
    }
    response
}

fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Conflict,
        413 => ErrorCode::PayloadTooLarge,
        415 => ErrorCode::UnsupportedMediaType,
        422 => ErrorCode::Unprocessable,
        429 => ErrorCode::TooManyRequests,
        503 => ErrorCode::Unavailable,
        504 => ErrorCode::Timeout,
        _ if status.is_client_error() => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    }
}

/// Errors leave handlers as a marker the middleware renders, because only the
/// middleware knows the trace id for certain.
impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = self.code.http_status().into_response();
        response.extensions_mut().insert(self);
        response
    }
}

pub fn problem_response(error: &GatewayError, trace_id: &TraceId) -> Response {
    let status = error.code.http_status();
    if error.code == ErrorCode::Internal {
        tracing::error!(trace_id = %trace_id, detail = %error.detail, "internal error");
    }
    let body = ProblemView {
        problem_type: format!("urn:hodei:problem:{}", error.code.slug()),
        title: error.code.title().to_string(),
        status: status.as_u16(),
        detail: error.detail.clone(),
        field: error.field.clone(),
        rule: error.rule.clone(),
        request_id: error.request_id.clone(),
        trace_id: trace_id.to_string(),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)
        .body(Body::from(json))
        .unwrap_or_else(|_| status.into_response());
    if let Some(seconds) = error.retry_after_s {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A JSON success body with the request's `trace_id` added to the top-level object.
pub fn json_reply<T: Serialize>(status: StatusCode, trace_id: &TraceId, body: &T) -> Response {
    let mut value = match serde_json::to_value(body) {
        Ok(value) => value,
        Err(error) => {
            return GatewayError::internal(format!("unencodable response: {error}"))
                .into_response();
        }
    };
    if let Some(object) = value.as_object_mut() {
        object.insert(
            "trace_id".to_string(),
            serde_json::Value::String(trace_id.to_string()),
        );
    }
    (status, axum::Json(value)).into_response()
}

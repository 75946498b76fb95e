//! `/api/v1/jobs`, `/api/v1/queues` and `/api/v1/workers` (pools are in `pools.rs`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::actors::gateway::Handler;
use crate::api::rest::{
    ApiJson, Authorized, Context, QueryResult, ReadParams, RestState, consistency, json_reply,
    page_limit, query,
};
use crate::gateway::job_model::{
    BatchSubmitInput, BatchView, CreateQueueInput, JobFilter, JobLogsView, JobPageView, JobView,
    QueueListView, QueueView, SubmitJobInput, SubmittedJobView, UpdateQueueInput, WorkerListView,
};
use crate::gateway::model::{PageInput, ProblemView};
use crate::gateway::operations::{
    CancelJob, CreateQueue, DeleteQueue, GetFairShare, GetJob, GetJobLogs, GetJobPosition,
    GetJobSla, GetQueue, GetQueueStatus, GetSlaSummary, ListJobs, ListQueueStatus, ListQueues,
    ListWorkers, SubmitJob, SubmitJobs, UpdateQueue,
};
use crate::gateway::report_model::{
    FairShareView, JobPositionView, JobSlaView, QueueStatusListView, QueueStatusView,
    SlaSummaryView,
};
use crate::gateway::{Consistency, GatewayError, RequestContext};

pub fn routes() -> OpenApiRouter<RestState> {
    OpenApiRouter::new()
        .routes(routes!(submit_job, list_jobs))
        .routes(routes!(submit_batch))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
        .routes(routes!(job_logs))
        .routes(routes!(create_queue, list_queues))
        .routes(routes!(get_queue, update_queue, delete_queue))
        .routes(routes!(list_workers))
        .routes(routes!(fair_share))
        .routes(routes!(all_queue_status))
        .routes(routes!(queue_status))
        .routes(routes!(job_position))
        .routes(routes!(job_sla))
        .routes(routes!(sla_summary))
}

pub(super) async fn ask<O: Handler>(
    state: &RestState,
    context: RequestContext,
    operation: O,
) -> Result<O::Reply, GatewayError> {
    state.gateway.call(context, operation).await
}

/// Submit a job. 202: it is accepted and pending; 200: an earlier job with the same
/// idempotency key is returned.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = SubmitJobInput,
    responses(
        (status = 202, description = "Accepted", body = SubmittedJobView),
        (status = 200, description = "A repeat of an idempotency key", body = SubmittedJobView),
        (status = 404, description = "Unknown tenant, queue or pool", body = ProblemView),
        (status = 422, description = "A field breaks a rule", body = ProblemView),
        (status = 429, description = "The tenant's backlog is full", body = ProblemView),
    ))]
async fn submit_job(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<SubmitJob>,
    ApiJson(input): ApiJson<SubmitJobInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let submitted = ask(
        &state,
        context,
        SubmitJob {
            input: Box::new(input),
        },
    )
    .await?;
    let status = if submitted.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(json_reply(status, &trace_id, &submitted))
}

/// Submit up to 1,000 jobs in one request (one Raft entry); each is accepted or refused
/// on its own.
#[utoipa::path(post, path = "/api/v1/jobs/batch", tag = "jobs", request_body = BatchSubmitInput,
    responses(
        (status = 202, description = "Each job's result", body = BatchView),
        (status = 413, description = "More than 1,000 jobs", body = ProblemView),
        (status = 422, description = "No job", body = ProblemView),
    ))]
async fn submit_batch(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<SubmitJobs>,
    ApiJson(input): ApiJson<BatchSubmitInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let request = SubmitJobs { inputs: input.jobs };
    let batch = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::ACCEPTED, &trace_id, &batch))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListJobsParams {
    tenant: Option<String>,
    queue: Option<String>,
    /// pending | assigned | running | succeeded | failed | timed_out | cancelled
    state: Option<String>,
    /// `key=value`
    label: Option<String>,
    /// `oldest` (default: submit order) or `newest` first.
    order: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// List jobs in submit order, a page at a time. A tenant principal sees only its own.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(ListJobsParams),
    responses((status = 200, body = JobPageView), (status = 422, body = ProblemView)))]
async fn list_jobs(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListJobs>,
    params: QueryResult<ListJobsParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let request = ListJobs {
        filter: JobFilter {
            tenant: params.tenant,
            queue: params.queue,
            state: params.state,
            order: params.order,
            label: params.label,
        },
        page: PageInput {
            limit: page_limit(params.limit.as_deref())?,
            cursor: params.cursor,
        },
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let page = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &page))
}

/// Get one job: its state, every transition, and while pending its queue position and why.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path, description = "Job id"), ReadParams),
    responses((status = 200, body = JobView), (status = 404, body = ProblemView)))]
async fn get_job(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetJob>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = GetJob {
        id,
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let job = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &job))
}

/// Cancel a pending, assigned or running job (a running process is killed).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = ProblemView), (status = 409, description = "Already final", body = ProblemView)))]
async fn cancel_job(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<CancelJob>,
    Path(id): Path<String>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let job = ask(&state, context, CancelJob { id }).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &job))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsParams {
    /// `all` (default: stdout and stderr interleaved), `stdout` or `stderr`.
    stream: Option<String>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// The last 64 KiB of the job's output: while it runs, as its worker last reported it
/// (every few seconds); after, all of it to its end.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/logs", tag = "jobs", params(("id" = String, Path, description = "Job id"), LogsParams),
    responses((status = 200, body = JobLogsView), (status = 404, body = ProblemView), (status = 422, body = ProblemView)))]
async fn job_logs(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetJobLogs>,
    Path(id): Path<String>,
    params: QueryResult<LogsParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let request = GetJobLogs {
        id,
        stream: params.stream,
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let logs = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &logs))
}

/// Create a queue (admin).
#[utoipa::path(post, path = "/api/v1/queues", tag = "queues", request_body = CreateQueueInput,
    responses((status = 201, body = QueueView), (status = 404, description = "Unknown pool", body = ProblemView),
        (status = 409, description = "The id is taken", body = ProblemView), (status = 422, body = ProblemView)))]
async fn create_queue(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<CreateQueue>,
    ApiJson(input): ApiJson<CreateQueueInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let queue = ask(&state, context, CreateQueue { input }).await?;
    Ok(json_reply(StatusCode::CREATED, &trace_id, &queue))
}

/// List the queues.
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues", params(ReadParams),
    responses((status = 200, body = QueueListView)))]
async fn list_queues(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListQueues>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = ListQueues {
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let queues = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &queues))
}

/// Get one queue.
#[utoipa::path(get, path = "/api/v1/queues/{id}", tag = "queues", params(("id" = String, Path, description = "Queue id"), ReadParams),
    responses((status = 200, body = QueueView), (status = 404, body = ProblemView)))]
async fn get_queue(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetQueue>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = GetQueue {
        id,
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let queue = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &queue))
}

/// Change a queue's pools or policy (admin).
#[utoipa::path(patch, path = "/api/v1/queues/{id}", tag = "queues", params(("id" = String, Path, description = "Queue id")),
    request_body = UpdateQueueInput,
    responses((status = 200, body = QueueView), (status = 404, body = ProblemView), (status = 422, body = ProblemView)))]
async fn update_queue(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<UpdateQueue>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<UpdateQueueInput>,
) -> Result<Response, GatewayError> {
    let trace_id = context.trace_id.clone();
    let queue = ask(&state, context, UpdateQueue { id, input }).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &queue))
}

/// Delete a queue with no pending or running job (admin; not `default`).
#[utoipa::path(delete, path = "/api/v1/queues/{id}", tag = "queues", params(("id" = String, Path, description = "Queue id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ProblemView), (status = 409, body = ProblemView)))]
async fn delete_queue(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<DeleteQueue>,
    Path(id): Path<String>,
) -> Result<Response, GatewayError> {
    let _ = ask(&state, context, DeleteQueue { id }).await?;
    Ok(axum::response::IntoResponse::into_response(
        StatusCode::NO_CONTENT,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListWorkersParams {
    /// Only the workers of this pool.
    pool: Option<String>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// List the registered workers, live and lost.
#[utoipa::path(get, path = "/api/v1/workers", tag = "workers", params(ListWorkersParams),
    responses((status = 200, body = WorkerListView), (status = 403, description = "Not an admin: workers carry every tenant's jobs", body = ProblemView)))]
async fn list_workers(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListWorkers>,
    params: QueryResult<ListWorkersParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let request = ListWorkers {
        pool: params.pool.filter(|pool| !pool.is_empty()),
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let workers = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &workers))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FairShareParams {
    /// The window in seconds, from 1 to `retention.finished_in_memory_s` (300 by default;
    /// default window `scheduling.fair_share_window_s`, 60).
    window_s: Option<String>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// Each tenant's weight, fair share, actual share of the queue's pools over the window,
/// backlog, and Jain's index over the backlogged tenants.
#[utoipa::path(get, path = "/api/v1/queues/{id}/fair-share", tag = "queues", params(("id" = String, Path, description = "Queue id"), FairShareParams),
    responses((status = 200, body = FairShareView), (status = 404, body = ProblemView), (status = 422, body = ProblemView)))]
async fn fair_share(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetFairShare>,
    Path(id): Path<String>,
    params: QueryResult<FairShareParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let window_s = params
        .window_s
        .as_deref()
        .map(|raw| {
            raw.parse::<u64>().map_err(|_| {
                GatewayError::invalid(
                    "window_s",
                    format!("must be a whole number of seconds, got `{raw}`"),
                )
            })
        })
        .transpose()?;
    let request = GetFairShare {
        queue: id,
        window_s,
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let report = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &report))
}

/// The status of every queue.
#[utoipa::path(get, path = "/api/v1/queues/status", tag = "queues", params(ReadParams),
    responses((status = 200, body = QueueStatusListView)))]
async fn all_queue_status(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<ListQueueStatus>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = ListQueueStatus {
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let report = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &report))
}

/// One queue's status: pending and running by tenant and priority, oldest pending age,
/// dispatch rate and estimated wait.
#[utoipa::path(get, path = "/api/v1/queues/{id}/status", tag = "queues", params(("id" = String, Path, description = "Queue id"), ReadParams),
    responses((status = 200, body = QueueStatusView), (status = 404, body = ProblemView)))]
async fn queue_status(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetQueueStatus>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = GetQueueStatus {
        queue: id,
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let one = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &one))
}

/// The job's position in its queue and every reason it is still pending.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/position", tag = "jobs", params(("id" = String, Path, description = "Job id"), ReadParams),
    responses((status = 200, body = JobPositionView), (status = 404, body = ProblemView)))]
async fn job_position(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetJobPosition>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = GetJobPosition {
        id,
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let report = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &report))
}

/// The job's SLA: level, target, status now, predicted start and how it was predicted,
/// and every recorded status change.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/sla", tag = "jobs", params(("id" = String, Path, description = "Job id"), ReadParams),
    responses((status = 200, body = JobSlaView), (status = 404, description = "No such job, or it has no SLA", body = ProblemView)))]
async fn job_sla(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetJobSla>,
    Path(id): Path<String>,
    params: QueryResult<ReadParams>,
) -> Result<Response, GatewayError> {
    let request = GetJobSla {
        id,
        consistency: consistency(params)?,
    };
    let trace_id = context.trace_id.clone();
    let report = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &report))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SlaSummaryParams {
    tenant: Option<String>,
    /// critical | high | medium | low | best_effort
    level: Option<String>,
    /// `linearizable` (default) or `stale`.
    consistency: Option<String>,
}

/// SLA compliance by tenant and level: met, violated, still open by status, and the ratio.
#[utoipa::path(get, path = "/api/v1/sla/summary", tag = "jobs", params(SlaSummaryParams),
    responses((status = 200, body = SlaSummaryView), (status = 422, body = ProblemView)))]
async fn sla_summary(
    State(state): State<RestState>,
    Context(context): Context,
    _: Authorized<GetSlaSummary>,
    params: QueryResult<SlaSummaryParams>,
) -> Result<Response, GatewayError> {
    let params = query(params)?;
    let request = GetSlaSummary {
        tenant: params.tenant,
        level: params.level,
        consistency: Consistency::parse(params.consistency.as_deref())?,
    };
    let trace_id = context.trace_id.clone();
    let report = ask(&state, context, request).await?;
    Ok(json_reply(StatusCode::OK, &trace_id, &report))
}

//! The gateway's job, queue and worker operations: submit (one or a batch, one Raft entry
//! either way), read, list, cancel, logs and watch; queue CRUD; the worker list.

use tokio::sync::{broadcast, mpsc};
use tracing::info;

use crate::actors::gateway::{Handler, propose_for, read_barrier, require_access};
use crate::actors::gateway_reports;
use crate::actors::{NodeContext, now_ms};
use crate::gateway::job_model::{
    BatchItemView, BatchView, JobFilter, JobLogsView, JobPageView, JobView, MAX_BATCH,
    SubmitJobInput, SubmittedJobView,
};
use crate::gateway::model::PageInput;
use crate::gateway::model::page_size;
use crate::gateway::operations::{
    CancelJob, GetJob, GetJobLogs, GetJobPosition, GetJobSla, GetSlaSummary, ListJobs, SubmitJob,
    SubmitJobs, WatchJob,
};
use crate::gateway::report_model::{JobPositionView, JobSlaView, SlaSummaryView};
use crate::gateway::{Consistency, ErrorCode, GatewayError, Principal, RequestContext};
use crate::state::command;
use crate::state::jobs::SubmittedJob;
use crate::state::{CommandOutcome, CommandV1, DomainEvent};
use hodei_domain::DomainError;
use hodei_domain::job::{CommandSpec, Job, JobSpec, JobState, Priority, Simulation, SlaChange};
use hodei_domain::queue::DEFAULT_QUEUE_ID;
use hodei_domain::resources::Resources;
use hodei_domain::sla::{SlaLevel, SlaSpec, SlaStatus};
use hodei_domain::tenant::TenantId;

/// What a job asks for when it names no resources.
pub const DEFAULT_JOB_RESOURCES: Resources = Resources {
    cpu_m: 1_000,
    memory_mb: 512,
    gpu: 0,
};

impl Handler for SubmitJob {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<SubmittedJobView, GatewayError> {
        let SubmitJob { input } = self;
        submit(&node, &context, *input).await
    }
}

impl Handler for SubmitJobs {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<BatchView, GatewayError> {
        let SubmitJobs { inputs } = self;
        submit_batch(&node, &context, inputs).await
    }
}

impl Handler for GetJob {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobView, GatewayError> {
        let GetJob { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        let burst = max_burst_percent(&node);
        let view = node.read(|state| {
            gateway_reports::visible_job(state, &context, &id).map(|(job, source)| {
                gateway_reports::full_job_view(state, &job, burst).from_source(source.as_str())
            })
        })?;
        Ok(view)
    }
}

impl Handler for ListJobs {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobPageView, GatewayError> {
        let ListJobs {
            filter,
            page,
            consistency,
        } = self;
        list_jobs(&node, &context, filter, page, consistency).await
    }
}

impl Handler for CancelJob {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobView, GatewayError> {
        let CancelJob { id } = self;
        node.read(|state| {
            let (job, _) = gateway_reports::visible_job(state, &context, &id)?;
            if job.state.is_final() {
                return Err(GatewayError::from(DomainError::Conflict(format!(
                    "job {id} is already {}; only pending, assigned or running jobs can be cancelled",
                    job.state.as_str()
                ))));
            }
            Ok(())
        })?;
        let command = CommandV1::CancelJob(command::CancelJob {
            id,
            cancelled_by: context.principal.to_string(),
            at_ms: now_ms(),
        });
        match propose_for(&node, &context, command).await? {
            CommandOutcome::Job(job) => {
                info!(job = %job.id, principal = %context.principal, "job cancelled");
                Ok(job_summary_view(&job))
            }
            other => Err(unexpected(other)),
        }
    }
}

impl Handler for GetJobLogs {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobLogsView, GatewayError> {
        let GetJobLogs {
            id,
            stream,
            consistency,
        } = self;
        let stream = match stream.as_deref().filter(|raw| !raw.is_empty()) {
            None | Some("all") => "all",
            Some("stdout") => "stdout",
            Some("stderr") => "stderr",
            Some(other) => {
                return Err(GatewayError::invalid(
                    "stream",
                    format!("must be all, stdout or stderr, got `{other}`"),
                ));
            }
        };
        read_barrier(&node, consistency).await?;
        let view = node.read(|state| {
            gateway_reports::visible_job(state, &context, &id).map(|(job, _)| {
                let log_key = match stream {
                    "all" => job.id.clone(),
                    one => crate::state::keys::stream_key(&job.id, one),
                };
                JobLogsView {
                    id: job.id.clone(),
                    state: job.state.as_str().to_string(),
                    stream: stream.to_string(),
                    output_tail: state.find_output(&job.id, &log_key).unwrap_or_default(),
                }
            })
        })?;
        Ok(view)
    }
}

impl Handler for WatchJob {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<mpsc::Receiver<JobView>, GatewayError> {
        let WatchJob { id } = self;
        watch(&node, &context, id)
    }
}

impl Handler for GetJobPosition {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobPositionView, GatewayError> {
        let GetJobPosition { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        let burst = max_burst_percent(&node);
        node.read(|state| {
            let (job, _) = gateway_reports::visible_job(state, &context, &id)?;
            Ok(JobPositionView {
                id: job.id.clone(),
                state: job.state.as_str().to_string(),
                queue: job.spec.queue.clone(),
                position: state.queue_position(&job).map(|position| position as u64),
                reasons: gateway_reports::pending_reasons(state, &job, burst),
            })
        })
    }
}

impl Handler for GetJobSla {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<JobSlaView, GatewayError> {
        let GetJobSla { id, consistency } = self;
        read_barrier(&node, consistency).await?;
        let window_ms = node.limits.fair_share_window.as_millis() as u64;
        node.read(|state| {
            let (job, _) = gateway_reports::visible_job(state, &context, &id)?;
            gateway_reports::job_sla(state, &job, now_ms(), window_ms).ok_or_else(|| {
                GatewayError::new(
                    ErrorCode::NotFound,
                    format!("job `{id}` has no SLA: give `sla` when submitting it"),
                )
            })
        })
    }
}

impl Handler for GetSlaSummary {
    async fn handle(
        self,
        node: NodeContext,
        context: RequestContext,
    ) -> Result<SlaSummaryView, GatewayError> {
        let GetSlaSummary {
            tenant,
            level,
            consistency,
        } = self;
        let tenant = tenant
            .as_deref()
            .filter(|raw| !raw.is_empty())
            .map(TenantId::parse)
            .transpose()?;
        if let Some(tenant) = &tenant {
            require_access(&context, tenant)?;
        }
        let level = level
            .as_deref()
            .filter(|raw| !raw.is_empty())
            .map(|raw| SlaLevel::parse("level", raw))
            .transpose()?;
        read_barrier(&node, consistency).await?;
        Ok(node.read(|state| {
            gateway_reports::sla_summary(state, &context.principal, tenant.as_ref(), level)
        }))
    }
}

pub(super) fn unexpected(outcome: CommandOutcome) -> GatewayError {
    GatewayError::internal(format!("unexpected state machine outcome: {outcome:?}"))
}

/// The job without the costly position; lists and submit answers.
pub fn job_summary_view(job: &Job) -> JobView {
    JobView::new(job, None, None)
}

/// Turns an input into a job: defaults, the tenant the principal may use, validation.
/// The most bytes of one secret variable's value (sealed, it takes about twice as many).
const MAX_SECRET_VALUE_BYTES: usize = 8 * 1024;

/// `env` with the secret variables added, sealed (`crate::gateway::secrets`).
fn with_secrets(
    node: &NodeContext,
    tenant: &TenantId,
    mut env: std::collections::BTreeMap<String, String>,
    secrets: std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, GatewayError> {
    if let Some((name, _)) = env
        .iter()
        .find(|(_, value)| crate::gateway::secrets::is_sealed(value))
    {
        return Err(GatewayError::invalid(
            format!("command.env.{name}"),
            format!(
                "values starting `{}` are reserved for sealed secrets: put the value in command.secret_env",
                crate::gateway::secrets::SEALED_PREFIX
            ),
        ));
    }
    if secrets.is_empty() {
        return Ok(env);
    }
    let Some(sealer) = &node.secrets else {
        return Err(GatewayError::invalid(
            "command.secret_env",
            "this cluster has no cluster.secret to seal secrets with: set HODEI_CLUSTER_SECRET on every member",
        ));
    };
    for (name, value) in secrets {
        let field = format!("command.secret_env.{name}");
        if env.contains_key(&name) {
            return Err(GatewayError::invalid(
                field,
                "is also in command.env: give it once",
            ));
        }
        if value.len() > MAX_SECRET_VALUE_BYTES || value.contains('\0') {
            return Err(GatewayError::invalid(
                field,
                format!("a secret value is at most {MAX_SECRET_VALUE_BYTES} bytes, without NUL"),
            ));
        }
        let sealed = sealer.seal(tenant.as_str(), &name, &value)?;
        env.insert(name, sealed);
    }
    Ok(env)
}

fn build_job(
    node: &NodeContext,
    context: &RequestContext,
    input: SubmitJobInput,
) -> Result<Job, GatewayError> {
    let tenant = match (input.tenant.as_deref(), &context.principal) {
        (Some(raw), _) if !raw.is_empty() => TenantId::parse(raw).map_err(GatewayError::from)?,
        (_, Principal::Tenant(own)) => own.clone(),
        (_, Principal::Admin) => TenantId::default_tenant(),
    };
    require_access(context, &tenant)?;
    let priority = match input.priority.as_deref() {
        None | Some("") => Priority::default(),
        Some(raw) => Priority::parse(raw)?,
    };
    let command = input.command.unwrap_or_default();
    let env = with_secrets(node, &tenant, command.env, command.secret_env)?;
    let spec = JobSpec {
        tenant,
        queue: input
            .queue
            .filter(|queue| !queue.is_empty())
            .unwrap_or_else(|| DEFAULT_QUEUE_ID.to_string()),
        priority,
        resources: input
            .resources
            .map(Resources::from)
            .unwrap_or(DEFAULT_JOB_RESOURCES),
        command: CommandSpec {
            argv: command.argv,
            env,
            working_dir: command.working_dir,
            timeout_s: command.timeout_s,
        },
        simulate: input.simulate.map(|simulation| Simulation {
            duration_ms: simulation.duration_ms,
            exit_code: simulation.exit_code,
            used_percent: simulation.used_percent,
        }),
        labels: input.labels,
        max_retries: input.max_retries.unwrap_or(0),
        idempotency_key: input.idempotency_key,
        pool_selector: input.pool_selector,
        sla: input
            .sla
            .map(|sla| -> Result<SlaSpec, GatewayError> {
                let level = match sla.level.as_deref().filter(|raw| !raw.is_empty()) {
                    Some(raw) => SlaLevel::parse("sla.level", raw)?,
                    None if sla.start_by_ms.is_some() || sla.finish_by_ms.is_some() => {
                        SlaLevel::BestEffort
                    }
                    None => {
                        return Err(GatewayError::invalid(
                            "sla",
                            "give a level (critical | high | medium | low | best_effort), start_by_ms or finish_by_ms",
                        ));
                    }
                };
                Ok(SlaSpec {
                    level,
                    start_by_ms: sla.start_by_ms,
                    finish_by_ms: sla.finish_by_ms,
                })
            })
            .transpose()?,
    };
    spec.validate()?;
    spec.validate_submission()?;
    let submitted_at_ms = now_ms();
    if let Some(sla) = &spec.sla {
        sla.validate(submitted_at_ms)?;
    }
    node.read(|state| {
        // Checked here, not in apply: logged submits of a tenant suspended since must
        // replay as they applied. A suspend racing a submit leaves the job pending with
        // the reason `tenant_suspended`.
        if let Some(tenant) = state.tenant(&spec.tenant)
            && tenant.status != hodei_domain::tenant::TenantStatus::Active
        {
            return Err(DomainError::Conflict(format!(
                "tenant `{}` is {}: it may not submit jobs until it is active again",
                spec.tenant,
                tenant.status.as_str()
            )));
        }
        // The tenant's limits are checked by apply, which counts a refusal as a quota
        // violation cluster-wide.
        state.check_placement(&spec)
    })?;
    let targets = node.limits.sla_targets;
    let mut job = Job::new(uuid::Uuid::now_v7().to_string(), spec, submitted_at_ms);
    if let Some(sla) = job.spec.sla {
        job.sla_target_start_ms = Some(sla.start_target_ms(submitted_at_ms, &targets));
        job.sla_history.push(SlaChange {
            status: SlaStatus::OnTrack,
            at_ms: submitted_at_ms,
        });
    }
    Ok(job)
}

pub(super) fn max_burst_percent(node: &NodeContext) -> Option<u64> {
    node.limits
        .burst
        .enabled
        .then_some(node.limits.burst.max_overage_percentage)
}

/// The job a caller gets back: the one it submitted, or the earlier one its idempotency
/// key repeats.
fn submitted_view(sent: &Job, submitted: &SubmittedJob) -> SubmittedJobView {
    SubmittedJobView {
        job: job_summary_view(submitted.earlier.as_deref().unwrap_or(sent)),
        duplicate: submitted.is_duplicate(),
    }
}

/// The job a submission stored. It is the one sent, unless the answer came from the
/// recent request ids (this call repeats one whose reply was lost): then the first
/// attempt's job, read here once this node has applied it.
async fn stored_job(
    node: &NodeContext,
    sent: &Job,
    submitted: &SubmittedJob,
) -> Result<Job, GatewayError> {
    if submitted.earlier.is_some() || submitted.id == sent.id {
        return Ok(sent.clone());
    }
    read_barrier(node, Consistency::Linearizable).await?;
    node.read(|state| {
        state
            .find_job(&submitted.id)
            .map(|(job, _)| job.into_owned())
    })
    .ok_or_else(|| GatewayError::from(DomainError::not_found("job", submitted.id.clone())))
}

async fn submit(
    node: &NodeContext,
    context: &RequestContext,
    input: SubmitJobInput,
) -> Result<SubmittedJobView, GatewayError> {
    let job = build_job(node, context, input)?;
    let command = CommandV1::SubmitJobs(command::SubmitJobs {
        jobs: vec![job.clone()],
        max_burst_percent: max_burst_percent(node),
    });
    match propose_for(node, context, command).await? {
        CommandOutcome::JobsSubmitted(mut results) if results.len() == 1 => {
            let submitted = results.remove(0)?;
            let stored = stored_job(node, &job, &submitted).await?;
            let mut view = submitted_view(&stored, &submitted);
            // A job its quota holds back says so at once (`needs_burst` above all: no
            // wait ends it without a burst session).
            if view.job.state == "pending" {
                let burst = max_burst_percent(node);
                view.job.pending_reason = node.read(|state| {
                    let tenant = state.tenant(&stored.spec.tenant)?;
                    gateway_reports::quota_reasons(
                        state,
                        &stored.spec.tenant,
                        stored.spec.resources,
                        tenant,
                        burst,
                    )
                    .into_iter()
                    .next()
                    .map(|found| format!("{}: {}", found.code, found.message))
                });
            }
            Ok(view)
        }
        other => Err(unexpected(other)),
    }
}

async fn submit_batch(
    node: &NodeContext,
    context: &RequestContext,
    inputs: Vec<SubmitJobInput>,
) -> Result<BatchView, GatewayError> {
    if inputs.len() > MAX_BATCH {
        return Err(GatewayError {
            field: Some("jobs".to_string()),
            ..GatewayError::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "jobs: at most {MAX_BATCH} jobs in one batch, got {}",
                    inputs.len()
                ),
            )
        });
    }
    if inputs.is_empty() {
        return Err(GatewayError::invalid("jobs", "must hold at least one job"));
    }
    let mut results: Vec<Option<Result<SubmittedJobView, GatewayError>>> = Vec::new();
    let mut jobs = Vec::new();
    for input in inputs {
        match build_job(node, context, input) {
            Ok(job) => {
                jobs.push(job);
                results.push(None);
            }
            Err(error) => results.push(Some(Err(error))),
        }
    }
    if !jobs.is_empty() {
        let command = CommandV1::SubmitJobs(command::SubmitJobs {
            jobs: jobs.clone(),
            max_burst_percent: max_burst_percent(node),
        });
        let CommandOutcome::JobsSubmitted(applied) = propose_for(node, context, command).await?
        else {
            return Err(GatewayError::internal("unexpected state machine outcome"));
        };
        let mut applied = applied.into_iter().zip(&jobs);
        for slot in results.iter_mut().filter(|slot| slot.is_none()) {
            let Some((result, sent)) = applied.next() else {
                break;
            };
            *slot = Some(match result {
                Ok(submitted) => stored_job(node, sent, &submitted)
                    .await
                    .map(|stored| submitted_view(&stored, &submitted)),
                Err(error) => Err(GatewayError::from(error)),
            });
        }
    }
    let mut view = BatchView {
        accepted: 0,
        refused: 0,
        results: Vec::with_capacity(results.len()),
    };
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Some(Ok(submitted)) => {
                view.accepted += 1;
                view.results.push(BatchItemView {
                    index,
                    job: Some(submitted.job),
                    duplicate: submitted.duplicate,
                    status: None,
                    error: None,
                    field: None,
                });
            }
            Some(Err(error)) => {
                view.refused += 1;
                view.results.push(BatchItemView {
                    index,
                    job: None,
                    duplicate: false,
                    status: Some(error.code.http_status().as_u16()),
                    error: Some(error.detail.clone()),
                    field: error.field.clone(),
                });
            }
            None => return Err(GatewayError::internal("a batch result is missing")),
        }
    }
    info!(accepted = view.accepted, refused = view.refused, principal = %context.principal, "job batch submitted");
    Ok(view)
}

async fn list_jobs(
    node: &NodeContext,
    context: &RequestContext,
    filter: JobFilter,
    page: PageInput,
    consistency: Consistency,
) -> Result<JobPageView, GatewayError> {
    let limit = page_size(page.limit)?;
    let tenant = filter
        .tenant
        .as_deref()
        .filter(|raw| !raw.is_empty())
        .map(TenantId::parse)
        .transpose()?;
    let tenant = match (&context.principal, tenant) {
        (Principal::Tenant(own), Some(asked)) if own != &asked => {
            return Err(DomainError::Forbidden(format!(
                "{} may not list the jobs of tenant `{asked}`",
                context.principal
            ))
            .into());
        }
        (Principal::Tenant(own), _) => Some(own.clone()),
        (Principal::Admin, asked) => asked,
    };
    let state_filter = match filter.state.as_deref().filter(|raw| !raw.is_empty()) {
        None => None,
        Some(raw) => Some(
            [
                JobState::Pending,
                JobState::Assigned,
                JobState::Running,
                JobState::Succeeded,
                JobState::Failed,
                JobState::TimedOut,
                JobState::Cancelled,
            ]
            .into_iter()
            .find(|state| state.as_str() == raw)
            .ok_or_else(|| {
                GatewayError::invalid(
                    "state",
                    format!("must be one of pending, assigned, running, succeeded, failed, timed_out, cancelled, got `{raw}`"),
                )
            })?,
        ),
    };
    let label = match filter.label.as_deref().filter(|raw| !raw.is_empty()) {
        None => None,
        Some(raw) => Some(
            raw.split_once('=')
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .ok_or_else(|| GatewayError::invalid("label", "must be `key=value`"))?,
        ),
    };
    let queue = filter.queue.filter(|queue| !queue.is_empty());
    let newest_first = match filter.order.as_deref().filter(|raw| !raw.is_empty()) {
        None | Some("oldest") => false,
        Some("newest") => true,
        Some(other) => {
            return Err(GatewayError::invalid(
                "order",
                format!("must be `oldest` or `newest`, got `{other}`"),
            ));
        }
    };
    let cursor = page.cursor.filter(|cursor| !cursor.is_empty());
    if let Some(cursor) = &cursor
        && uuid::Uuid::parse_str(cursor).is_err()
    {
        return Err(GatewayError::invalid(
            "cursor",
            "not a cursor this list returned",
        ));
    }
    read_barrier(node, consistency).await?;
    let keep = |job: &Job| {
        tenant
            .as_ref()
            .is_none_or(|tenant| &job.spec.tenant == tenant)
            && queue.as_ref().is_none_or(|queue| &job.spec.queue == queue)
            && state_filter.is_none_or(|wanted| job.state == wanted)
            && label.as_ref().is_none_or(|(key, value)| {
                job.spec.labels.get(key).is_some_and(|found| found == value)
            })
    };
    // Pending, running and recently finished jobs are in memory; older finished ones in
    // the history. No job is in both, and both are in id (= submit) order: the page is
    // the first `limit` of the two merged.
    let active_only = state_filter.is_some_and(|wanted| !wanted.is_final());
    let (active, history) = node.read(|state| {
        (
            state.jobs_page(cursor.as_deref(), limit + 1, newest_first, keep),
            state.history_reader(),
        )
    });
    // The history is read from disk outside the state lock: apply goes on meanwhile. A
    // job archived in between is in both reads or (read from memory first) in the first.
    let (history, scanned_to) = if active_only {
        (Vec::new(), None)
    } else {
        history.page(
            cursor.as_deref(),
            limit + 1,
            newest_first,
            tenant.as_ref(),
            keep,
        )
    };
    let (items, next_cursor) = merge_pages(active, history, scanned_to, limit, newest_first);
    Ok(JobPageView { items, next_cursor })
}

/// The first `limit` jobs of two disjoint pages in id order (or newest first), as views
/// with their source, and the cursor of the next page. `scanned_to` is where the history's
/// scan stopped short (it examined its budget of entries): the page ends there at most.
fn merge_pages(
    active: Vec<Job>,
    history: Vec<Job>,
    scanned_to: Option<String>,
    limit: usize,
    newest_first: bool,
) -> (Vec<JobView>, Option<String>) {
    let mut merged: Vec<(Job, &str)> = active
        .into_iter()
        .map(|job| (job, "active"))
        .chain(history.into_iter().map(|job| (job, "history")))
        .collect();
    merged.sort_by(|left, right| {
        let order = left.0.id.cmp(&right.0.id);
        if newest_first { order.reverse() } else { order }
    });
    // Archived between the two reads: in both.
    merged.dedup_by(|later, earlier| later.0.id == earlier.0.id);
    if let Some(stop) = &scanned_to {
        // Past `stop` the history was not read: nothing beyond it may be shown yet.
        merged.retain(|(job, _)| {
            if newest_first {
                job.id.as_str() >= stop.as_str()
            } else {
                job.id.as_str() <= stop.as_str()
            }
        });
    }
    let more = merged.len() > limit;
    merged.truncate(limit);
    let items: Vec<JobView> = merged
        .iter()
        .map(|(job, source)| job_summary_view(job).from_source(source))
        .collect();
    let next_cursor = if more || (scanned_to.is_some() && items.len() == limit) {
        items.last().map(|job| job.id.clone())
    } else {
        scanned_to
    };
    (items, next_cursor)
}

fn watch(
    node: &NodeContext,
    context: &RequestContext,
    id: String,
) -> Result<mpsc::Receiver<JobView>, GatewayError> {
    // Subscribe before reading, so no change between the two is missed.
    let mut events = node.read(|state| state.subscribe());
    let burst = max_burst_percent(node);
    let first = node.read(|state| {
        gateway_reports::visible_job(state, context, &id).map(|(job, source)| {
            gateway_reports::full_job_view(state, &job, burst).from_source(source.as_str())
        })
    })?;
    let (sender, receiver) = mpsc::channel(64);
    let node = node.clone();
    tokio::spawn(async move {
        let mut last = first;
        if sender.send(last.clone()).await.is_err() {
            return;
        }
        while !matches!(
            last.state.as_str(),
            "succeeded" | "failed" | "timed_out" | "cancelled"
        ) {
            match events.recv().await {
                Ok(DomainEvent::JobChanged(changed)) if changed == id => {}
                Ok(DomainEvent::StateReplaced) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            }
            let Some(now) = node.read(|state| {
                state
                    .job(&id)
                    .map(|job| gateway_reports::full_job_view(state, job, burst))
            }) else {
                return;
            };
            if now.transitions.len() != last.transitions.len() {
                if sender.send(now.clone()).await.is_err() {
                    return;
                }
                last = now;
            }
        }
    });
    Ok(receiver)
}

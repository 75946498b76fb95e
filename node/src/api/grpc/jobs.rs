//! `hodei.v1.JobService`: the same gateway operations as REST's `/api/v1/jobs` (queues are in
//! `queues.rs`).

use std::pin::Pin;

use hodei_proto::v1 as pb;
use hodei_proto::v1::job_service_server::JobService;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::actors::gateway::GatewayHandle;
use crate::api::grpc::{GrpcGateway, GrpcResult, consistency, non_empty};
use crate::gateway::job_model::{
    CommandInput, JobFilter, JobView, SimulationInput, SubmitJobInput,
};
use crate::gateway::model::{PageInput, ResourcesView};
use crate::gateway::operations::{
    CancelJob, GetJob, GetJobLogs, GetJobPosition, GetJobSla, GetSlaSummary, ListJobs, SubmitJob,
    SubmitJobs, WatchJob,
};

pub fn submit_input(spec: pb::JobSpec) -> SubmitJobInput {
    let command = spec.command.unwrap_or_default();
    SubmitJobInput {
        tenant: non_empty(spec.tenant),
        queue: non_empty(spec.queue),
        priority: non_empty(spec.priority),
        resources: spec.resources.map(|resources| ResourcesView {
            cpu_m: resources.cpu_m,
            memory_mb: resources.memory_mb,
            gpu: resources.gpu,
        }),
        command: Some(CommandInput {
            argv: command.argv,
            env: command.env.into_iter().collect(),
            secret_env: command.secret_env.into_iter().collect(),
            working_dir: command.working_dir,
            timeout_s: command.timeout_s,
        }),
        simulate: spec.simulate.map(|simulation| SimulationInput {
            duration_ms: simulation.duration_ms,
            exit_code: simulation.exit_code,
            used_percent: simulation.used_percent,
        }),
        labels: spec.labels.into_iter().collect(),
        max_retries: spec.max_retries,
        idempotency_key: spec.idempotency_key,
        pool_selector: spec.pool_selector,
        sla: spec.sla.map(|sla| crate::gateway::job_model::SlaInput {
            level: non_empty(sla.level),
            start_by_ms: sla.start_by_ms,
            finish_by_ms: sla.finish_by_ms,
        }),
    }
}

pub fn job_message(view: JobView) -> pb::Job {
    pb::Job {
        id: view.id,
        spec: Some(pb::JobSpec {
            tenant: view.tenant,
            queue: view.queue,
            priority: view.priority,
            resources: Some(pb::JobResources {
                cpu_m: view.resources.cpu_m,
                memory_mb: view.resources.memory_mb,
                gpu: view.resources.gpu,
            }),
            command: Some(pb::JobCommand {
                argv: view.command.argv,
                env: view.command.env.into_iter().collect(),
                secret_env: view.command.secret_env.into_iter().collect(),
                working_dir: view.command.working_dir,
                timeout_s: view.command.timeout_s,
            }),
            simulate: view.simulate.map(|simulation| pb::JobSimulation {
                duration_ms: simulation.duration_ms,
                exit_code: simulation.exit_code,
                used_percent: simulation.used_percent,
            }),
            labels: view.labels.into_iter().collect(),
            max_retries: Some(view.max_retries),
            idempotency_key: view.idempotency_key,
            pool_selector: view.pool_selector,
            sla: view.sla.map(|sla| pb::JobSla {
                level: sla.level.unwrap_or_default(),
                start_by_ms: sla.start_by_ms,
                finish_by_ms: sla.finish_by_ms,
            }),
        }),
        sla_status: view.sla_status,
        source: view.source,
        state: view.state,
        attempt: view.attempt,
        worker: view.worker,
        pool: view.pool,
        exit_code: view.exit_code,
        submitted_at_ms: view.submitted_at_ms,
        transitions: view
            .transitions
            .into_iter()
            .map(|step| pb::JobTransition {
                state: step.state,
                at_ms: step.at_ms,
                reason: step.reason,
            })
            .collect(),
        queue_position: view.queue_position,
        burst: view.burst,
        cost_nanos: view.cost_nanos,
        running_cost_nanos: view.running_cost_nanos,
        usage: view.usage.map(|usage| pb::JobUsage {
            cpu_ms: usage.cpu_ms,
            peak_rss_mb: usage.peak_rss_mb,
            cpu_efficiency_percent: usage.cpu_efficiency_percent,
            memory_efficiency_percent: usage.memory_efficiency_percent,
        }),
    }
}

pub struct JobGrpc {
    grpc: GrpcGateway,
}

impl JobGrpc {
    pub fn new(
        gateway: GatewayHandle,
        authenticator: crate::actors::authenticator::Authenticator,
    ) -> Self {
        Self {
            grpc: GrpcGateway::new(gateway, authenticator),
        }
    }
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::Job, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl JobService for JobGrpc {
    type WatchJobStream = JobStream;

    async fn submit_job(
        &self,
        request: tonic::Request<pb::SubmitJobRequest>,
    ) -> GrpcResult<pb::SubmitJobResponse> {
        let operation = |message: pb::SubmitJobRequest| {
            let input = submit_input(message.job.unwrap_or_default());
            Ok(SubmitJob {
                input: Box::new(input),
            })
        };
        self.grpc
            .call(request, operation, |submitted| pb::SubmitJobResponse {
                job: Some(job_message(submitted.job)),
                duplicate: submitted.duplicate,
            })
            .await
    }

    async fn submit_jobs(
        &self,
        request: tonic::Request<pb::SubmitJobsRequest>,
    ) -> GrpcResult<pb::SubmitJobsResponse> {
        let operation = |message: pb::SubmitJobsRequest| {
            let inputs = message.jobs.into_iter().map(submit_input).collect();
            Ok(SubmitJobs { inputs })
        };
        self.grpc
            .call(request, operation, |batch| pb::SubmitJobsResponse {
                accepted: batch.accepted as u32,
                refused: batch.refused as u32,
                results: batch
                    .results
                    .into_iter()
                    .map(|item| pb::SubmitJobResult {
                        job: item.job.map(job_message),
                        duplicate: item.duplicate,
                        error: item.error,
                        field: item.field,
                    })
                    .collect(),
            })
            .await
    }

    async fn get_job(&self, request: tonic::Request<pb::GetJobRequest>) -> GrpcResult<pb::Job> {
        let operation = |message: pb::GetJobRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetJob {
                id: message.id,
                consistency,
            })
        };
        self.grpc.call(request, operation, job_message).await
    }

    async fn list_jobs(
        &self,
        request: tonic::Request<pb::ListJobsRequest>,
    ) -> GrpcResult<pb::ListJobsResponse> {
        let operation = |message: pb::ListJobsRequest| {
            Ok(ListJobs {
                consistency: consistency(&message.consistency)?,
                filter: JobFilter {
                    tenant: non_empty(message.tenant),
                    queue: non_empty(message.queue),
                    state: non_empty(message.state),
                    label: non_empty(message.label),
                    order: non_empty(message.order),
                },
                page: PageInput {
                    limit: message.limit,
                    cursor: non_empty(message.cursor),
                },
            })
        };
        self.grpc
            .call(request, operation, |page| pb::ListJobsResponse {
                items: page.items.into_iter().map(job_message).collect(),
                next_cursor: page.next_cursor,
            })
            .await
    }

    async fn cancel_job(
        &self,
        request: tonic::Request<pb::CancelJobRequest>,
    ) -> GrpcResult<pb::Job> {
        let operation = |message: pb::CancelJobRequest| Ok(CancelJob { id: message.id });
        self.grpc.call(request, operation, job_message).await
    }

    async fn get_job_logs(
        &self,
        request: tonic::Request<pb::GetJobRequest>,
    ) -> GrpcResult<pb::JobLogs> {
        let operation = |message: pb::GetJobRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetJobLogs {
                id: message.id,
                stream: None,
                consistency,
            })
        };
        self.grpc
            .call(request, operation, |logs| pb::JobLogs {
                id: logs.id,
                state: logs.state,
                output_tail: logs.output_tail,
            })
            .await
    }

    async fn get_job_position(
        &self,
        request: tonic::Request<pb::GetJobRequest>,
    ) -> GrpcResult<pb::JobPosition> {
        let operation = |message: pb::GetJobRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetJobPosition {
                id: message.id,
                consistency,
            })
        };
        self.grpc.call(request, operation, position_message).await
    }

    async fn get_job_sla(
        &self,
        request: tonic::Request<pb::GetJobRequest>,
    ) -> GrpcResult<pb::JobSlaReport> {
        let operation = |message: pb::GetJobRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetJobSla {
                id: message.id,
                consistency,
            })
        };
        self.grpc.call(request, operation, sla_message).await
    }

    async fn get_sla_summary(
        &self,
        request: tonic::Request<pb::SlaSummaryRequest>,
    ) -> GrpcResult<pb::SlaSummary> {
        let operation = |message: pb::SlaSummaryRequest| {
            Ok(GetSlaSummary {
                consistency: consistency(&message.consistency)?,
                tenant: non_empty(message.tenant),
                level: non_empty(message.level),
            })
        };
        self.grpc.call(request, operation, summary_message).await
    }

    async fn watch_job(&self, request: tonic::Request<pb::GetJobRequest>) -> GrpcResult<JobStream> {
        let operation = |message: pb::GetJobRequest| Ok(WatchJob { id: message.id });
        self.grpc
            .call(request, operation, |receiver| {
                let views = ReceiverStream::new(receiver);
                Box::pin(tokio_stream::StreamExt::map(views, |view| {
                    Ok(job_message(view))
                })) as JobStream
            })
            .await
    }
}

fn position_message(view: crate::gateway::report_model::JobPositionView) -> pb::JobPosition {
    pb::JobPosition {
        id: view.id,
        state: view.state,
        queue: view.queue,
        position: view.position,
        reasons: view
            .reasons
            .into_iter()
            .map(|reason| pb::PendingReason {
                code: reason.code,
                message: reason.message,
            })
            .collect(),
    }
}

fn sla_message(view: crate::gateway::report_model::JobSlaView) -> pb::JobSlaReport {
    pb::JobSlaReport {
        id: view.id,
        level: view.level,
        target_start_ms: view.target_start_ms,
        finish_by_ms: view.finish_by_ms,
        status: view.status,
        predicted_start_ms: view.predicted_start_ms,
        prediction_position: view.prediction.as_ref().map(|found| found.position),
        prediction_dispatch_rate_per_s: view.prediction.map(|found| found.dispatch_rate_per_s),
        history: view
            .history
            .into_iter()
            .map(|change| pb::SlaChange {
                status: change.status,
                at_ms: change.at_ms,
            })
            .collect(),
    }
}

fn summary_message(view: crate::gateway::report_model::SlaSummaryView) -> pb::SlaSummary {
    pb::SlaSummary {
        items: view
            .items
            .into_iter()
            .map(|item| pb::SlaSummaryItem {
                tenant: item.tenant,
                level: item.level,
                jobs: item.jobs,
                met: item.met,
                violated: item.violated,
                on_track: item.on_track,
                at_risk: item.at_risk,
                critical: item.critical,
                compliance_ratio: item.compliance_ratio,
            })
            .collect(),
    }
}

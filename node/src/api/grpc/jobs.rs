//! `hodei.v1.JobService`: the same gateway operations as REST's `/api/v1/jobs` (queues are in
//! `queues.rs`).

use std::pin::Pin;

use hodei_proto::v1 as pb;
use hodei_proto::v1::job_service_server::JobService;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use crate::actors::gateway::{GatewayHandle, Handler};
use crate::api::grpc::{grpc_span, reply, request_context, with_trace, with_trace_status};
use crate::gateway::job_model::{
    CommandInput, JobFilter, JobView, SimulationInput, SubmitJobInput,
};
use crate::gateway::model::{PageInput, ResourcesView};
use crate::gateway::operations::{
    CancelJob, GetJob, GetJobLogs, GetJobPosition, GetJobSla, GetSlaSummary, ListJobs, SubmitJob,
    SubmitJobs, WatchJob,
};
use crate::gateway::{Consistency, GatewayError, Principal, RequestContext};

type GrpcResult<T> = Result<tonic::Response<T>, tonic::Status>;

pub(super) fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

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
            working_dir: command.working_dir,
            timeout_s: command.timeout_s,
        }),
        simulate: spec.simulate.map(|simulation| SimulationInput {
            duration_ms: simulation.duration_ms,
            exit_code: simulation.exit_code,
        }),
        labels: spec.labels.into_iter().collect(),
        max_retries: spec.max_retries,
        idempotency_key: spec.idempotency_key,
        pool_selector: spec.pool_selector,
        sla: spec.sla.map(|sla| crate::gateway::job_model::SlaInput {
            level: sla.level,
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
                working_dir: view.command.working_dir,
                timeout_s: view.command.timeout_s,
            }),
            simulate: view.simulate.map(|simulation| pb::JobSimulation {
                duration_ms: simulation.duration_ms,
                exit_code: simulation.exit_code,
            }),
            labels: view.labels.into_iter().collect(),
            max_retries: Some(view.max_retries),
            idempotency_key: view.idempotency_key,
            pool_selector: view.pool_selector,
            sla: view.sla.map(|sla| pb::JobSla {
                level: sla.level,
                start_by_ms: sla.start_by_ms,
                finish_by_ms: sla.finish_by_ms,
            }),
        }),
        sla_status: view.sla_status,
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
    }
}

pub(super) async fn ask<O: Handler>(
    gateway: &GatewayHandle,
    context: RequestContext,
    operation: O,
) -> Result<O::Reply, GatewayError> {
    let span = grpc_span(&context.trace_id);
    gateway.call(context, operation).instrument(span).await
}

pub struct JobGrpc {
    gateway: GatewayHandle,
    default_principal: Principal,
}

impl JobGrpc {
    pub fn new(gateway: GatewayHandle, default_principal: Principal) -> Self {
        Self {
            gateway,
            default_principal,
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
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let input = submit_input(request.into_inner().job.unwrap_or_default());
        let result = ask(
            &self.gateway,
            context,
            SubmitJob {
                input: Box::new(input),
            },
        )
        .await;
        reply(result, &trace_id, |submitted| pb::SubmitJobResponse {
            job: Some(job_message(submitted.job)),
            duplicate: submitted.duplicate,
        })
    }

    async fn submit_jobs(
        &self,
        request: tonic::Request<pb::SubmitJobsRequest>,
    ) -> GrpcResult<pb::SubmitJobsResponse> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let inputs = request
            .into_inner()
            .jobs
            .into_iter()
            .map(submit_input)
            .collect();
        let result = ask(&self.gateway, context, SubmitJobs { inputs }).await;
        reply(result, &trace_id, |batch| pb::SubmitJobsResponse {
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
    }

    async fn get_job(&self, request: tonic::Request<pb::GetJobRequest>) -> GrpcResult<pb::Job> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let result = match Consistency::parse(Some(&message.consistency)) {
            Ok(consistency) => {
                ask(
                    &self.gateway,
                    context,
                    GetJob {
                        id: message.id,
                        consistency,
                    },
                )
                .await
            }
            Err(error) => Err(error),
        };
        reply(result, &trace_id, job_message)
    }

    async fn list_jobs(
        &self,
        request: tonic::Request<pb::ListJobsRequest>,
    ) -> GrpcResult<pb::ListJobsResponse> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let list = ListJobs {
            filter: JobFilter {
                tenant: non_empty(message.tenant),
                queue: non_empty(message.queue),
                state: non_empty(message.state),
                label: non_empty(message.label),
            },
            page: PageInput {
                limit: message.limit,
                cursor: non_empty(message.cursor),
            },
            consistency,
        };
        let result = ask(&self.gateway, context, list).await;
        reply(result, &trace_id, |page| pb::ListJobsResponse {
            items: page.items.into_iter().map(job_message).collect(),
            next_cursor: page.next_cursor,
        })
    }

    async fn cancel_job(
        &self,
        request: tonic::Request<pb::CancelJobRequest>,
    ) -> GrpcResult<pb::Job> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let id = request.into_inner().id;
        let result = ask(&self.gateway, context, CancelJob { id }).await;
        reply(result, &trace_id, job_message)
    }

    async fn get_job_logs(
        &self,
        request: tonic::Request<pb::GetJobRequest>,
    ) -> GrpcResult<pb::JobLogs> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let logs = GetJobLogs {
            id: message.id,
            consistency,
        };
        let result = ask(&self.gateway, context, logs).await;
        reply(result, &trace_id, |logs| pb::JobLogs {
            id: logs.id,
            state: logs.state,
            output_tail: logs.output_tail,
        })
    }

    async fn get_job_position(
        &self,
        request: tonic::Request<pb::GetJobRequest>,
    ) -> GrpcResult<pb::JobPosition> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let result = ask(
            &self.gateway,
            context,
            GetJobPosition {
                id: message.id,
                consistency,
            },
        )
        .await;
        reply(result, &trace_id, position_message)
    }

    async fn get_job_sla(
        &self,
        request: tonic::Request<pb::GetJobRequest>,
    ) -> GrpcResult<pb::JobSlaReport> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let result = ask(
            &self.gateway,
            context,
            GetJobSla {
                id: message.id,
                consistency,
            },
        )
        .await;
        reply(result, &trace_id, sla_message)
    }

    async fn get_sla_summary(
        &self,
        request: tonic::Request<pb::SlaSummaryRequest>,
    ) -> GrpcResult<pb::SlaSummary> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let message = request.into_inner();
        let consistency = Consistency::parse(Some(&message.consistency))
            .map_err(|error| with_trace_status(&error, &trace_id))?;
        let summary = GetSlaSummary {
            tenant: non_empty(message.tenant),
            level: non_empty(message.level),
            consistency,
        };
        let result = ask(&self.gateway, context, summary).await;
        reply(result, &trace_id, summary_message)
    }

    async fn watch_job(&self, request: tonic::Request<pb::GetJobRequest>) -> GrpcResult<JobStream> {
        let context = request_context(&request, &self.default_principal)?;
        let trace_id = context.trace_id.clone();
        let id = request.into_inner().id;
        let receiver = match ask(&self.gateway, context, WatchJob { id }).await {
            Ok(receiver) => receiver,
            Err(error) => return Err(with_trace_status(&error, &trace_id)),
        };
        let stream = tokio_stream::StreamExt::map(ReceiverStream::new(receiver), |view| {
            Ok(job_message(view))
        });
        Ok(with_trace(Box::pin(stream) as JobStream, &trace_id))
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

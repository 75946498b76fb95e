//! `hodei.v1.CostOptimizationService`: the same gateway messages as REST's cost reports,
//! report definitions, breakdown and recommendations.

use hodei_proto::v1 as pb;
use hodei_proto::v1::cost_optimization_service_server::CostOptimizationService;

use crate::actors::gateway::GatewayHandle;
use crate::api::grpc::{GrpcGateway, GrpcResult, consistency, non_empty};
use crate::gateway::cost_model::{
    CostBreakdownView, CostReportDefinitionInput, CostReportDefinitionView, CostReportView,
    RecommendationsView,
};
use crate::gateway::cost_operations::{
    CreateCostReport, DeleteCostReport, GetCostBreakdown, GetCostRecommendations, GetCostReport,
    ListCostReports, RunCostReport,
};

pub struct CostGrpc {
    grpc: GrpcGateway,
}

impl CostGrpc {
    pub fn new(
        gateway: GatewayHandle,
        authenticator: crate::actors::authenticator::Authenticator,
    ) -> Self {
        Self {
            grpc: GrpcGateway::new(gateway, authenticator),
        }
    }
}

fn report_message(view: CostReportView) -> pb::CostReport {
    pb::CostReport {
        from_ms: view.from_ms,
        to_ms: view.to_ms,
        group_by: view.group_by,
        step: view.step,
        items: view
            .items
            .into_iter()
            .map(|item| pb::CostReportItem {
                period_start_ms: item.period_start_ms,
                group: item.group,
                billed_nanos: item.billed_nanos,
                burst_premium_nanos: item.burst_premium_nanos,
                running_nanos: item.running_nanos,
                list_nanos: item.list_nanos,
                runs: item.runs,
                kind: item.kind,
                pool: item.pool,
            })
            .collect(),
        pools: view
            .pools
            .into_iter()
            .map(|pool| pb::PoolCostItem {
                period_start_ms: pool.period_start_ms,
                pool: pool.pool,
                cost_nanos: pool.cost_nanos,
                running_nanos: pool.running_nanos,
                attributed_nanos: pool.attributed_nanos,
                idle_nanos: pool.idle_nanos,
            })
            .collect(),
        total_billed_nanos: view.total_billed_nanos,
        total_burst_premium_nanos: view.total_burst_premium_nanos,
        total_running_nanos: view.total_running_nanos,
        total_runs: view.total_runs,
        total_pool_cost_nanos: view.total_pool_cost_nanos,
        total_idle_nanos: view.total_idle_nanos,
    }
}

fn breakdown_message(view: CostBreakdownView) -> pb::CostBreakdown {
    pb::CostBreakdown {
        from_ms: view.from_ms,
        to_ms: view.to_ms,
        pools: view
            .pools
            .into_iter()
            .map(|pool| pb::PoolBreakdown {
                pool: pool.pool,
                cost_nanos: pool.cost_nanos,
                attributed_nanos: pool.attributed_nanos,
                idle_nanos: pool.idle_nanos,
                utilization_percent: pool.utilization_percent,
                billed_nanos: pool.billed_nanos,
                burst_premium_nanos: pool.burst_premium_nanos,
                tenants: pool
                    .tenants
                    .into_iter()
                    .map(|share| pb::PoolTenantCost {
                        tenant: share.tenant,
                        billed_nanos: share.billed_nanos,
                        list_nanos: share.list_nanos,
                    })
                    .collect(),
            })
            .collect(),
        total_cost_nanos: view.total_cost_nanos,
        total_attributed_nanos: view.total_attributed_nanos,
        total_idle_nanos: view.total_idle_nanos,
        total_billed_nanos: view.total_billed_nanos,
        total_burst_premium_nanos: view.total_burst_premium_nanos,
    }
}

fn recommendations_message(view: RecommendationsView) -> pb::Recommendations {
    pb::Recommendations {
        from_ms: view.from_ms,
        to_ms: view.to_ms,
        items: view
            .items
            .into_iter()
            .map(|item| pb::Recommendation {
                kind: item.kind,
                target: item.target,
                action: item.action,
                evidence: item
                    .evidence
                    .into_iter()
                    .map(|evidence| pb::Evidence {
                        name: evidence.name,
                        value: evidence.value,
                    })
                    .collect(),
                window_saving_nanos: item.window_saving_nanos,
                estimated_monthly_saving_nanos: item.estimated_monthly_saving_nanos,
                confidence: item.confidence,
            })
            .collect(),
        total_monthly_saving_nanos: view.total_monthly_saving_nanos,
    }
}

fn definition_message(view: CostReportDefinitionView) -> pb::ReportDefinition {
    pb::ReportDefinition {
        id: view.id,
        name: view.name,
        group_by: view.group_by,
        step: view.step,
        window_s: view.window_s,
        format: view.format,
        tenant: view.tenant,
        created_at_ms: view.created_at_ms,
    }
}

#[tonic::async_trait]
impl CostOptimizationService for CostGrpc {
    async fn generate_report(
        &self,
        request: tonic::Request<pb::CostReportRequest>,
    ) -> GrpcResult<pb::CostReport> {
        let operation = |message: pb::CostReportRequest| {
            let consistency = consistency(&message.consistency)?;
            Ok(GetCostReport {
                from_ms: message.from_ms,
                to_ms: message.to_ms,
                group_by: non_empty(message.group_by),
                step: non_empty(message.step),
                consistency,
            })
        };
        self.grpc.call(request, operation, report_message).await
    }

    async fn get_cost_breakdown(
        &self,
        request: tonic::Request<pb::CostBreakdownRequest>,
    ) -> GrpcResult<pb::CostBreakdown> {
        let operation = |message: pb::CostBreakdownRequest| {
            Ok(GetCostBreakdown {
                from_ms: message.from_ms,
                to_ms: message.to_ms,
                consistency: consistency(&message.consistency)?,
            })
        };
        self.grpc.call(request, operation, breakdown_message).await
    }

    async fn get_optimization_recommendations(
        &self,
        request: tonic::Request<pb::RecommendationsRequest>,
    ) -> GrpcResult<pb::Recommendations> {
        let operation = |message: pb::RecommendationsRequest| {
            Ok(GetCostRecommendations {
                window: non_empty(message.window),
                consistency: consistency(&message.consistency)?,
            })
        };
        self.grpc
            .call(request, operation, recommendations_message)
            .await
    }

    async fn create_report_definition(
        &self,
        request: tonic::Request<pb::CreateReportDefinitionRequest>,
    ) -> GrpcResult<pb::ReportDefinition> {
        let operation = |message: pb::CreateReportDefinitionRequest| {
            Ok(CreateCostReport {
                input: CostReportDefinitionInput {
                    name: message.name,
                    group_by: non_empty(message.group_by),
                    step: non_empty(message.step),
                    window: non_empty(message.window),
                    format: non_empty(message.format),
                },
            })
        };
        self.grpc.call(request, operation, definition_message).await
    }

    async fn list_report_definitions(
        &self,
        request: tonic::Request<pb::ListReportDefinitionsRequest>,
    ) -> GrpcResult<pb::ReportDefinitions> {
        let operation = |message: pb::ListReportDefinitionsRequest| {
            Ok(ListCostReports {
                consistency: consistency(&message.consistency)?,
            })
        };
        let encode = |view: crate::gateway::cost_model::CostReportDefinitionListView| {
            pb::ReportDefinitions {
                items: view.items.into_iter().map(definition_message).collect(),
            }
        };
        self.grpc.call(request, operation, encode).await
    }

    async fn run_report_definition(
        &self,
        request: tonic::Request<pb::RunReportDefinitionRequest>,
    ) -> GrpcResult<pb::CostReport> {
        let operation = |message: pb::RunReportDefinitionRequest| {
            Ok(RunCostReport {
                id: message.id,
                consistency: consistency(&message.consistency)?,
            })
        };
        let encode = |(_, view): (CostReportDefinitionView, CostReportView)| report_message(view);
        self.grpc.call(request, operation, encode).await
    }

    async fn delete_report_definition(
        &self,
        request: tonic::Request<pb::DeleteReportDefinitionRequest>,
    ) -> GrpcResult<pb::DeleteReportDefinitionResponse> {
        let operation =
            |message: pb::DeleteReportDefinitionRequest| Ok(DeleteCostReport { id: message.id });
        self.grpc
            .call(request, operation, |()| {
                pb::DeleteReportDefinitionResponse {}
            })
            .await
    }
}

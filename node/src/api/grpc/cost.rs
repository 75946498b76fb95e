//! `hodei.v1.CostOptimizationService`: the same gateway messages as REST's cost reports.

use hodei_proto::v1 as pb;
use hodei_proto::v1::cost_optimization_service_server::CostOptimizationService;

use crate::actors::gateway::GatewayHandle;
use crate::api::grpc::{GrpcGateway, GrpcResult, consistency, non_empty};
use crate::gateway::Principal;
use crate::gateway::cost_model::CostReportView;
use crate::gateway::scaling_operations::GetCostReport;

pub struct CostGrpc {
    grpc: GrpcGateway,
}

impl CostGrpc {
    pub fn new(gateway: GatewayHandle, default_principal: Principal) -> Self {
        Self {
            grpc: GrpcGateway::new(gateway, default_principal),
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
            })
            .collect(),
        total_billed_nanos: view.total_billed_nanos,
        total_burst_premium_nanos: view.total_burst_premium_nanos,
        total_running_nanos: view.total_running_nanos,
        total_runs: view.total_runs,
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
}

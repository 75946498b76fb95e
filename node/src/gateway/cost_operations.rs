//! The cost operations of the gateway contract (US-09.5.2, US-09.5.3): reports, stored
//! report definitions, the breakdown and the recommendations.

use crate::gateway::cost_model::{
    CostBreakdownView, CostReportDefinitionInput, CostReportDefinitionListView,
    CostReportDefinitionView, CostReportView, RecommendationsView,
};
use crate::gateway::policy::Access;
use crate::gateway::{Consistency, Operation};
use hodei_domain::access::Scope;

/// A cost report over [from_ms, to_ms), grouped and stepped.
#[derive(Debug, Clone)]
pub struct GetCostReport {
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub group_by: Option<String>,
    pub step: Option<String>,
    pub consistency: Consistency,
}

impl Operation for GetCostReport {
    type Reply = CostReportView;
    const NAME: &'static str = "cost_report";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

/// Runs a stored report definition over its window, ending now.
#[derive(Debug)]
pub struct RunCostReport {
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for RunCostReport {
    type Reply = (CostReportDefinitionView, CostReportView);
    const NAME: &'static str = "run_cost_report";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct CreateCostReport {
    pub input: CostReportDefinitionInput,
}

impl Operation for CreateCostReport {
    type Reply = CostReportDefinitionView;
    const NAME: &'static str = "create_cost_report";
    const ACCESS: Access = Access::Tenant(Scope::AdminOfTenant);
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct ListCostReports {
    pub consistency: Consistency,
}

impl Operation for ListCostReports {
    type Reply = CostReportDefinitionListView;
    const NAME: &'static str = "list_cost_reports";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

#[derive(Debug)]
pub struct DeleteCostReport {
    pub id: String,
}

impl Operation for DeleteCostReport {
    type Reply = ();
    const NAME: &'static str = "delete_cost_report";
    const ACCESS: Access = Access::Tenant(Scope::AdminOfTenant);
    const CHANGES_STATE: bool = true;
}

/// Each pool's cost, used and idle parts, and who used it, over a window.
#[derive(Debug)]
pub struct GetCostBreakdown {
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub consistency: Consistency,
}

impl Operation for GetCostBreakdown {
    type Reply = CostBreakdownView;
    const NAME: &'static str = "cost_breakdown";
    const ACCESS: Access = Access::Admin;
}

/// What could cost less, from the window before now (e.g. `7d`).
#[derive(Debug)]
pub struct GetCostRecommendations {
    pub window: Option<String>,
    pub consistency: Consistency,
}

impl Operation for GetCostRecommendations {
    type Reply = RecommendationsView;
    const NAME: &'static str = "cost_recommendations";
    const ACCESS: Access = Access::Admin;
}

//! The autoscaling (US-09.4) and pool pricing operations of the gateway contract: each
//! struct is one operation's input, its `Reply` the answer.

use crate::gateway::policy::Access;
use crate::gateway::scaling_model::{
    CooldownInput, CooldownView, EvaluationView, FireInput, PolicyInput, PolicyListView,
    PolicyView, ScalingHistoryView, ScalingSwitchInput, ScalingView, TriggerInput, TriggerListView,
    TriggerView,
};
use crate::gateway::{Consistency, Operation};
use hodei_domain::access::Scope;

/// A pool's autoscaling at a glance.
#[derive(Debug)]
pub struct GetScaling {
    pub pool: String,
    pub consistency: Consistency,
}

impl Operation for GetScaling {
    type Reply = ScalingView;
    const NAME: &'static str = "pool_scaling";
    const ACCESS: Access = Access::Admin;
}

/// Turn a pool's autoscaling on or off.
#[derive(Debug)]
pub struct SetScalingSwitch {
    pub pool: String,
    pub input: ScalingSwitchInput,
}

impl Operation for SetScalingSwitch {
    type Reply = ScalingView;
    const NAME: &'static str = "set_pool_scaling";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct ListScalingPolicies {
    pub pool: String,
    pub consistency: Consistency,
}

impl Operation for ListScalingPolicies {
    type Reply = PolicyListView;
    const NAME: &'static str = "list_scaling_policies";
    const ACCESS: Access = Access::Admin;
}

#[derive(Debug)]
pub struct GetScalingPolicy {
    pub pool: String,
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetScalingPolicy {
    type Reply = PolicyView;
    const NAME: &'static str = "get_scaling_policy";
    const ACCESS: Access = Access::Admin;
}

/// Create (POST) or replace (PUT) a scaling policy.
#[derive(Debug)]
pub struct PutScalingPolicy {
    pub pool: String,
    /// From the path (PUT) or the body (POST; drawn when absent).
    pub id: Option<String>,
    /// POST: refused when the id is taken.
    pub create: bool,
    pub input: PolicyInput,
}

impl Operation for PutScalingPolicy {
    type Reply = PolicyView;
    const NAME: &'static str = "put_scaling_policy";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct DeleteScalingPolicy {
    pub pool: String,
    pub id: String,
}

impl Operation for DeleteScalingPolicy {
    type Reply = ();
    const NAME: &'static str = "delete_scaling_policy";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct ListScalingTriggers {
    pub pool: String,
    pub consistency: Consistency,
}

impl Operation for ListScalingTriggers {
    type Reply = TriggerListView;
    const NAME: &'static str = "list_scaling_triggers";
    const ACCESS: Access = Access::Admin;
}

#[derive(Debug)]
pub struct GetScalingTrigger {
    pub pool: String,
    pub id: String,
    pub consistency: Consistency,
}

impl Operation for GetScalingTrigger {
    type Reply = TriggerView;
    const NAME: &'static str = "get_scaling_trigger";
    const ACCESS: Access = Access::Admin;
}

/// Create (POST) or replace (PUT) a scaling trigger.
#[derive(Debug)]
pub struct PutScalingTrigger {
    pub pool: String,
    pub id: Option<String>,
    pub create: bool,
    pub input: TriggerInput,
}

impl Operation for PutScalingTrigger {
    type Reply = TriggerView;
    const NAME: &'static str = "put_scaling_trigger";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct DeleteScalingTrigger {
    pub pool: String,
    pub id: String,
}

impl Operation for DeleteScalingTrigger {
    type Reply = ();
    const NAME: &'static str = "delete_scaling_trigger";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

/// Fire a trigger now: an evaluation with its proposal, recorded.
#[derive(Debug)]
pub struct FireScalingTrigger {
    pub pool: String,
    pub id: String,
    pub input: FireInput,
}

impl Operation for FireScalingTrigger {
    type Reply = EvaluationView;
    const NAME: &'static str = "fire_scaling_trigger";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

#[derive(Debug)]
pub struct GetScalingCooldown {
    pub pool: String,
    pub consistency: Consistency,
}

impl Operation for GetScalingCooldown {
    type Reply = CooldownView;
    const NAME: &'static str = "get_scaling_cooldown";
    const ACCESS: Access = Access::Admin;
}

#[derive(Debug)]
pub struct SetScalingCooldown {
    pub pool: String,
    pub input: CooldownInput,
}

impl Operation for SetScalingCooldown {
    type Reply = CooldownView;
    const NAME: &'static str = "set_scaling_cooldown";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

/// A page of a pool's scaling history, newest first.
#[derive(Debug)]
pub struct GetScalingHistory {
    pub pool: String,
    pub from_ms: Option<u64>,
    pub to_ms: Option<u64>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
    pub consistency: Consistency,
}

impl Operation for GetScalingHistory {
    type Reply = ScalingHistoryView;
    const NAME: &'static str = "scaling_history";
    const ACCESS: Access = Access::Admin;
}

/// Evaluate a pool's autoscaling now; a dry run only answers.
#[derive(Debug)]
pub struct EvaluateScaling {
    pub pool: String,
    pub dry_run: bool,
}

impl Operation for EvaluateScaling {
    type Reply = EvaluationView;
    const NAME: &'static str = "evaluate_scaling";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

/// A pool's prices, tier percentages and price history.
#[derive(Debug)]
pub struct GetPoolPricing {
    pub pool: String,
    pub consistency: Consistency,
}

impl Operation for GetPoolPricing {
    type Reply = crate::gateway::pricing_model::PricingView;
    const NAME: &'static str = "get_pool_pricing";
    const ACCESS: Access = Access::Tenant(Scope::Read);
}

/// Change a pool's prices (from now on) and/or tier percentages.
#[derive(Debug)]
pub struct SetPoolPricing {
    pub pool: String,
    pub input: crate::gateway::pricing_model::PricingInput,
}

impl Operation for SetPoolPricing {
    type Reply = crate::gateway::pricing_model::PricingView;
    const NAME: &'static str = "set_pool_pricing";
    const ACCESS: Access = Access::Admin;
    const CHANGES_STATE: bool = true;
}

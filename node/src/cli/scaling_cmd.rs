//! `hodei pool scaling ...`: a pool's autoscaling over the REST API of any node - its
//! switch, policies, triggers (fired by hand), cooldown, history and evaluations; and
//! `hodei cost report`.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::cli::api::{Api, segment};
use crate::cli::output::{Column, Show, col};
use crate::cli::tenant_cmd::without_nulls;

#[derive(Debug, Subcommand)]
pub enum ScalingCommand {
    /// A pool's autoscaling at a glance: switch, sizes, policies, triggers, cooldown.
    Show {
        /// The pool id.
        pool: String,
        #[command(flatten)]
        api: Api,
    },
    /// Turn a pool's autoscaling on (replicated).
    Enable {
        /// The pool id.
        pool: String,
        #[command(flatten)]
        api: Api,
    },
    /// Turn a pool's autoscaling off (replicated); its size stays where it is.
    Disable {
        /// The pool id.
        pool: String,
        #[command(flatten)]
        api: Api,
    },
    /// List, show, set or delete scaling policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// List, show, set, delete or fire scaling triggers.
    #[command(subcommand)]
    Trigger(TriggerCommand),
    /// Show the cooldowns; with a flag, change it.
    Cooldown {
        /// The pool id.
        pool: String,
        /// No scale-up within this long of the last one.
        #[arg(long)]
        scale_up_s: Option<u64>,
        /// No scale-down within this long of the last change.
        #[arg(long)]
        scale_down_s: Option<u64>,
        /// At most this many workers added in any minute.
        #[arg(long)]
        max_added_per_minute: Option<u32>,
        /// A scale-down goes no lower than the largest size wanted within this window.
        #[arg(long)]
        scale_down_stabilization_s: Option<u64>,
        #[command(flatten)]
        api: Api,
    },
    /// The pool's scaling history, newest first.
    History {
        /// The pool id.
        pool: String,
        /// Entries at or after this time (ms since the epoch).
        #[arg(long)]
        from: Option<u64>,
        /// Entries at or before this time (ms since the epoch).
        #[arg(long)]
        to: Option<u64>,
        /// Page size (1-500, default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// The cursor a previous page printed.
        #[arg(long)]
        cursor: Option<String>,
        #[command(flatten)]
        api: Api,
    },
    /// What the pool's policies and triggers decide now, and why (a dry run unless
    /// `--apply`).
    Evaluate {
        /// The pool id.
        pool: String,
        /// Record the decision and set the size.
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        api: Api,
    },
}

// Parsed once per command line: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The pool's policies.
    List {
        /// The pool id.
        pool: String,
        #[command(flatten)]
        api: Api,
    },
    /// One policy.
    Get {
        /// The pool id.
        pool: String,
        /// The rule's id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Add a policy (without ID: an id is drawn) or replace the one with ID.
    Set {
        /// The pool id.
        pool: String,
        /// The rule's id (without one: an id is drawn).
        id: Option<String>,
        #[command(flatten)]
        fields: PolicyFields,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a policy.
    Delete {
        /// The pool id.
        pool: String,
        /// The rule's id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Debug, Args)]
pub struct PolicyFields {
    /// target_tracking | step_scaling | scheduled | sla_headroom
    #[arg(long = "type")]
    policy_type: String,
    /// utilization | pending_jobs_per_worker | pending_cpu | wait_p95_ms | sla_at_risk
    #[arg(long)]
    metric: Option<String>,
    /// The metric's target (target_tracking).
    #[arg(long)]
    target: Option<f64>,
    /// change_in_capacity (default) | percent_change | exact_capacity (step_scaling).
    #[arg(long)]
    adjustment_type: Option<String>,
    /// A step `LOWER:UPPER:ADJUSTMENT`, either bound empty for none (repeatable).
    #[arg(long = "step", value_parser = parse_step)]
    steps: Vec<Value>,
    /// A cron expression (scheduled), e.g. `0 9 * * MON-FRI`.
    #[arg(long)]
    cron: Option<String>,
    /// An IANA time zone for the cron expression (default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// How long a scheduled window stays open.
    #[arg(long)]
    duration_s: Option<u64>,
    /// The window's smallest size (scheduled).
    #[arg(long)]
    min: Option<u32>,
    /// The window's largest size (scheduled).
    #[arg(long)]
    max: Option<u32>,
    /// The window's size (scheduled).
    #[arg(long)]
    desired: Option<u32>,
    /// The share of each SLA job's time left to start it within (sla_headroom, default 0.8).
    #[arg(long)]
    headroom: Option<f64>,
    /// Store it switched off.
    #[arg(long)]
    disabled: bool,
}

#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// The pool's triggers.
    List {
        /// The pool id.
        pool: String,
        #[command(flatten)]
        api: Api,
    },
    /// One trigger.
    Get {
        /// The pool id.
        pool: String,
        /// The rule's id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Add a trigger (without ID: an id is drawn) or replace the one with ID.
    Set {
        /// The pool id.
        pool: String,
        /// The rule's id (without one: an id is drawn).
        id: Option<String>,
        /// threshold | schedule | manual
        #[arg(long = "type")]
        trigger_type: String,
        /// The metric a threshold compares.
        #[arg(long)]
        metric: Option<String>,
        /// gt | ge | lt | le
        #[arg(long)]
        operator: Option<String>,
        /// The threshold.
        #[arg(long)]
        value: Option<f64>,
        /// Evaluations in a row the threshold must hold (default 1).
        #[arg(long)]
        for_evaluations: Option<u32>,
        /// A cron expression (schedule).
        #[arg(long)]
        cron: Option<String>,
        /// An IANA time zone for the cron expression (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// When fired: add this many workers (negative: remove).
        #[arg(long, allow_hyphen_values = true)]
        adjustment: Option<i64>,
        /// When fired: this size.
        #[arg(long)]
        desired: Option<u32>,
        /// Store it switched off.
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a trigger.
    Delete {
        /// The pool id.
        pool: String,
        /// The rule's id.
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Fire a manual trigger now.
    Fire {
        /// The pool id.
        pool: String,
        /// The rule's id.
        id: String,
        /// The size to ask for (instead of the trigger's action).
        #[arg(long)]
        desired: Option<u32>,
        /// Skip the cooldowns and the per-minute cap (recorded as forced).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        api: Api,
    },
}

fn parse_step(raw: &str) -> Result<Value, String> {
    let parts: Vec<&str> = raw.split(':').collect();
    let [lower, upper, adjustment] = parts[..] else {
        return Err(format!("a step is LOWER:UPPER:ADJUSTMENT, got {raw:?}"));
    };
    let bound = |text: &str| -> Result<Value, String> {
        if text.is_empty() {
            return Ok(Value::Null);
        }
        text.parse::<f64>()
            .map(|number| json!(number))
            .map_err(|_| format!("a step bound is a number or empty, got {text:?}"))
    };
    let adjustment: i64 = adjustment
        .parse()
        .map_err(|_| format!("a step adjustment is a whole number, got {adjustment:?}"))?;
    Ok(json!({ "lower": bound(lower)?, "upper": bound(upper)?, "adjustment": adjustment }))
}

const POLICY: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("TYPE", "/type", Show::Text),
    col("ENABLED", "/enabled", Show::Text),
    col("METRIC", "/metric", Show::Text),
    col("TARGET", "/target", Show::Text),
    col("CRON", "/cron", Show::Text),
    col("DESIRED", "/desired", Show::Text),
    col("HEADROOM", "/headroom", Show::Text),
];

const TRIGGER: &[Column] = &[
    col("ID", "/id", Show::Text),
    col("TYPE", "/type", Show::Text),
    col("ENABLED", "/enabled", Show::Text),
    col("METRIC", "/metric", Show::Text),
    col("OPERATOR", "/operator", Show::Text),
    col("VALUE", "/value", Show::Text),
    col("CRON", "/cron", Show::Text),
    col("ADJUSTMENT", "/adjustment", Show::Text),
    col("DESIRED", "/desired", Show::Text),
    col("LAST FIRED", "/last_fired_ms", Show::Time),
];

const RECORD: &[Column] = &[
    col("SEQ", "/seq", Show::Text),
    col("AT", "/at_ms", Show::Time),
    col("SOURCE", "/source", Show::Text),
    col("FROM", "/from", Show::Text),
    col("TO", "/to", Show::Text),
    col("WANTED", "/recommended", Show::Text),
    col("OUTCOME", "/outcome", Show::Text),
    col("FORCED", "/forced", Show::Text),
    col("REACHED", "/reached_at_ms", Show::Time),
    col("REASON", "/reason", Show::Text),
];

const EVALUATION: &[Column] = &[
    col("POOL", "/pool", Show::Text),
    col("DRY RUN", "/dry_run", Show::Text),
    col("FROM", "/from", Show::Text),
    col("DESIRED", "/desired", Show::Text),
    col("WANTED", "/recommended", Show::Text),
    col("MIN", "/min", Show::Text),
    col("MAX", "/max", Show::Text),
    col("BLOCKED BY", "/blocked_by", Show::Text),
    col("REASON", "/reason", Show::Text),
    col("METRICS", "/metrics", Show::Pairs),
    col("RECORDED", "/recorded/outcome", Show::Text),
];

const COOLDOWN: &[Column] = &[
    col("SCALE UP (s)", "/scale_up_s", Show::Text),
    col("SCALE DOWN (s)", "/scale_down_s", Show::Text),
    col("MAX ADDED / MIN", "/max_added_per_minute", Show::Text),
    col(
        "STABILIZATION (s)",
        "/scale_down_stabilization_s",
        Show::Text,
    ),
    col("UP IN", "/scale_up_remaining_s", Show::Seconds),
    col("DOWN IN", "/scale_down_remaining_s", Show::Seconds),
    col("LAST UP", "/last_scale_up_ms", Show::Time),
    col("LAST DOWN", "/last_scale_down_ms", Show::Time),
];

const OVERVIEW: &[Column] = &[
    col("POOL", "/pool", Show::Text),
    col("ENABLED", "/enabled", Show::Text),
    col("ACTIVE", "/active", Show::Text),
    col("CURRENT", "/current", Show::Text),
    col("DESIRED", "/desired", Show::Text),
    col("MIN", "/min", Show::Text),
    col("MAX", "/max", Show::Text),
    col("POLICIES", "/policies", Show::Text),
    col("TRIGGERS", "/triggers", Show::Text),
    col("LAST", "/last/reason", Show::Text),
];

fn scaling_path(pool: &str, rest: &str) -> String {
    format!("/api/v1/pools/{}/scaling{rest}", segment(pool))
}

/// The path of a pool's policy or trigger (`kind`: policies | triggers).
fn rule_path(pool: &str, kind: &str, id: &str) -> String {
    scaling_path(pool, &format!("/{kind}/{}", segment(id)))
}

/// POST to the collection (a drawn id) or PUT to the id.
async fn put_or_create(
    api: &Api,
    pool: &str,
    kind: &str,
    id: Option<String>,
    body: Value,
) -> anyhow::Result<Value> {
    match id {
        Some(id) => api.put(&rule_path(pool, kind, &id), body).await,
        None => {
            api.post(&scaling_path(pool, &format!("/{kind}")), body)
                .await
        }
    }
}

pub async fn run(command: ScalingCommand) -> anyhow::Result<()> {
    match command {
        ScalingCommand::Show { pool, api } => {
            let mut answer = api.get(&scaling_path(&pool, ""), &[]).await?;
            if matches!(api.output.output, crate::cli::output::Format::Table) {
                // The rules by id in the table; the whole objects in JSON and YAML.
                for list in ["policies", "triggers"] {
                    let ids: Vec<Value> = answer[list]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|rule| rule["id"].clone())
                        .collect();
                    answer[list] = Value::Array(ids);
                }
            }
            api.output.object(&answer, OVERVIEW)
        }
        ScalingCommand::Enable { pool, api } => switch(&api, &pool, true).await,
        ScalingCommand::Disable { pool, api } => switch(&api, &pool, false).await,
        ScalingCommand::Policy(command) => policy(command).await,
        ScalingCommand::Trigger(command) => trigger(command).await,
        ScalingCommand::Cooldown {
            pool,
            scale_up_s,
            scale_down_s,
            max_added_per_minute,
            scale_down_stabilization_s,
            api,
        } => {
            let unchanged = scale_up_s.is_none()
                && scale_down_s.is_none()
                && max_added_per_minute.is_none()
                && scale_down_stabilization_s.is_none();
            let answer = if unchanged {
                api.get(&scaling_path(&pool, "/cooldown"), &[]).await?
            } else {
                let body = without_nulls(json!({
                    "scale_up_s": scale_up_s,
                    "scale_down_s": scale_down_s,
                    "max_added_per_minute": max_added_per_minute,
                    "scale_down_stabilization_s": scale_down_stabilization_s,
                }));
                api.put(&scaling_path(&pool, "/cooldown"), body).await?
            };
            api.output.object(&answer, COOLDOWN)
        }
        ScalingCommand::History {
            pool,
            from,
            to,
            limit,
            cursor,
            api,
        } => {
            let query = [
                ("from", from.map(|value| value.to_string())),
                ("to", to.map(|value| value.to_string())),
                ("limit", limit.map(|value| value.to_string())),
                ("cursor", cursor),
            ];
            let page = api.get(&scaling_path(&pool, "/history"), &query).await?;
            api.output.list(&page, "/items", RECORD)?;
            if matches!(api.output.output, crate::cli::output::Format::Table)
                && let Some(next) = page["next_cursor"].as_str()
            {
                println!("more: --cursor {next}");
            }
            Ok(())
        }
        ScalingCommand::Evaluate { pool, apply, api } => {
            let path = format!("{}?dry_run={}", scaling_path(&pool, "/evaluate"), !apply);
            let answer = api.post(&path, json!({})).await?;
            api.output.object(&answer, EVALUATION)
        }
    }
}

async fn switch(api: &Api, pool: &str, enabled: bool) -> anyhow::Result<()> {
    let answer = api
        .put(&scaling_path(pool, ""), json!({ "enabled": enabled }))
        .await?;
    let word = if enabled { "on" } else { "off" };
    api.output
        .raw_or_line(&answer, &format!("pool {pool}: autoscaling {word}"))
}

async fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::List { pool, api } => {
            let list = api.get(&scaling_path(&pool, "/policies"), &[]).await?;
            api.output.list(&list, "/items", POLICY)
        }
        PolicyCommand::Get { pool, id, api } => {
            let found = api.get(&rule_path(&pool, "policies", &id), &[]).await?;
            api.output.raw(&found)
        }
        PolicyCommand::Set {
            pool,
            id,
            fields,
            api,
        } => {
            let body = without_nulls(json!({
                "type": fields.policy_type,
                "enabled": !fields.disabled,
                "metric": fields.metric,
                "target": fields.target,
                "adjustment_type": fields.adjustment_type,
                "steps": (!fields.steps.is_empty()).then_some(fields.steps),
                "cron": fields.cron,
                "timezone": fields.timezone,
                "duration_s": fields.duration_s,
                "min": fields.min,
                "max": fields.max,
                "desired": fields.desired,
                "headroom": fields.headroom,
            }));
            let answer = put_or_create(&api, &pool, "policies", id, body).await?;
            api.output.object(&answer, POLICY)
        }
        PolicyCommand::Delete { pool, id, api } => {
            let answer = api.delete(&rule_path(&pool, "policies", &id), &[]).await?;
            api.output
                .raw_or_line(&answer, &format!("deleted policy {id} of pool {pool}"))
        }
    }
}

async fn trigger(command: TriggerCommand) -> anyhow::Result<()> {
    match command {
        TriggerCommand::List { pool, api } => {
            let list = api.get(&scaling_path(&pool, "/triggers"), &[]).await?;
            api.output.list(&list, "/items", TRIGGER)
        }
        TriggerCommand::Get { pool, id, api } => {
            let found = api.get(&rule_path(&pool, "triggers", &id), &[]).await?;
            api.output.raw(&found)
        }
        TriggerCommand::Set {
            pool,
            id,
            trigger_type,
            metric,
            operator,
            value,
            for_evaluations,
            cron,
            timezone,
            adjustment,
            desired,
            disabled,
            api,
        } => {
            let body = without_nulls(json!({
                "type": trigger_type,
                "enabled": !disabled,
                "metric": metric,
                "operator": operator,
                "value": value,
                "for_evaluations": for_evaluations,
                "cron": cron,
                "timezone": timezone,
                "adjustment": adjustment,
                "desired": desired,
            }));
            let answer = put_or_create(&api, &pool, "triggers", id, body).await?;
            api.output.object(&answer, TRIGGER)
        }
        TriggerCommand::Delete { pool, id, api } => {
            let answer = api.delete(&rule_path(&pool, "triggers", &id), &[]).await?;
            api.output
                .raw_or_line(&answer, &format!("deleted trigger {id} of pool {pool}"))
        }
        TriggerCommand::Fire {
            pool,
            id,
            desired,
            force,
            api,
        } => {
            let body = without_nulls(json!({ "desired": desired, "force": force }));
            let answer = api
                .post(&format!("{}/fire", rule_path(&pool, "triggers", &id)), body)
                .await?;
            api.output.object(&answer, EVALUATION)
        }
    }
}

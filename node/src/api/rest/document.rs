//! What the OpenAPI document states beyond each operation's own annotations, written once
//! for all operations so that generated clients are right: errors come as
//! `application/problem+json` (RFC 9457); the errors any operation may answer
//! (authentication, the policy, the principal's rate limit with `Retry-After`, a missing
//! leader, a malformed or refused request, and for bodies their size and type); and the
//! rules of the parameters and fields that recur across routes (ids, consistency, page
//! sizes).

use serde_json::{Value, json};

/// The errors every operation may answer, with why.
const COMMON_ERRORS: &[(&str, &str)] = &[
    ("400", "The request is malformed (bad JSON, a bad header)"),
    (
        "401",
        "No valid token (with server.auth: token): send `authorization: Bearer <token>`",
    ),
    (
        "403",
        "The policy refuses this principal this operation or this tenant's resources",
    ),
    (
        "422",
        "A field or parameter breaks a rule; the problem's `field` names it",
    ),
    ("404", "Something the request names does not exist"),
    (
        "409",
        "The current state forbids it (a feature switched off, a resource in use)",
    ),
    ("503", "No leader or no quorum right now; retry later"),
    (
        "504",
        "No answer in time, or a write's outcome is unknown (retry with the same x-request-id)",
    ),
];

/// Why any operation may be answered 429.
const RATE_LIMITED: &str = "too many requests from this principal to this node (server.rate_limit): retry after the seconds in Retry-After";

/// The errors of an operation that takes a body.
const BODY_ERRORS: &[(&str, &str)] = &[
    ("413", "The body is larger than server.max_body_bytes"),
    ("415", "The body is not `application/json`"),
];

fn problem(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/ProblemView" } } }
    })
}

const SLUG: &str = "^[a-z0-9][a-z0-9-]{0,62}$";
/// A name for people: 1 to 64 characters, no control characters.
const NAME: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]{1,64}$";

/// The rules of body fields, by schema and property, merged into what the annotations
/// say.
fn property_rules() -> Vec<(&'static str, &'static str, Value)> {
    let slug = json!({ "pattern": SLUG });
    let provider = json!({ "enum": ["static", "simulated", "process", null] });
    let tier = json!({ "enum": ["free", "standard", "premium", "enterprise", null] });
    let window = json!({ "pattern": "^[1-9][0-9]{0,5}[smhd]$" });
    let group_by =
        json!({ "pattern": "^(tenant|pool|queue|job|label:[A-Za-z0-9][A-Za-z0-9._/-]{0,62})$" });
    // Values are at most 253 bytes: as characters, at most 253 (fewer when not ASCII,
    // which JSON Schema cannot state).
    let labels = json!({
        "maxProperties": hodei_domain::labels::MAX_LABELS,
        "propertyNames": { "pattern": "^[A-Za-z0-9][A-Za-z0-9_./-]{0,62}$" },
        "additionalProperties": { "type": "string", "maxLength": 253, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$" },
    });
    vec![
        ("CreateTenantInput", "id", slug.clone()),
        (
            "CreateTenantInput",
            "weight",
            json!({ "minimum": 0.1, "maximum": 100 }),
        ),
        (
            "UpdateTenantInput",
            "weight",
            json!({ "minimum": 0.1, "maximum": 100 }),
        ),
        ("CreatePoolInput", "id", slug.clone()),
        ("CreatePoolInput", "provider", provider.clone()),
        (
            "CreatePoolInput",
            "max_size",
            json!({ "minimum": 1, "maximum": 10000 }),
        ),
        (
            "CreatePoolInput",
            "min_size",
            json!({ "minimum": 0, "maximum": 10000 }),
        ),
        (
            "UpdatePoolInput",
            "max_size",
            json!({ "minimum": 1, "maximum": 10000 }),
        ),
        (
            "UpdatePoolInput",
            "min_size",
            json!({ "minimum": 0, "maximum": 10000 }),
        ),
        (
            "DynamicInput",
            "provider",
            json!({ "enum": ["simulated", "process", null] }),
        ),
        ("CreateTenantInput", "tier", tier.clone()),
        ("UpdateTenantInput", "tier", tier),
        ("CreateTenantInput", "labels", labels.clone()),
        ("UpdateTenantInput", "labels", labels.clone()),
        ("SubmitJobInput", "labels", labels.clone()),
        ("CreatePoolInput", "labels", labels.clone()),
        ("UpdatePoolInput", "labels", labels),
        ("CostReportDefinitionInput", "window", window),
        ("CostReportDefinitionInput", "group_by", group_by),
        ("EnforceInput", "tenant", json!({ "pattern": SLUG })),
        (
            "UpdateQueueInput",
            "pools",
            json!({ "uniqueItems": true, "items": { "type": "string", "pattern": SLUG } }),
        ),
        (
            "PricingInput",
            "tier_percent",
            json!({ "additionalProperties": { "type": "integer", "minimum": 0, "maximum": 1000 } }),
        ),
        ("CreateQueueInput", "id", slug),
        (
            "PricingInput",
            "burst_premium_percent",
            json!({ "minimum": 100, "maximum": 1000 }),
        ),
        (
            "StaticInput",
            "expected_workers",
            json!({ "items": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,128}$" } }),
        ),
        (
            "QuotaInput",
            "max_pending_jobs",
            json!({ "minimum": 1, "maximum": hodei_domain::quota::MAX_PENDING_JOBS }),
        ),
        (
            "QuotaInput",
            "max_concurrent_jobs",
            json!({ "maximum": hodei_domain::quota::MAX_CONCURRENT_JOBS }),
        ),
        (
            "QuotaInput",
            "cpu_m",
            json!({ "maximum": hodei_domain::quota::MAX_CPU_M }),
        ),
        (
            "QuotaInput",
            "memory_mb",
            json!({ "maximum": hodei_domain::quota::MAX_MEMORY_MB }),
        ),
        (
            "QuotaInput",
            "gpu",
            json!({ "maximum": hodei_domain::quota::MAX_GPU }),
        ),
        (
            "QuotaInput",
            "pool_limits",
            json!({ "propertyNames": { "pattern": SLUG }, "additionalProperties": { "type": "object", "properties": {
                "cpu_m": { "type": "integer", "minimum": 0, "maximum": hodei_domain::quota::MAX_CPU_M },
                "memory_mb": { "type": "integer", "minimum": 0, "maximum": hodei_domain::quota::MAX_MEMORY_MB },
                "gpu": { "type": "integer", "minimum": 0, "maximum": hodei_domain::quota::MAX_GPU },
            } } }),
        ),
        (
            "UpdateTenantInput",
            "display_name",
            json!({ "pattern": "\\S" }),
        ),
        (
            "CreateTenantInput",
            "display_name",
            json!({ "pattern": "\\S" }),
        ),
        (
            "CreateQueueInput",
            "pools",
            json!({ "minItems": 1, "uniqueItems": true, "items": { "type": "string", "pattern": SLUG } }),
        ),
        (
            "StaticInput",
            "health_check_interval_s",
            json!({ "minimum": 1, "maximum": 86400 }),
        ),
        (
            "QuotaInput",
            "daily_cost_budget_usd",
            json!({ "exclusiveMinimum": 0 }),
        ),
        (
            "TokenInput",
            "scopes",
            json!({ "minItems": 1, "items": { "type": "string", "enum": ["read", "submit", "admin-of-tenant"] } }),
        ),
        ("TokenInput", "name", json!({ "pattern": NAME })),
        ("JoinTokenInput", "name", json!({ "pattern": NAME })),
        (
            "PoolActionInput",
            "action",
            json!({ "enum": ["activate", "suspend", "resume", "drain", "decommission"] }),
        ),
        (
            "BatchSubmitInput",
            "jobs",
            json!({ "minItems": 1, "maxItems": 1000 }),
        ),
        (
            "CostReportDefinitionInput",
            "name",
            json!({ "minLength": 1, "maxLength": 200 }),
        ),
        (
            "CostReportDefinitionInput",
            "format",
            json!({ "enum": ["json", "csv", "focus", null] }),
        ),
        (
            "CostReportDefinitionInput",
            "step",
            json!({ "enum": ["hour", "day", null] }),
        ),
        (
            "AddMemberInput",
            "addr",
            json!({ "pattern": "^[A-Za-z0-9.-]+:[1-9][0-9]{0,4}$" }),
        ),
        (
            "PolicyInput",
            "id",
            json!({ "pattern": "^[A-Za-z0-9_-]{1,64}$" }),
        ),
        (
            "TriggerInput",
            "id",
            json!({ "pattern": "^[A-Za-z0-9_-]{1,64}$" }),
        ),
    ]
}

/// The rules of query parameters that recur under one name.
fn query_rule(name: &str, path: &str) -> Option<Value> {
    Some(match name {
        "consistency" => json!({ "type": "string", "enum": ["linearizable", "stale"] }),
        "cascade" => json!({ "type": "string", "enum": ["cancel"] }),
        "limit" if !path.ends_with("/scaling/history") => {
            json!({ "type": "integer", "minimum": 1, "maximum": 1000 })
        }
        "format" => json!({ "type": "string", "enum": ["json", "csv", "focus"] }),
        "stream" => json!({ "type": "string", "enum": ["all", "stdout", "stderr"] }),
        // Empty: every tenant the caller may see.
        "tenant" => json!({ "type": "string", "pattern": "^([a-z0-9][a-z0-9-]{0,62})?$" }),
        "order" => json!({ "type": "string", "enum": ["oldest", "newest"] }),
        "level" => {
            json!({ "type": "string", "enum": ["critical", "high", "medium", "low", "best_effort"] })
        }
        "window" => json!({ "type": "string", "pattern": "^[1-9][0-9]{0,5}[smhd]$" }),
        "window_s" => json!({ "type": "integer", "minimum": 1 }),
        "group_by" => {
            json!({ "type": "string", "pattern": "^(tenant|pool|queue|job|label:[A-Za-z0-9][A-Za-z0-9._/-]{0,62})$" })
        }
        "step" if path == "/api/v1/metrics/historical" => {
            json!({ "type": "integer", "minimum": 10, "maximum": 86400, "multipleOf": 10 })
        }
        "cursor" if path == "/api/v1/tenants" => {
            json!({ "type": "string", "pattern": "^([a-z0-9][a-z0-9-]{0,62})?$" })
        }
        "cursor" if path == "/api/v1/jobs" => {
            json!({ "type": "string", "pattern": "^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})?$" })
        }
        "label" if path == "/api/v1/jobs" => json!({ "type": "string", "pattern": "^[^=]+=" }),
        "limit" if path.ends_with("/scaling/history") => {
            json!({ "type": "integer", "minimum": 1, "maximum": 500 })
        }
        "step" if path.starts_with("/api/v1/cost-reports") => {
            json!({ "type": "string", "enum": ["hour", "day"] })
        }
        "cursor" if path.ends_with("/scaling/history") => {
            json!({ "type": "string", "pattern": "^[0-9]{1,19}$" })
        }
        "state" if path == "/api/v1/jobs" => json!({ "type": "string", "enum": [
            "pending", "assigned", "running", "succeeded", "failed", "timed_out", "cancelled"
        ] }),
        "metric" => json!({ "type": "string", "enum": crate::actors::metrics_history::METRICS
            .iter()
            .map(|(metric, _)| *metric)
            .collect::<Vec<_>>() }),
        _ => return None,
    })
}

/// The schema of a parameter by its name and where it is, when the name has one meaning
/// on every route.
fn parameter_schema(name: &str, location: &str, path: &str) -> Option<Value> {
    let slug = json!({ "type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$" });
    match (location, name) {
        ("query", _) => query_rule(name, path),
        ("path", "id") if path.starts_with("/api/v1/tenants/") => Some(slug),
        ("path", "id") if path.starts_with("/api/v1/jobs/") => {
            Some(json!({ "type": "string", "format": "uuid" }))
        }
        _ => None,
    }
}

/// Unsigned 64-bit fields are stated as such: `int64` would bound them at 2^63 - 1,
/// which the API does not.
fn unsigned(schema: &mut Value) {
    match schema {
        Value::Object(object) => {
            let is_unsigned = object.get("format").and_then(Value::as_str) == Some("int64")
                && object.get("minimum").and_then(Value::as_f64) == Some(0.0);
            if is_unsigned {
                object.insert("format".to_string(), json!("uint64"));
                object.insert("maximum".to_string(), json!(u64::MAX));
            }
            object.values_mut().for_each(unsigned);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned),
        _ => {}
    }
}

/// An optional property whose schema refers to a structure (an `Option` in the API)
/// also takes `null`, which the API reads as absent.
fn nullable_references(schemas: &mut serde_json::Map<String, Value>) {
    let structures: Vec<String> = schemas
        .iter()
        .filter(|(_, schema)| schema.get("properties").is_some())
        .map(|(name, _)| format!("#/components/schemas/{name}"))
        .collect();
    for schema in schemas.values_mut() {
        let required: Vec<String> = schema["required"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, property) in properties.iter_mut() {
            let is_reference = property.as_object().is_some_and(|object| {
                object.len() == 1
                    && object
                        .get("$ref")
                        .and_then(Value::as_str)
                        .is_some_and(|target| structures.iter().any(|name| name == target))
            });
            if is_reference && !required.contains(name) {
                *property = json!({ "oneOf": [property.clone(), { "type": "null" }] });
            }
        }
    }
}

/// Adds the common errors and the recurring parameters' rules to every operation.
pub fn complete(document: &mut Value) {
    unsigned(document);
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        nullable_references(schemas);
    }
    // The cost reports answer CSV (and FOCUS, which is CSV) when asked.
    for path in ["/api/v1/cost-reports", "/api/v1/cost-reports/{id}"] {
        if let Some(Value::Object(content)) = document.pointer_mut(&format!(
            "/paths/{}/get/responses/200/content",
            path.replace('/', "~1")
        )) {
            content.insert(
                "text/csv".to_string(),
                json!({ "schema": { "type": "string" } }),
            );
        }
    }
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (schema, property, rule) in property_rules() {
            if let Some(Value::Object(target)) = schemas
                .get_mut(schema)
                .and_then(|schema| schema.pointer_mut(&format!("/properties/{property}")))
                && let Value::Object(rule) = rule
            {
                target.extend(rule);
            }
        }
    }
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let has_body = operation.get("requestBody").is_some();
            if let Some(parameters) = operation
                .get_mut("parameters")
                .and_then(Value::as_array_mut)
            {
                for parameter in parameters {
                    let name = parameter["name"].as_str().unwrap_or_default().to_string();
                    let location = parameter["in"].as_str().unwrap_or_default().to_string();
                    if let Some(schema) = parameter_schema(&name, &location, path) {
                        parameter["schema"] = schema;
                    }
                }
            }
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            for (status, response) in responses.iter_mut() {
                let is_error = status.parse::<u16>().is_ok_and(|code| code >= 400);
                if let (true, Some(content)) = (
                    is_error,
                    response.get_mut("content").and_then(Value::as_object_mut),
                ) && let Some(json) = content.remove("application/json")
                {
                    content.insert("application/problem+json".to_string(), json);
                }
            }
            // Any operation may meet the principal's rate limit; an operation's own 429 (a
            // full backlog) may also be the limit's.
            let retry_after = json!({ "schema": { "type": "integer" } });
            match responses.get_mut("429").and_then(Value::as_object_mut) {
                Some(own) => {
                    let description = own
                        .get("description")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    own.insert(
                        "description".to_string(),
                        json!(format!("{description}; {RATE_LIMITED}")),
                    );
                    if let Value::Object(headers) =
                        own.entry("headers").or_insert_with(|| json!({}))
                    {
                        headers.entry("Retry-After").or_insert(retry_after);
                    }
                }
                None => {
                    let mut too_many = problem(RATE_LIMITED);
                    too_many["headers"] = json!({ "Retry-After": retry_after });
                    responses.insert("429".to_string(), too_many);
                }
            }
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| problem(description));
            };
            for (status, description) in COMMON_ERRORS {
                add(status, description);
            }
            if has_body {
                for (status, description) in BODY_ERRORS {
                    add(status, description);
                }
            }
        }
    }
}

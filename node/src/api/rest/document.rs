//! What the OpenAPI document states beyond each operation's own annotations, written once
//! for all operations so that generated clients are right: the errors any operation may
//! answer (authentication, the policy, the rate limit, a missing leader, a malformed or
//! refused request, and for bodies their size and type) and the rules of the parameters
//! that recur across routes (ids, consistency, page sizes).

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
    ("503", "No leader or no quorum right now; retry later"),
    (
        "504",
        "No answer in time, or a write's outcome is unknown (retry with the same x-request-id)",
    ),
];

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

/// The schema of a parameter by its name and where it is, when the name has one meaning
/// on every route.
fn parameter_schema(name: &str, location: &str, path: &str) -> Option<Value> {
    let slug = json!({ "type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$" });
    match (location, name) {
        ("query", "consistency") => Some(json!({ "type": "string", "enum": ["linearizable", "stale"] })),
        ("query", "cascade") => Some(json!({ "type": "string", "enum": ["cancel"] })),
        ("query", "limit") => Some(json!({ "type": "integer", "minimum": 1, "maximum": 1000 })),
        ("path", "id") if path.starts_with("/api/v1/tenants/") => Some(slug),
        ("path", "id") if path.starts_with("/api/v1/jobs/") => Some(json!({ "type": "string", "format": "uuid" })),
        _ => None,
    }
}

/// Adds the common errors and the recurring parameters' rules to every operation.
pub fn complete(document: &mut Value) {
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
            let has_path_parameter = path.contains('{');
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
            if has_path_parameter {
                add("404", "Nothing with this id");
            }
        }
    }
}

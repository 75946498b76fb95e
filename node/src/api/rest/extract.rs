//! Extractors whose failures are problem documents naming the field at fault.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::api::rest::RestState;
use crate::gateway::{Consistency, ErrorCode, GatewayError, RequestContext};

/// A query string, or why it could not be read (an unknown parameter, a wrong type).
pub type QueryResult<T> = Result<Query<T>, QueryRejection>;

/// The parameters, or a 422 that says what was wrong with them.
pub fn query<T>(params: QueryResult<T>) -> Result<T, GatewayError> {
    params.map(|Query(params)| params).map_err(|rejection| {
        GatewayError::invalid(
            "query",
            rejection
                .body_text()
                .replace("Failed to deserialize query string: ", ""),
        )
    })
}

/// The query of a read: how fresh it must be.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadParams {
    /// `linearizable` (default) or `stale`.
    pub consistency: Option<String>,
}

pub fn consistency(params: QueryResult<ReadParams>) -> Result<Consistency, GatewayError> {
    Consistency::parse(query(params)?.consistency.as_deref())
}

/// A `limit` query parameter: a whole number (its range is checked by the gateway).
pub fn page_limit(raw: Option<&str>) -> Result<Option<u32>, GatewayError> {
    raw.map(|raw| {
        raw.parse::<u32>().map_err(|_| {
            GatewayError::invalid(
                "limit",
                format!("must be a whole number between 1 and 1000, got `{raw}`"),
            )
        })
    })
    .transpose()
}

/// The principal and trace id of a request.
pub struct Context(pub RequestContext);

impl FromRequestParts<RestState> for Context {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &RestState,
    ) -> Result<Self, Self::Rejection> {
        // The authentication middleware put it there; a route it does not cover has
        // no caller.
        let authenticated = parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .ok_or_else(|| {
                GatewayError::new(ErrorCode::Unauthenticated, "this route serves no principal")
            })?;
        let request_id = match parts.headers.get(crate::gateway::REQUEST_ID_HEADER) {
            None => None,
            Some(value) => Some(value.to_str().map_err(|_| {
                GatewayError::invalid(crate::gateway::REQUEST_ID_HEADER, "must be ASCII")
            })?),
        };
        Ok(Context(authenticated.with_request_id(request_id)?))
    }
}

/// The policy's answer for operation `O`, asked before the handler reads the request's
/// body: a caller who may not run `O`, or (on `/api/v1/tenants/{id}/...`) may not reach
/// that tenant's resources, is told 403, whatever it sent.
pub struct Authorized<O>(std::marker::PhantomData<O>);

impl<O: crate::gateway::Operation> FromRequestParts<RestState> for Authorized<O> {
    type Rejection = GatewayError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &RestState,
    ) -> Result<Self, Self::Rejection> {
        let context = parts.extensions.get::<RequestContext>().ok_or_else(|| {
            GatewayError::new(ErrorCode::Unauthenticated, "this route serves no principal")
        })?;
        let refused = Self::check(parts, context);
        if let Err(error) = &refused {
            state.gateway.audit::<O>(context, Err(error));
        }
        refused
    }
}

impl<O: crate::gateway::Operation> Authorized<O> {
    fn check(parts: &Parts, context: &RequestContext) -> Result<Self, GatewayError> {
        crate::gateway::policy::authorize(
            context,
            crate::gateway::policy::Request::Operation {
                name: O::NAME,
                access: O::ACCESS,
            },
        )?;
        let named_tenant = parts
            .uri
            .path()
            .strip_prefix("/api/v1/tenants/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|id| hodei_domain::tenant::TenantId::parse(id).ok());
        if let Some(owner) = &named_tenant {
            crate::gateway::policy::authorize(
                context,
                crate::gateway::policy::Request::TenantResource {
                    owner,
                    what: O::NAME,
                },
            )?;
        }
        Ok(Self(std::marker::PhantomData))
    }
}

/// A JSON body. Not JSON: 400; wrong content type: 415; too large: 413; a field of the
/// wrong type, missing or unknown: 422 naming it.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<RestState> for ApiJson<T> {
    type Rejection = GatewayError;

    async fn from_request(request: Request, state: &RestState) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(GatewayError::new(
                ErrorCode::UnsupportedMediaType,
                "the body must be JSON with `content-type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let status = rejection.status();
                if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    GatewayError::new(
                        ErrorCode::PayloadTooLarge,
                        "the body is larger than the server accepts (server.max_body_bytes)",
                    )
                } else {
                    GatewayError::new(
                        ErrorCode::BadRequest,
                        format!("could not read the body: {}", rejection.body_text()),
                    )
                }
            })?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// Rewrites every number written with a fraction of zero (`5.0`) as the integer it is;
/// whether any was.
fn normalize(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            let whole = float.fract() == 0.0;
            // Only where a float holds every integer exactly (2^53): a larger one may
            // not be the integer its writer meant, and stays a float (refused).
            let exact = 9_007_199_254_740_992.0;
            let integer = if whole && (0.0..=exact).contains(&float) {
                Some(Value::from(float as u64))
            } else if whole && (-exact..0.0).contains(&float) {
                Some(Value::from(float as i64))
            } else {
                None
            };
            match integer {
                Some(integer) => {
                    *value = integer;
                    true
                }
                None => false,
            }
        }
        Value::Array(items) => {
            // Every item, not only up to the first that changed.
            let mut changed = false;
            for item in items {
                changed |= normalize(item);
            }
            changed
        }
        Value::Object(fields) => {
            let mut changed = false;
            for field in fields.values_mut() {
                changed |= normalize(field);
            }
            changed
        }
        _ => false,
    }
}

/// Decodes a JSON document, naming the path of the value at fault.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, GatewayError> {
    // Every body is a JSON object (serde would also read a struct from an array).
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(GatewayError::new(
            ErrorCode::Unprocessable,
            "the body must be a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let decoded: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = match decoded {
        Ok(value) => value,
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Syntax
                | serde_json::error::Category::Eof
                | serde_json::error::Category::Io => GatewayError::new(
                    ErrorCode::BadRequest,
                    format!("the body is not valid JSON: {inner}"),
                ),
                serde_json::error::Category::Data => {
                    // JSON has one number type: `5.0` is a whole number, as JSON Schema
                    // says, and is read as one.
                    let message = inner.to_string();
                    if message.contains("floating point")
                        && let Ok(mut document) = serde_json::from_slice::<serde_json::Value>(bytes)
                        && normalize(&mut document)
                    {
                        return serde_path_to_error::deserialize(document).map_err(|error| {
                            let path = error.path().to_string();
                            data_error(&path, &error.into_inner())
                        });
                    }
                    data_error(&path, &inner)
                }
            });
        }
    };
    deserializer.end().map_err(|error| {
        GatewayError::new(
            ErrorCode::BadRequest,
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    Ok(value)
}

/// serde's rule in the caller's words: `expected a whole number >= 0`, not `expected u64`;
/// and a value quoted back is cut short (a 300-digit number is not echoed whole).
fn plain_words(rule: &str) -> String {
    let mut rule = rule.to_string();
    for (rust, words) in [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a whole number >= 0"),
        ("expected usize", "expected a whole number >= 0"),
        ("expected i32", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a string", "expected text in quotes"),
    ] {
        if let Some(at) = rule.find(rust)
            && !rule[at + rust.len()..].starts_with(|c: char| c.is_ascii_alphanumeric())
        {
            rule.replace_range(at..at + rust.len(), words);
        }
    }
    if rule.chars().count() > 200 {
        rule = format!("{}...", rule.chars().take(200).collect::<String>());
    }
    rule
}

fn data_error(path: &str, error: &serde_json::Error) -> GatewayError {
    // serde's message ends with " at line L column C": keep the rule only.
    let message = error.to_string();
    let rule = plain_words(message.split(" at line ").next().unwrap_or(&message));
    let unknown_field = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| rule.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string);
    // serde_path_to_error puts an unknown field in the path, but a missing one not.
    let field = match (path, unknown_field) {
        (".", Some(name)) => name,
        (path, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => {
            path.to_string()
        }
        (_, Some(name)) => format!("{path}.{name}"),
        (".", None) => "body".to_string(),
        (path, None) => path.to_string(),
    };
    GatewayError::invalid(field, rule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::model::CreateTenantInput;

    #[test]
    fn whole_numbers_written_with_a_fraction_of_zero_are_read_as_json_schema_says() {
        let input: crate::gateway::model::QuotaInput =
            decode_json(br#"{"cpu_m": 2000.0, "memory_mb": null, "gpu": 1.0}"#).unwrap();
        assert_eq!(input.cpu_m, Some(2000));
        assert_eq!(input.memory_mb, None);
        let error =
            decode_json::<crate::gateway::model::QuotaInput>(br#"{"cpu_m": 2.5}"#).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("cpu_m"), "{error:?}");
        let error = decode_json::<crate::gateway::model::QuotaInput>(b"[]").unwrap_err();
        assert_eq!(error.code, ErrorCode::Unprocessable);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let error =
            decode_json::<CreateTenantInput>(br#"{"id":"a","weight":"heavy"}"#).unwrap_err();
        assert_eq!(error.code, ErrorCode::Unprocessable);
        assert_eq!(error.field.as_deref(), Some("weight"));
        assert!(error.detail.contains("invalid type"), "{}", error.detail);
        assert!(
            error.detail.contains("expected a number"),
            "{}",
            error.detail
        );
        assert!(!error.detail.contains("f64"), "{}", error.detail);
    }

    #[test]
    fn rules_speak_the_callers_words_and_long_values_are_cut() {
        let error = decode_json::<crate::gateway::job_model::SubmitJobInput>(
            br#"{"resources":{"cpu_m":-5}}"#,
        )
        .unwrap_err();
        assert!(
            error.detail.contains("a whole number >= 0"),
            "{}",
            error.detail
        );
        // The wrong value is quoted back in the rule: a 500-character one is cut.
        let long = format!(r#"{{"id":"a","weight":"{}"}}"#, "9".repeat(500));
        let error = decode_json::<CreateTenantInput>(long.as_bytes()).unwrap_err();
        assert!(error.detail.contains("99999"), "{}", error.detail);
        assert!(error.detail.len() < 300, "{}", error.detail);
    }

    #[test]
    fn unknown_field_is_named() {
        let error = decode_json::<CreateTenantInput>(br#"{"id":"a","colour":"red"}"#).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("colour"));
    }

    #[test]
    fn missing_field_is_named() {
        let error = decode_json::<CreateTenantInput>(br#"{"tier":"free"}"#).unwrap_err();
        assert_eq!(error.code, ErrorCode::Unprocessable);
        assert_eq!(error.field.as_deref(), Some("id"));
        assert!(
            error.detail.contains("missing field `id`"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn malformed_json_is_bad_request() {
        for body in [&b"{\"id\":"[..], b"not json", b"{\"id\":\"a\"} trailing"] {
            let error = decode_json::<CreateTenantInput>(body).unwrap_err();
            assert_eq!(
                error.code,
                ErrorCode::BadRequest,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn nested_label_of_wrong_type_names_its_path() {
        let error =
            decode_json::<CreateTenantInput>(br#"{"id":"a","labels":{"team":5}}"#).unwrap_err();
        assert_eq!(error.field.as_deref(), Some("labels.team"));
    }
}

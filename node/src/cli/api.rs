//! The REST side of the CLI: every command but `cluster`, `server`, `dev`, `worker` and
//! `config` is one or a few calls to a node's REST API, printed as a table, JSON or YAML.

use clap::Args;
use reqwest::Method;
use serde_json::Value;

use crate::cli::output::Output;
use crate::gateway::principal::PRINCIPAL_HEADER;

#[derive(Debug, Clone, Args)]
pub struct Api {
    /// REST address of any node.
    #[arg(long, env = "HODEI_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// Act as `admin` or `tenant:<id>` (nodes with `server.auth: none`).
    #[arg(long, env = "HODEI_PRINCIPAL")]
    pub principal: Option<String>,
    /// The bearer token (nodes with `server.auth: token`). Prefer the variable: arguments
    /// are visible to `ps`.
    #[arg(long, env = "HODEI_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The CA certificate (PEM) a node's TLS certificate is checked against (give
    /// `--api https://...`).
    #[arg(long, env = "HODEI_CA_CERT")]
    pub ca_cert: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub output: Output,
}

impl Api {
    /// The URL of `path`: https when a CA is given (a token never goes out in clear to
    /// a node that speaks TLS).
    fn url(&self, path: &str) -> String {
        let api = self.api.trim_end_matches('/');
        let scheme = if self.ca_cert.is_some() {
            "https"
        } else {
            "http"
        };
        let base = match api.split_once("://") {
            Some((_, rest)) => format!("{scheme}://{rest}"),
            None => format!("{scheme}://{api}"),
        };
        format!("{base}{path}")
    }

    /// The URL of `path` with the query pairs that have a value.
    fn url_with(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
    ) -> anyhow::Result<reqwest::Url> {
        let pairs = query
            .iter()
            .filter_map(|(key, value)| value.as_ref().map(|value| (*key, value.as_str())));
        reqwest::Url::parse_with_params(&self.url(path), pairs)
            .map_err(|error| anyhow::anyhow!("--api {}: not a URL ({error})", self.api))
    }

    /// `GET path?query` (query pairs without a value are left out).
    pub async fn get(&self, path: &str, query: &[(&str, Option<String>)]) -> anyhow::Result<Value> {
        let request = self.client().get(self.url_with(path, query)?);
        self.send(request, path).await
    }

    /// `GET path?query` whose answer is text (CSV), not JSON.
    pub async fn get_text(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
    ) -> anyhow::Result<String> {
        let request = self.credentials(self.client().get(self.url_with(path, query)?));
        let response = request
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("cannot reach {}: {error}", self.url(path)))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(text)
        } else {
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            Err(anyhow::anyhow!(problem(status.as_u16(), &body)))
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.with_body(Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.with_body(Method::PUT, path, body).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.with_body(Method::PATCH, path, body).await
    }

    pub async fn delete(
        &self,
        path: &str,
        query: &[(&str, Option<String>)],
    ) -> anyhow::Result<Value> {
        let request = self.client().delete(self.url_with(path, query)?);
        self.send(request, path).await
    }

    async fn with_body(&self, method: Method, path: &str, body: Value) -> anyhow::Result<Value> {
        let request = self.client().request(method, self.url(path)).json(&body);
        self.send(request, path).await
    }

    fn client(&self) -> reqwest::Client {
        let Some(path) = &self.ca_cert else {
            return reqwest::Client::new();
        };
        // A CA that cannot be read or parsed leaves the client trusting nothing: the call
        // then fails rather than trusting the system's roots.
        let ca = std::fs::read(path)
            .map_err(|error| error.to_string())
            .and_then(|pem| {
                reqwest::Certificate::from_pem(&pem).map_err(|error| error.to_string())
            });
        let builder = match ca {
            Ok(ca) => reqwest::Client::builder().tls_certs_only([ca]),
            Err(error) => {
                eprintln!("--ca-cert {}: {error}", path.display());
                reqwest::Client::builder().tls_certs_only([])
            }
        };
        builder.build().unwrap_or_default()
    }

    /// The principal and token this command was given, as headers.
    fn credentials(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(principal) = &self.principal {
            request = request.header(PRINCIPAL_HEADER, principal);
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
    }

    async fn send(&self, request: reqwest::RequestBuilder, path: &str) -> anyhow::Result<Value> {
        let response = self
            .credentials(request)
            .send()
            .await
            .map_err(|error| anyhow::anyhow!("cannot reach {}: {error}", self.url(path)))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            Err(anyhow::anyhow!(problem(status.as_u16(), &body)))
        }
    }
}

/// An RFC 9457 problem as one line: `422 invalid: cpu_m must be ... (field cpu_m, rule ...)`.
pub fn problem(status: u16, body: &Value) -> String {
    let text = |key: &str| body.get(key).and_then(Value::as_str);
    let mut line = format!(
        "{status} {}",
        text("title").unwrap_or("the request was refused")
    );
    if let Some(detail) = text("detail") {
        line.push_str(&format!(": {detail}"));
    }
    match (text("field"), text("rule")) {
        (Some(field), Some(rule)) => line.push_str(&format!(" (field `{field}`, rule {rule})")),
        (Some(field), None) => line.push_str(&format!(" (field `{field}`)")),
        _ => {}
    }
    line
}

/// `key=value` for repeatable flags.
pub fn parse_pair(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("expected key=value, got `{raw}`"))
}

/// `key=value` pairs as a JSON object, or `null` (left out of a body) when there are none.
pub fn pairs_object(pairs: Vec<(String, String)>) -> Value {
    if pairs.is_empty() {
        Value::Null
    } else {
        Value::Object(
            pairs
                .into_iter()
                .map(|(key, value)| (key, value.into()))
                .collect(),
        )
    }
}

/// Path segments are sent as given; ids never hold `/` (the API refuses them), but a
/// stray one must not reach another route.
pub fn segment(id: &str) -> String {
    id.replace('/', "%2F")
}

//! The schema registry: its connection settings and a client of its Confluent-compatible API
//! (Apicurio's `/apis/ccompat/v7`, Confluent Schema Registry, Karapace, Redpanda...).
//!
//! The processor asks it for the writer schemas of Confluent-framed records; `trackctl
//! schema` registers the contract in it and checks changes against it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::http_url::{self, without_userinfo};
use crate::secret::{self, Secret};

/// The local stack's registry (scripts/stack).
pub const DEFAULT_URL: &str = "http://127.0.0.1:8081/apis/ccompat/v7";

#[derive(Args, Clone, PartialEq, Eq)]
pub struct SchemaRegistryConnection {
    /// Base URL of the registry's Confluent-compatible API (Apicurio:
    /// `http://host:8080/apis/ccompat/v7`; Confluent: `https://host`). Its value is not shown
    /// here: it may hold credentials.
    #[arg(
        long = "schema-registry-url",
        id = "schema_registry_url",
        env = "SCHEMA_REGISTRY_URL",
        // It may hold `user:password@`.
        hide_env_values = true,
        default_value = DEFAULT_URL,
        global = true,
        help_heading = "Schema registry"
    )]
    pub url: String,

    /// User for HTTP basic authentication (Confluent Cloud: the API key).
    #[arg(
        long = "schema-registry-user",
        id = "schema_registry_user",
        env = "SCHEMA_REGISTRY_USER",
        global = true,
        help_heading = "Schema registry"
    )]
    pub user: Option<String>,

    /// Password for basic authentication (Confluent Cloud: the API secret). Prefer the
    /// variable or the file: a flag shows in the process list.
    #[arg(
        long = "schema-registry-password",
        id = "schema_registry_password",
        env = "SCHEMA_REGISTRY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        value_parser = Secret::parse,
        global = true,
        help_heading = "Schema registry"
    )]
    pub password: Option<Secret>,

    /// File holding the basic-authentication password (a trailing newline is ignored).
    #[arg(
        long = "schema-registry-password-file",
        id = "schema_registry_password_file",
        env = "SCHEMA_REGISTRY_PASSWORD_FILE",
        value_name = "PATH",
        value_parser = Secret::read_file,
        global = true,
        help_heading = "Schema registry"
    )]
    pub password_file: Option<Secret>,

    /// PEM file of CA certificates trusted for an https:// URL, besides the public roots.
    #[arg(
        long = "schema-registry-ca-file",
        id = "schema_registry_ca_file",
        env = "SCHEMA_REGISTRY_CA_FILE",
        value_name = "PATH",
        global = true,
        help_heading = "Schema registry"
    )]
    pub ca_file: Option<PathBuf>,

    /// How long one request may take before the registry counts as unavailable.
    #[arg(
        long = "schema-registry-timeout-ms",
        id = "schema_registry_timeout_ms",
        env = "SCHEMA_REGISTRY_TIMEOUT_MS",
        default_value_t = 5000,
        global = true,
        help_heading = "Schema registry"
    )]
    pub timeout_ms: u64,
}

// By hand: the URL may hold `user:password@`.
impl std::fmt::Debug for SchemaRegistryConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistryConnection")
            .field("url", &without_userinfo(&self.url))
            .field("user", &self.user)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

impl Default for SchemaRegistryConnection {
    fn default() -> Self {
        Self::new(DEFAULT_URL)
    }
}

impl SchemaRegistryConnection {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: None,
            password: None,
            password_file: None,
            ca_file: None,
            timeout_ms: 5000,
        }
    }

    /// A client of this registry; refuses contradictory settings.
    pub fn client(&self) -> anyhow::Result<SchemaRegistry> {
        let password = secret::either(
            "SCHEMA_REGISTRY_PASSWORD",
            &self.password,
            &self.password_file,
        )?;
        http_url::check("SCHEMA_REGISTRY", &self.url, self.ca_file.is_some())?;
        let auth = match (&self.user, password) {
            (Some(user), Some(password)) => Some((user.clone(), password.clone())),
            (None, None) => None,
            (Some(_), None) => {
                bail!("SCHEMA_REGISTRY_USER is set without SCHEMA_REGISTRY_PASSWORD (or its _FILE)")
            }
            (None, Some(_)) => {
                bail!("SCHEMA_REGISTRY_PASSWORD is set without SCHEMA_REGISTRY_USER")
            }
        };
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_millis(self.timeout_ms.max(1)))
            .connect_timeout(Duration::from_millis(self.timeout_ms.max(1)));
        if let Some(path) = &self.ca_file {
            let setting = || format!("SCHEMA_REGISTRY_CA_FILE={}", path.display());
            let pem =
                std::fs::read(path).with_context(|| format!("{} cannot be read", setting()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} is not PEM", setting()))?;
            if certificates.is_empty() {
                bail!("{} holds no certificate", setting());
            }
            for certificate in certificates {
                http = http.add_root_certificate(certificate);
            }
        }
        Ok(SchemaRegistry {
            http: http
                .build()
                .context("building the schema registry's HTTP client")?,
            base: self.url.trim_end_matches('/').to_owned(),
            auth,
        })
    }
}

/// What the registry answered, sorted by what the caller does next.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// It does not know the schema id or subject (404): the record or request is wrong.
    #[error("{0}")]
    NotFound(String),
    /// It refused the request as such (409 incompatible, 422 invalid schema...).
    #[error("the schema registry refused it ({status}): {message}")]
    Refused { status: u16, message: String },
    /// It could not be asked (connection, timeout, 5xx, or the login refused): try again.
    #[error("{0}")]
    Unavailable(String),
}

/// A client of one registry's Confluent-compatible API.
#[derive(Clone)]
pub struct SchemaRegistry {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, Secret)>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.url())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct SchemaBody<'a> {
    schema: &'a str,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
}

#[derive(Deserialize)]
struct IdAnswer {
    id: u32,
}

#[derive(Deserialize)]
struct Compatible {
    is_compatible: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigAnswer {
    compatibility_level: String,
}

/// The content type of the Confluent API.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl SchemaRegistry {
    /// The registry's URL, without any credentials, for messages.
    pub fn url(&self) -> String {
        without_userinfo(&self.base)
    }

    /// The schema (JSON text) that `id` names.
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let answer: SchemaAnswer = self
            .call(reqwest::Method::GET, &format!("/schemas/ids/{id}"), None)
            .await
            .map_err(|e| match e {
                RegistryError::NotFound(_) => RegistryError::NotFound(format!(
                    "schema id {id} is not in the schema registry at {}",
                    self.url()
                )),
                e => e,
            })?;
        Ok(answer.schema)
    }

    /// Registers `schema` under `subject` (a no-op returning the same id when it is already
    /// there); the subject's compatibility rule decides whether it may.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let answer: IdAnswer = self
            .call(
                reqwest::Method::POST,
                &format!("/subjects/{}/versions", encode(subject)),
                Some(serde_json::json!(SchemaBody { schema })),
            )
            .await?;
        Ok(answer.id)
    }

    /// Whether `schema` may follow the subject's latest version under its compatibility rule.
    pub async fn is_compatible(&self, subject: &str, schema: &str) -> Result<bool, RegistryError> {
        let answer: Compatible = self
            .call(
                reqwest::Method::POST,
                &format!(
                    "/compatibility/subjects/{}/versions/latest",
                    encode(subject)
                ),
                Some(serde_json::json!(SchemaBody { schema })),
            )
            .await?;
        Ok(answer.is_compatible)
    }

    /// Sets the subject's compatibility rule (`BACKWARD`, `FULL`...).
    pub async fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryError> {
        let _: serde_json::Value = self
            .call(
                reqwest::Method::PUT,
                &format!("/config/{}", encode(subject)),
                Some(serde_json::json!({ "compatibility": level })),
            )
            .await?;
        Ok(())
    }

    /// The subject's own compatibility rule, `None` when it has none of its own.
    pub async fn compatibility(&self, subject: &str) -> Result<Option<String>, RegistryError> {
        match self
            .call::<ConfigAnswer>(
                reqwest::Method::GET,
                &format!("/config/{}", encode(subject)),
                None,
            )
            .await
        {
            Ok(answer) => Ok(Some(answer.compatibility_level)),
            Err(RegistryError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, RegistryError> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(body.to_string());
        }
        let where_ = || format!("{}{path}", self.url());
        let response = request.send().await.map_err(|e| {
            RegistryError::Unavailable(format!(
                "the schema registry at {} cannot be reached: {}",
                where_(),
                chain(&e.without_url())
            ))
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            RegistryError::Unavailable(format!(
                "the schema registry at {} broke off its answer: {}",
                where_(),
                e.without_url()
            ))
        })?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| {
                RegistryError::Unavailable(format!(
                    "the schema registry at {} answered {status} with a body that is not its \
                     API's: {e}",
                    where_()
                ))
            });
        }
        let message = error_message(&text);
        Err(match status.as_u16() {
            404 => RegistryError::NotFound(format!("{}: {message}", where_())),
            // Busy or rate-limited: it will answer later.
            408 | 429 => RegistryError::Unavailable(format!(
                "the schema registry at {} answered {status}: {message}",
                where_()
            )),
            401 | 403 => RegistryError::Unavailable(format!(
                "the schema registry at {} refused the credentials ({status}): check \
                 SCHEMA_REGISTRY_USER and SCHEMA_REGISTRY_PASSWORD",
                where_()
            )),
            code @ 400..=499 => RegistryError::Refused {
                status: code,
                message,
            },
            _ => RegistryError::Unavailable(format!(
                "the schema registry at {} answered {status}: {message}",
                where_()
            )),
        })
    }
}

/// An error and its causes: reqwest's own text ("error sending request") hides what failed.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The `message` of a Confluent API error body, else the body's start.
fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect())
}

/// A subject in a URL path: TopicNameStrategy subjects are topic names plus `-value`, whose
/// characters are all safe; anything else is percent-encoded.
fn encode(subject: &str) -> String {
    subject
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contradictions_are_named() {
        let mut c = SchemaRegistryConnection::new("ftp://x");
        assert!(c
            .client()
            .unwrap_err()
            .to_string()
            .contains("SCHEMA_REGISTRY_URL"));
        c.url = "http://127.0.0.1:8081".into();
        c.user = Some("key".into());
        let e = c.client().unwrap_err().to_string();
        assert!(e.contains("without SCHEMA_REGISTRY_PASSWORD"), "{e}");
        c.password = Some(Secret::new("s3cret"));
        assert!(c.client().is_ok());
        c.ca_file = Some("/nonexistent".into());
        let e = c.client().unwrap_err().to_string();
        assert!(e.contains("not https://"), "{e}");
    }

    #[test]
    fn credentials_never_show() {
        let mut c = SchemaRegistryConnection::new("https://key:s3cret@registry.example/api");
        c.user = Some("key".into());
        c.password = Some(Secret::new("s3cret"));
        let client = c.client().unwrap();
        let shown = format!("{client:?} {} {c:?}", client.url());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("https://registry.example/api"), "{shown}");
    }

    #[test]
    fn subjects_are_path_safe() {
        assert_eq!(
            encode("tracking.events.v1-value"),
            "tracking.events.v1-value"
        );
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}

//! The Kafka connection every binary shares: one set of flags (under the "Kafka" heading of
//! each `--help`) and one builder of librdkafka client configurations, with its security.
//! A service states only its role's settings (idempotence, transactions, isolation); the
//! connection, its security and the operator's own librdkafka properties are added here, the
//! same way for every client. [`KafkaConnection::check`] is the start-up check every program
//! runs.

mod check;
pub mod lag;

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use rdkafka::config::ClientConfig;

use crate::secret::{self, Secret};

pub use check::CHECK_TIMEOUT;

/// Environment variables `KAFKA_OPTION_<NAME>` set the librdkafka property `<name>`, with
/// `_` read as `.` (`KAFKA_OPTION_SOCKET_KEEPALIVE_ENABLE=true`).
pub const OPTION_ENV_PREFIX: &str = "KAFKA_OPTION_";

/// librdkafka's `security.protocol`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[value(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

/// librdkafka's `sasl.mechanism` (GSSAPI/Kerberos is not built in).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
    #[value(name = "OAUTHBEARER")]
    OauthBearer,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::OauthBearer => "OAUTHBEARER",
        }
    }
}

/// Each flag carries its own help heading: a struct-level one would also head whatever the
/// including command declares after it. Secrets are read from a variable or from a file
/// (`..._FILE`, as Docker and Kubernetes secrets are mounted), and never shown: `--help`
/// hides the variables' values and `Debug` prints `<redacted>`.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct KafkaConnection {
    /// Kafka bootstrap servers.
    #[arg(
        long = "kafka-bootstrap-servers",
        env = "KAFKA_BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092",
        global = true,
        help_heading = "Kafka"
    )]
    pub bootstrap_servers: String,

    /// Protocol to the brokers: TLS and/or SASL authentication.
    #[arg(
        long = "kafka-security-protocol",
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        ignore_case = true,
        default_value_t = SecurityProtocol::Plaintext,
        global = true,
        help_heading = "Kafka"
    )]
    pub security_protocol: SecurityProtocol,

    /// SASL mechanism (required with sasl_plaintext and sasl_ssl).
    #[arg(
        long = "kafka-sasl-mechanism",
        env = "KAFKA_SASL_MECHANISM",
        value_enum,
        ignore_case = true,
        global = true,
        help_heading = "Kafka"
    )]
    pub sasl_mechanism: Option<SaslMechanism>,

    /// SASL user name (PLAIN, SCRAM).
    #[arg(
        long = "kafka-sasl-username",
        env = "KAFKA_SASL_USERNAME",
        global = true,
        help_heading = "Kafka"
    )]
    pub sasl_username: Option<String>,

    /// SASL password. Prefer the variable or the file: a flag shows in the process list.
    #[arg(
        long = "kafka-sasl-password",
        env = "KAFKA_SASL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        value_parser = Secret::parse,
        global = true,
        help_heading = "Kafka"
    )]
    pub sasl_password: Option<Secret>,

    /// File holding the SASL password (a trailing newline is ignored).
    #[arg(
        long = "kafka-sasl-password-file",
        env = "KAFKA_SASL_PASSWORD_FILE",
        value_name = "PATH",
        value_parser = Secret::read_file,
        global = true,
        help_heading = "Kafka"
    )]
    pub sasl_password_file: Option<Secret>,

    /// OAUTHBEARER (OIDC): the identity provider's token endpoint, asked for a token with the
    /// client credentials grant.
    #[arg(
        long = "kafka-sasl-oauthbearer-token-endpoint-url",
        env = "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
        value_name = "URL",
        global = true,
        help_heading = "Kafka"
    )]
    pub oauthbearer_token_endpoint_url: Option<String>,

    /// OAUTHBEARER (OIDC): this client's id at the identity provider.
    #[arg(
        long = "kafka-sasl-oauthbearer-client-id",
        env = "KAFKA_SASL_OAUTHBEARER_CLIENT_ID",
        global = true,
        help_heading = "Kafka"
    )]
    pub oauthbearer_client_id: Option<String>,

    /// OAUTHBEARER (OIDC): the client's secret. Prefer the variable or the file.
    #[arg(
        long = "kafka-sasl-oauthbearer-client-secret",
        env = "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        value_parser = Secret::parse,
        global = true,
        help_heading = "Kafka"
    )]
    pub oauthbearer_client_secret: Option<Secret>,

    /// OAUTHBEARER (OIDC): file holding the client's secret.
    #[arg(
        long = "kafka-sasl-oauthbearer-client-secret-file",
        env = "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET_FILE",
        value_name = "PATH",
        value_parser = Secret::read_file,
        global = true,
        help_heading = "Kafka"
    )]
    pub oauthbearer_client_secret_file: Option<Secret>,

    /// OAUTHBEARER (OIDC): the scope asked for, if the provider wants one.
    #[arg(
        long = "kafka-sasl-oauthbearer-scope",
        env = "KAFKA_SASL_OAUTHBEARER_SCOPE",
        global = true,
        help_heading = "Kafka"
    )]
    pub oauthbearer_scope: Option<String>,

    /// PEM file of the CA certificates that sign the brokers' certificates (default: the
    /// system's trust store).
    #[arg(
        long = "kafka-ssl-ca-location",
        env = "KAFKA_SSL_CA_LOCATION",
        value_name = "PATH",
        global = true,
        help_heading = "Kafka"
    )]
    pub ssl_ca_location: Option<PathBuf>,

    /// PEM file of this client's certificate, for mutual TLS.
    #[arg(
        long = "kafka-ssl-certificate-location",
        env = "KAFKA_SSL_CERTIFICATE_LOCATION",
        value_name = "PATH",
        global = true,
        help_heading = "Kafka"
    )]
    pub ssl_certificate_location: Option<PathBuf>,

    /// PEM file of this client's private key, for mutual TLS.
    #[arg(
        long = "kafka-ssl-key-location",
        env = "KAFKA_SSL_KEY_LOCATION",
        value_name = "PATH",
        global = true,
        help_heading = "Kafka"
    )]
    pub ssl_key_location: Option<PathBuf>,

    /// Password of an encrypted private key.
    #[arg(
        long = "kafka-ssl-key-password",
        env = "KAFKA_SSL_KEY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        value_parser = Secret::parse,
        global = true,
        help_heading = "Kafka"
    )]
    pub ssl_key_password: Option<Secret>,

    /// File holding the private key's password.
    #[arg(
        long = "kafka-ssl-key-password-file",
        env = "KAFKA_SSL_KEY_PASSWORD_FILE",
        value_name = "PATH",
        value_parser = Secret::read_file,
        global = true,
        help_heading = "Kafka"
    )]
    pub ssl_key_password_file: Option<Secret>,

    /// Client id the brokers log and quota by [default: trackledger-<program>].
    #[arg(
        long = "kafka-client-id",
        env = "KAFKA_CLIENT_ID",
        global = true,
        help_heading = "Kafka"
    )]
    pub client_id: Option<String>,

    /// Any other librdkafka property, as KEY=VALUE (repeatable; also KAFKA_OPTION_<KEY>
    /// variables, `_` for `.`). Applied last: it overrides the service's own setting.
    #[arg(
        long = "kafka-option",
        value_name = "KEY=VALUE",
        value_parser = parse_option,
        global = true,
        help_heading = "Kafka"
    )]
    pub options: Vec<(String, String)>,
}

impl Default for KafkaConnection {
    /// The local stack's broker.
    fn default() -> Self {
        Self::new("127.0.0.1:9092")
    }
}

/// `key=value`, both non-empty.
fn parse_option(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !v.is_empty() => {
            Ok((k.trim().to_owned(), v.to_owned()))
        }
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

impl KafkaConnection {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            sasl_password_file: None,
            oauthbearer_token_endpoint_url: None,
            oauthbearer_client_id: None,
            oauthbearer_client_secret: None,
            oauthbearer_client_secret_file: None,
            oauthbearer_scope: None,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            ssl_key_password_file: None,
            client_id: None,
            options: Vec::new(),
        }
    }

    /// The operator's properties: `KAFKA_OPTION_*` variables, then `--kafka-option` flags.
    fn operator_options(&self) -> BTreeMap<String, String> {
        let mut options: BTreeMap<String, String> = std::env::vars()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix(OPTION_ENV_PREFIX)?;
                (!key.is_empty()).then(|| (key.to_ascii_lowercase().replace('_', "."), value))
            })
            .collect();
        options.extend(self.options.iter().cloned());
        options
    }

    fn sasl_password(&self) -> Option<&Secret> {
        self.sasl_password
            .as_ref()
            .or(self.sasl_password_file.as_ref())
    }

    fn oauthbearer_client_secret(&self) -> Option<&Secret> {
        self.oauthbearer_client_secret
            .as_ref()
            .or(self.oauthbearer_client_secret_file.as_ref())
    }

    fn ssl_key_password(&self) -> Option<&Secret> {
        self.ssl_key_password
            .as_ref()
            .or(self.ssl_key_password_file.as_ref())
    }

    /// The settings that contradict each other or are missing, each named as the operator
    /// sets it.
    pub fn validate(&self) -> anyhow::Result<()> {
        let protocol = self.security_protocol;
        secret::either(
            "KAFKA_SASL_PASSWORD",
            &self.sasl_password,
            &self.sasl_password_file,
        )?;
        secret::either(
            "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
            &self.oauthbearer_client_secret,
            &self.oauthbearer_client_secret_file,
        )?;
        secret::either(
            "KAFKA_SSL_KEY_PASSWORD",
            &self.ssl_key_password,
            &self.ssl_key_password_file,
        )?;
        match (protocol.sasl(), self.sasl_mechanism) {
            (true, None) => bail!(
                "KAFKA_SECURITY_PROTOCOL={} needs KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, \
                 SCRAM-SHA-512 or OAUTHBEARER)",
                protocol.as_str()
            ),
            (false, Some(_)) => bail!(
                "KAFKA_SASL_MECHANISM is set but KAFKA_SECURITY_PROTOCOL={}: use sasl_ssl \
                 (or sasl_plaintext)",
                protocol.as_str()
            ),
            (true, Some(SaslMechanism::OauthBearer)) => {
                let missing = [
                    (
                        "KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL",
                        self.oauthbearer_token_endpoint_url.is_none(),
                    ),
                    (
                        "KAFKA_SASL_OAUTHBEARER_CLIENT_ID",
                        self.oauthbearer_client_id.is_none(),
                    ),
                    (
                        "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET (or _FILE)",
                        self.oauthbearer_client_secret().is_none(),
                    ),
                ];
                let missing: Vec<&str> = missing
                    .iter()
                    .filter(|(_, absent)| *absent)
                    .map(|(name, _)| *name)
                    .collect();
                if !missing.is_empty() {
                    bail!("SASL OAUTHBEARER (OIDC) needs {}", missing.join(", "));
                }
            }
            (false, None) => {}
            (true, Some(mechanism)) => {
                if self.sasl_username.as_deref().unwrap_or("").is_empty() {
                    bail!("SASL {} needs KAFKA_SASL_USERNAME", mechanism.as_str());
                }
                if self.sasl_password().is_none() {
                    bail!(
                        "SASL {} needs KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE",
                        mechanism.as_str()
                    );
                }
            }
        }
        let files = [
            ("KAFKA_SSL_CA_LOCATION", &self.ssl_ca_location),
            (
                "KAFKA_SSL_CERTIFICATE_LOCATION",
                &self.ssl_certificate_location,
            ),
            ("KAFKA_SSL_KEY_LOCATION", &self.ssl_key_location),
        ];
        for (name, path) in files {
            let Some(path) = path else { continue };
            if !protocol.tls() {
                bail!(
                    "{name} is set but KAFKA_SECURITY_PROTOCOL={}: use ssl or sasl_ssl",
                    protocol.as_str()
                );
            }
            std::fs::File::open(path)
                .with_context(|| format!("{name}={} cannot be read", path.display()))?;
        }
        if self.ssl_certificate_location.is_some() != self.ssl_key_location.is_some() {
            bail!(
                "mutual TLS needs both KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION"
            );
        }
        Ok(())
    }

    /// A client configuration: the connection and its security, then the role's
    /// `settings`, then the operator's own properties.
    pub fn config(&self, settings: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        config.set("security.protocol", self.security_protocol.as_str());
        config.set(
            "client.id",
            self.client_id.clone().unwrap_or_else(default_client_id),
        );
        if let Some(mechanism) = self.sasl_mechanism {
            config.set("sasl.mechanism", mechanism.as_str());
        }
        if let Some(username) = &self.sasl_username {
            config.set("sasl.username", username);
        }
        if let Some(password) = self.sasl_password() {
            config.set("sasl.password", password.expose());
        }
        if self.sasl_mechanism == Some(SaslMechanism::OauthBearer) {
            config.set("sasl.oauthbearer.method", "oidc");
            let oidc = [
                (
                    "sasl.oauthbearer.token.endpoint.url",
                    &self.oauthbearer_token_endpoint_url,
                ),
                ("sasl.oauthbearer.client.id", &self.oauthbearer_client_id),
                ("sasl.oauthbearer.scope", &self.oauthbearer_scope),
            ];
            for (key, value) in oidc {
                if let Some(value) = value {
                    config.set(key, value);
                }
            }
            if let Some(secret) = self.oauthbearer_client_secret() {
                config.set("sasl.oauthbearer.client.secret", secret.expose());
            }
        }
        let files = [
            ("ssl.ca.location", &self.ssl_ca_location),
            ("ssl.certificate.location", &self.ssl_certificate_location),
            ("ssl.key.location", &self.ssl_key_location),
        ];
        for (key, path) in files {
            if let Some(path) = path {
                config.set(key, path.to_string_lossy());
            }
        }
        if let Some(password) = self.ssl_key_password() {
            config.set("ssl.key.password", password.expose());
        }
        for (key, value) in settings {
            config.set(*key, *value);
        }
        for (key, value) in self.operator_options() {
            config.set(key, value);
        }
        config
    }

    /// `text` without this connection's secrets: librdkafka quotes a property's value in
    /// some of its errors.
    fn redact(&self, text: &str) -> String {
        let secrets = [
            self.sasl_password(),
            self.oauthbearer_client_secret(),
            self.ssl_key_password(),
        ];
        secrets
            .into_iter()
            .flatten()
            .fold(text.to_owned(), |text, secret| {
                text.replace(secret.expose(), "<redacted>")
            })
    }
}

/// `trackledger-<program>`: the brokers' logs and quotas then tell the services apart.
fn default_client_id() -> String {
    let program = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "client".into());
    format!("trackledger-{program}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaConnection,
    }

    #[test]
    fn operator_options_come_last() {
        let cli = Cli::parse_from([
            "x",
            "--kafka-bootstrap-servers=b1:9092,b2:9092",
            "--kafka-option=linger.ms=50",
            "--kafka-option",
            "client.id=ingest-a",
        ]);
        let config = cli.kafka.config(&[("linger.ms", "2"), ("acks", "all")]);
        assert_eq!(config.get("bootstrap.servers"), Some("b1:9092,b2:9092"));
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("client.id"), Some("ingest-a"));
        assert!(Cli::try_parse_from(["x", "--kafka-option=nokey"]).is_err());
        assert!(Cli::try_parse_from(["x", "--kafka-option==v"]).is_err());
    }

    #[test]
    fn kafka_option_variables_are_properties() {
        std::env::set_var("KAFKA_OPTION_STATISTICS_INTERVAL_MS", "60000");
        let config = KafkaConnection::default().config(&[]);
        std::env::remove_var("KAFKA_OPTION_STATISTICS_INTERVAL_MS");
        assert_eq!(config.get("statistics.interval.ms"), Some("60000"));
        // A flag beats a variable.
        std::env::set_var("KAFKA_OPTION_RECONNECT_BACKOFF_MS", "10");
        let mut flagged = KafkaConnection::default();
        flagged
            .options
            .push(("reconnect.backoff.ms".into(), "20".into()));
        let config = flagged.config(&[]);
        std::env::remove_var("KAFKA_OPTION_RECONNECT_BACKOFF_MS");
        assert_eq!(config.get("reconnect.backoff.ms"), Some("20"));
    }

    #[test]
    fn security_settings_become_librdkafka_properties_and_contradictions_are_named() {
        let parse = |args: &[&str]| {
            let mut all = vec!["x"];
            all.extend(args);
            Cli::try_parse_from(all).unwrap().kafka
        };
        let scram = parse(&[
            "--kafka-security-protocol=SASL_SSL",
            "--kafka-sasl-mechanism=scram-sha-512",
            "--kafka-sasl-username=processor",
            "--kafka-sasl-password=pw-1",
            "--kafka-client-id=p-1",
        ]);
        scram.validate().unwrap();
        let c = scram.config(&[]);
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("processor"));
        assert_eq!(c.get("sasl.password"), Some("pw-1"));
        assert_eq!(c.get("client.id"), Some("p-1"));
        assert!(!format!("{scram:?}").contains("pw-1"));

        let oidc = parse(&[
            "--kafka-security-protocol=sasl_ssl",
            "--kafka-sasl-mechanism=OAUTHBEARER",
            "--kafka-sasl-oauthbearer-token-endpoint-url=https://idp.example/token",
            "--kafka-sasl-oauthbearer-client-id=ingest",
            "--kafka-sasl-oauthbearer-client-secret=s-1",
            "--kafka-sasl-oauthbearer-scope=kafka",
        ]);
        oidc.validate().unwrap();
        let c = oidc.config(&[]);
        assert_eq!(c.get("sasl.oauthbearer.method"), Some("oidc"));
        assert_eq!(
            c.get("sasl.oauthbearer.token.endpoint.url"),
            Some("https://idp.example/token")
        );
        assert_eq!(c.get("sasl.oauthbearer.client.id"), Some("ingest"));
        assert_eq!(c.get("sasl.oauthbearer.client.secret"), Some("s-1"));
        assert_eq!(c.get("sasl.oauthbearer.scope"), Some("kafka"));
        assert!(!format!("{oidc:?}").contains("s-1"));

        let refused = |args: &[&str], expected: &str| {
            let e = parse(args).validate().unwrap_err().to_string();
            assert!(e.contains(expected), "{args:?}: {e}");
        };
        refused(
            &["--kafka-security-protocol=sasl_ssl"],
            "needs KAFKA_SASL_MECHANISM",
        );
        refused(
            &["--kafka-sasl-mechanism=PLAIN"],
            "KAFKA_SECURITY_PROTOCOL=plaintext",
        );
        refused(
            &[
                "--kafka-security-protocol=sasl_ssl",
                "--kafka-sasl-mechanism=PLAIN",
            ],
            "needs KAFKA_SASL_USERNAME",
        );
        refused(
            &[
                "--kafka-security-protocol=sasl_ssl",
                "--kafka-sasl-mechanism=OAUTHBEARER",
                "--kafka-sasl-oauthbearer-client-id=x",
            ],
            "needs KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL, KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
        );
        refused(
            &["--kafka-ssl-ca-location=/etc/hostname"],
            "KAFKA_SSL_CA_LOCATION is set but KAFKA_SECURITY_PROTOCOL=plaintext",
        );
        refused(
            &[
                "--kafka-security-protocol=ssl",
                "--kafka-ssl-ca-location=/nonexistent/ca.pem",
            ],
            "KAFKA_SSL_CA_LOCATION=/nonexistent/ca.pem cannot be read",
        );
        refused(
            &[
                "--kafka-security-protocol=ssl",
                "--kafka-ssl-certificate-location=/etc/hostname",
            ],
            "needs both KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION",
        );
    }

    #[test]
    fn client_errors_lose_the_secrets() {
        let c = KafkaConnection {
            sasl_password: Some(Secret::new("pw-7")),
            oauthbearer_client_secret_file: Some(Secret::new("s-7")),
            ..KafkaConnection::default()
        };
        assert_eq!(
            c.redact(r#"bad "pw-7" for sasl.password; s-7"#),
            r#"bad "<redacted>" for sasl.password; <redacted>"#
        );
    }

    #[test]
    fn the_default_is_the_local_stack() {
        let cli = Cli::parse_from(["x"]);
        if std::env::var_os("KAFKA_BOOTSTRAP_SERVERS").is_none() {
            assert_eq!(cli.kafka, KafkaConnection::default());
        }
    }
}

//! The start-up check: before a program makes its own clients, the brokers must accept
//! its TLS and SASL login, and its principal must be allowed its topics and group. A refusal
//! that retrying cannot mend ends the program at once, naming the setting to mend.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, TopicPartitionList};

use super::{KafkaConnection, SaslMechanism, SecurityProtocol};

/// How long the start-up check waits for the brokers to answer before the service goes on
/// regardless (an unreachable broker is waited for, not a configuration error).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

impl KafkaConnection {
    /// [`Self::check`] off the async runtime, on a thread of its own: a program stopped
    /// while the check still waits for unreachable brokers exits without waiting for it.
    pub async fn check_async(&self, topics: &[&str], group: Option<&str>) -> anyhow::Result<()> {
        let this = self.clone();
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        let group = group.map(str::to_owned);
        let (done, result) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("kafka-check".into())
            .spawn(move || {
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                let _ = done.send(this.check(&topics, group.as_deref()));
            })?;
        result
            .await
            .map_err(|_| anyhow::anyhow!("the Kafka start-up check panicked"))?
    }

    /// The start-up check every service and command runs before its own clients: the
    /// settings are consistent, the brokers accept this client's TLS and SASL login, and its
    /// principal may describe `topics` (and use `group`). A refusal ends the program at once
    /// with the setting to mend; brokers that do not answer within [`CHECK_TIMEOUT`] are
    /// only logged, and waited for as before.
    pub fn check(&self, topics: &[&str], group: Option<&str>) -> anyhow::Result<()> {
        self.validate()?;
        let mut settings = vec![("enable.auto.commit", "false")];
        if let Some(group) = group {
            settings.push(("group.id", group));
        }
        let consumer: BaseConsumer<Refusals> = self
            .config(&settings)
            .create_with_context(Refusals::default())
            .map_err(|e| {
                let reason = self.redact(&e.to_string());
                let settings: Vec<&str> = SETTINGS
                    .iter()
                    .filter(|(property, _)| reason.contains(property))
                    .map(|(_, setting)| *setting)
                    .collect();
                match settings.is_empty() {
                    true => anyhow::anyhow!("the Kafka client settings are invalid: {reason}"),
                    false => anyhow::anyhow!(
                        "the Kafka client settings are invalid: check {} ({reason})",
                        settings.join(", ")
                    ),
                }
            })?;
        let deadline = Instant::now() + CHECK_TIMEOUT;
        let mut pending: Vec<&str> = topics.to_vec();
        let mut partitions = TopicPartitionList::new();
        loop {
            // Serves librdkafka's error events, which reach the context only when polled.
            if let Some(Err(e)) = consumer.poll(Duration::ZERO) {
                tracing::debug!(error = %e, "start-up check");
            }
            if let Some(refusal) = consumer.context().refusal() {
                bail!(self.explain(refusal, group));
            }
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    servers = %self.bootstrap_servers,
                    "the Kafka brokers did not answer the start-up check in {}s; going on",
                    CHECK_TIMEOUT.as_secs()
                );
                return Ok(());
            }
            let wait = (deadline - now).min(Duration::from_millis(500));
            let Some(topic) = pending.first().copied() else {
                break;
            };
            let metadata = match consumer.fetch_metadata(Some(topic), wait) {
                Ok(metadata) => metadata,
                Err(_) => continue, // not reachable yet, or refused: the context says which
            };
            let Some(found) = metadata.topics().first() else {
                continue;
            };
            match found.error().map(RDKafkaErrorCode::from) {
                None => {
                    if let Some(p) = found.partitions().first() {
                        partitions.add_partition(topic, p.id());
                    }
                    pending.remove(0);
                }
                Some(RDKafkaErrorCode::TopicAuthorizationFailed) => bail!(
                    "{} may not describe topic {topic}: grant it the service's ACLs \
                     (docs/DEPLOYMENT.md, \"ACLs\")",
                    self.principal()
                ),
                Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {
                    tracing::warn!(topic, "the topic does not exist yet");
                    pending.remove(0);
                }
                Some(other) => {
                    tracing::warn!(topic, error = %other, "the topic's metadata has an error");
                    pending.remove(0);
                }
            }
        }
        let Some(group) = group.filter(|_| partitions.count() > 0) else {
            return Ok(());
        };
        let refused_group = || {
            format!(
                "{} may not use consumer group {group}: grant it the service's ACLs \
                 (docs/DEPLOYMENT.md, \"ACLs\")",
                self.principal()
            )
        };
        // The coordinator's refusal arrives as an error event while the offsets are awaited.
        while Instant::now() < deadline {
            match consumer.committed_offsets(partitions.clone(), Duration::from_millis(500)) {
                Ok(_) => return Ok(()),
                Err(KafkaError::OffsetFetch(RDKafkaErrorCode::GroupAuthorizationFailed)) => {
                    bail!(refused_group())
                }
                Err(e) => tracing::debug!(group, error = %e, "reading the group's offsets"),
            }
            if let Some(Err(e)) = consumer.poll(Duration::ZERO) {
                tracing::debug!(error = %e, "start-up check");
            }
            if let Some(refusal) = consumer.context().refusal() {
                bail!(self.explain(refusal, Some(group)));
            }
        }
        tracing::warn!(
            group,
            "could not read the group's offsets in the start-up check"
        );
        Ok(())
    }

    fn principal(&self) -> String {
        if let (Some(SaslMechanism::OauthBearer), Some(client)) =
            (self.sasl_mechanism, &self.oauthbearer_client_id)
        {
            return format!("Kafka OAuth client {client:?} (KAFKA_SASL_OAUTHBEARER_CLIENT_ID)");
        }
        match (&self.sasl_username, self.security_protocol) {
            (Some(user), p) if p.sasl() => format!("Kafka user {user:?} (KAFKA_SASL_USERNAME)"),
            (_, SecurityProtocol::Ssl) if self.ssl_certificate_location.is_some() => {
                "this client's certificate principal (KAFKA_SSL_CERTIFICATE_LOCATION)".into()
            }
            _ => "this client's principal".into(),
        }
    }

    fn explain(&self, refusal: Refusal, group: Option<&str>) -> String {
        match refusal {
            Refusal::Authentication(reason)
                if self.sasl_mechanism == Some(SaslMechanism::OauthBearer) =>
            {
                format!(
                    "the OAUTHBEARER login of {} failed: check \
                     KAFKA_SASL_OAUTHBEARER_TOKEN_ENDPOINT_URL, KAFKA_SASL_OAUTHBEARER_CLIENT_ID \
                     and KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET (or _FILE) ({reason})",
                    self.principal()
                )
            }
            Refusal::Authentication(reason) => format!(
                "the Kafka brokers refused the SASL login of {}: check KAFKA_SASL_USERNAME, \
                 KAFKA_SASL_PASSWORD (or KAFKA_SASL_PASSWORD_FILE) and \
                 KAFKA_SASL_MECHANISM={} ({reason})",
                self.principal(),
                self.sasl_mechanism.map_or("unset", SaslMechanism::as_str),
            ),
            Refusal::Group(reason) => format!(
                "{} may not use consumer group {} ({reason}): grant it the service's ACLs \
                 (docs/DEPLOYMENT.md, \"ACLs\")",
                self.principal(),
                group.unwrap_or("(none)"),
            ),
            Refusal::ClientCertificate(reason) => format!(
                "the Kafka brokers refused this client's TLS certificate: check \
                 KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION (a certificate \
                 signed by a CA the brokers trust) ({reason})"
            ),
            Refusal::Tls(reason) => format!(
                "the TLS handshake with the Kafka brokers failed: check KAFKA_SSL_CA_LOCATION \
                 (the CA that signed the brokers' certificates{}) and \
                 KAFKA_SECURITY_PROTOCOL={} ({reason})",
                if self.ssl_certificate_location.is_some() {
                    "; and KAFKA_SSL_CERTIFICATE_LOCATION, KAFKA_SSL_KEY_LOCATION for mutual TLS"
                } else {
                    ""
                },
                self.security_protocol.as_str(),
            ),
        }
    }
}

/// The librdkafka properties that librdkafka's errors name, and the settings an operator
/// mends for each.
const SETTINGS: [(&str, &str); 5] = [
    ("ssl.ca.location", "KAFKA_SSL_CA_LOCATION"),
    ("ssl.certificate.location", "KAFKA_SSL_CERTIFICATE_LOCATION"),
    (
        "ssl.key.location",
        "KAFKA_SSL_KEY_LOCATION and KAFKA_SSL_KEY_PASSWORD (or _FILE)",
    ),
    ("sasl.oauthbearer", "the KAFKA_SASL_OAUTHBEARER_* settings"),
    ("sasl.mechanism", "KAFKA_SASL_MECHANISM"),
];

/// A refusal that retrying cannot mend: the brokers said no to the login, to the TLS
/// handshake, or to the consumer group.
#[derive(Debug, Clone)]
enum Refusal {
    Authentication(String),
    Tls(String),
    /// The brokers refused this client's certificate (missing, or from a CA they do not trust).
    ClientCertificate(String),
    Group(String),
}

/// The start-up check's client context: keeps the first refusal librdkafka reports.
#[derive(Default)]
struct Refusals(Mutex<Option<Refusal>>);

impl Refusals {
    fn refusal(&self) -> Option<Refusal> {
        self.0.lock().expect("refusals").clone()
    }

    fn keep(&self, refusal: Refusal) {
        self.0.lock().expect("refusals").get_or_insert(refusal);
    }
}

/// The refusal a librdkafka message reports, by its text: librdkafka reports a failed TLS
/// handshake or SASL login as an error event with its own code only sometimes (a repeated
/// failure comes as a transport failure, and identical events are suppressed), but always
/// as a `FAIL` log line with this text.
fn refusal_in(text: &str) -> Option<Refusal> {
    if text.contains("SASL authentication error") || text.contains("SASL authentication failed") {
        Some(Refusal::Authentication(text.to_owned()))
    } else if [
        "alert bad certificate",
        "alert certificate required",
        "alert unknown ca",
    ]
    .iter()
    .any(|alert| text.contains(alert))
    {
        Some(Refusal::ClientCertificate(text.to_owned()))
    } else if text.contains("SSL handshake failed") || text.contains("certificate verify failed") {
        Some(Refusal::Tls(text.to_owned()))
    } else {
        None
    }
}

impl ClientContext for Refusals {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(?level, fac, "librdkafka: {message}");
        if let Some(refusal) = refusal_in(message) {
            self.keep(refusal);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!("librdkafka: {error}: {reason}");
        let refusal = match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::Authentication) => Refusal::Authentication(reason.to_owned()),
            Some(RDKafkaErrorCode::SSL) => Refusal::Tls(reason.to_owned()),
            Some(RDKafkaErrorCode::GroupAuthorizationFailed) => Refusal::Group(reason.to_owned()),
            _ => match refusal_in(reason) {
                Some(refusal) => refusal,
                None => return,
            },
        };
        self.keep(refusal);
    }
}

impl ConsumerContext for Refusals {}

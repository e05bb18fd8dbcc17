//! The Kafka connection every binary shares: one set of flags (under the "Kafka" heading of
//! each `--help`) and one builder of librdkafka client configurations. A service states only
//! its role's settings (idempotence, transactions, isolation); the connection and the
//! operator's own librdkafka properties are added here, the same way for every client.

use std::collections::BTreeMap;

use clap::Args;
use rdkafka::config::ClientConfig;

/// Environment variables `KAFKA_OPTION_<NAME>` set the librdkafka property `<name>`, with
/// `_` read as `.` (`KAFKA_OPTION_SOCKET_KEEPALIVE_ENABLE=true`).
pub const OPTION_ENV_PREFIX: &str = "KAFKA_OPTION_";

/// Each flag carries its own help heading: a struct-level one would also head whatever the
/// including command declares after it.
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

    /// A client configuration: the connection, then the role's `settings`, then the
    /// operator's own properties.
    pub fn config(&self, settings: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in settings {
            config.set(*key, *value);
        }
        for (key, value) in self.operator_options() {
            config.set(key, value);
        }
        config
    }
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
    fn the_default_is_the_local_stack() {
        let cli = Cli::parse_from(["x"]);
        if std::env::var_os("KAFKA_BOOTSTRAP_SERVERS").is_none() {
            assert_eq!(cli.kafka, KafkaConnection::default());
        }
    }
}

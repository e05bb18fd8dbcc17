//! Ingest configuration: flags and environment variables, with defaults that work against
//! the local stack (`scripts/stack`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ingest",
    about = "First-party capture and network postbacks, produced as Avro to Kafka"
)]
pub struct Config {
    /// Address the HTTP server binds.
    #[arg(long, env = "INGEST_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Topic the accepted events are produced to.
    #[arg(long, env = "INGEST_EVENTS_TOPIC", default_value = schemas::topics::EVENTS)]
    pub events_topic: String,

    /// Topic refused input is kept in, for replay.
    #[arg(long, env = "INGEST_QUARANTINE_TOPIC", default_value = schemas::topics::QUARANTINE)]
    pub quarantine_topic: String,

    /// API keys accepted on `POST /v1/events` as `Authorization: Bearer <key>`, comma-separated.
    #[arg(
        long,
        env = "INGEST_API_KEYS",
        value_delimiter = ',',
        required = true,
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,

    /// Secret for the keyed hash (HMAC-SHA256) of IPs and e-mails; at least 16 bytes.
    #[arg(long, env = "INGEST_PII_KEY", required = true, hide_env_values = true)]
    pub pii_key: String,

    /// Secret that seals quarantined requests (ChaCha20-Poly1305), which can hold raw
    /// e-mails and IPs; at least 16 bytes. `trackctl replay` needs the same one.
    #[arg(
        long,
        env = "INGEST_QUARANTINE_KEY",
        required = true,
        hide_env_values = true
    )]
    pub quarantine_key: String,

    /// Offers for the click redirect (`GET /c/{offer_id}`), a TOML file.
    #[arg(long, env = "INGEST_OFFERS_FILE", default_value = "config/offers.toml")]
    pub offers_file: PathBuf,

    /// ClickBank INS secret key; the ClickBank route answers 404 without it.
    #[arg(long, env = "CLICKBANK_SECRET_KEY", hide_env_values = true)]
    pub clickbank_secret_key: Option<String>,

    /// Digistore24 IPN passphrase; the Digistore24 route answers 404 without it.
    #[arg(long, env = "DIGISTORE24_PASSPHRASE", hide_env_values = true)]
    pub digistore24_passphrase: Option<String>,

    /// BuyGoods postback token (the `token` parameter); the route answers 404 without it.
    #[arg(long, env = "BUYGOODS_TOKEN", hide_env_values = true)]
    pub buygoods_token: Option<String>,

    /// Generic S2S sources as `name:token`, comma-separated; the route answers 404 without any.
    #[arg(
        long,
        env = "S2S_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub s2s_tokens: Vec<String>,

    /// Longest wait for Kafka's delivery report before answering 503.
    #[arg(long, env = "INGEST_ACK_TIMEOUT_MS", default_value_t = 5000)]
    pub ack_timeout_ms: u64,

    /// Longest wait for a click's delivery report before the click is spooled to disk and the
    /// visitor redirected anyway.
    #[arg(long, env = "INGEST_CLICK_WAIT_MS", default_value_t = 150)]
    pub click_wait_ms: u64,

    /// Directory of the click spool (clicks Kafka had not confirmed in time).
    #[arg(long, env = "INGEST_SPOOL_DIR", default_value = ".stack/ingest-spool")]
    pub spool_dir: PathBuf,

    /// Requests handled at once; beyond it ingest answers 503 instead of queueing.
    #[arg(long, env = "INGEST_MAX_IN_FLIGHT", default_value_t = 4096)]
    pub max_in_flight: usize,

    /// Largest request body accepted (bytes).
    #[arg(long, env = "INGEST_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most events in one `POST /v1/events` batch.
    #[arg(long, env = "INGEST_MAX_BATCH_EVENTS", default_value_t = 1000)]
    pub max_batch_events: usize,

    /// Longest time to receive a request body and answer it.
    #[arg(long, env = "INGEST_REQUEST_TIMEOUT_MS", default_value_t = 15000)]
    pub request_timeout_ms: u64,

    /// Longest time a client may take to send the request headers (slow-client guard).
    #[arg(long, env = "INGEST_HEADER_TIMEOUT_MS", default_value_t = 5000)]
    pub header_timeout_ms: u64,

    /// How much of a refused body the quarantine record keeps (bytes).
    #[arg(long, env = "INGEST_QUARANTINE_BODY_CAP", default_value_t = 64 * 1024)]
    pub quarantine_body_cap: usize,

    /// Messages the Kafka producer may buffer; beyond it requests get 503.
    #[arg(
        long,
        env = "INGEST_PRODUCER_QUEUE_MESSAGES",
        default_value_t = 100_000
    )]
    pub producer_queue_messages: usize,

    /// Proxies whose `X-Forwarded-For` is believed, as addresses or CIDR networks,
    /// comma-separated; none by default. The client is the nearest untrusted hop.
    #[arg(long, env = "INGEST_TRUSTED_PROXIES", value_delimiter = ',', value_parser = crate::client_ip::parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// Failed authentications allowed per client IP (IPv6: per /64) a minute, in a burst
    /// too; past it the client gets 429 before any secret is used. 0 turns the limit off.
    #[arg(long, env = "INGEST_AUTH_FAILURES_PER_MINUTE", default_value_t = 60)]
    pub auth_failures_per_minute: u32,

    /// Largest money amount (revenue or payout) accepted, unless a per-origin ceiling says
    /// otherwise; above it the event is refused as `amount_out_of_range`.
    #[arg(long, env = "INGEST_MAX_AMOUNT", default_value = "1000000")]
    pub max_amount: rust_decimal::Decimal,

    /// Ceilings by network (`clickbank=5000`) or first-party `source` (`checkout=20000`),
    /// comma-separated.
    #[arg(long, env = "INGEST_MAX_AMOUNT_FOR", value_delimiter = ',')]
    pub max_amount_for: Vec<String>,

    /// Open connections at most; beyond it new connections are closed at once.
    #[arg(long, env = "INGEST_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// A connection that sends nothing for this long (no first byte, a stalled preface,
    /// an idle keep-alive) is closed.
    #[arg(long, env = "INGEST_IDLE_TIMEOUT_MS", default_value_t = 30000)]
    pub idle_timeout_ms: u64,

    /// Most bytes the click spool may hold; when full, a click Kafka has not confirmed is
    /// answered 503 instead of redirected.
    #[arg(long, env = "INGEST_SPOOL_MAX_BYTES", default_value_t = 1 << 30)]
    pub spool_max_bytes: u64,

    /// Data-centre and cloud IP range files, comma-separated: one CIDR network per line,
    /// then an optional label; `#` starts a comment. A click from inside one is flagged
    /// DATACENTER_IP. None by default.
    #[arg(long, env = "INGEST_DATACENTER_RANGES", value_delimiter = ',')]
    pub datacenter_ranges: Vec<PathBuf>,

    /// Mark the click cookie `Secure` (serve over HTTPS).
    #[arg(long, env = "INGEST_SECURE_COOKIE", default_value_t = false)]
    pub secure_cookie: bool,

    #[command(flatten)]
    pub kafka: telemetry::kafka::KafkaConnection,
}

impl Config {
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }

    pub fn click_wait(&self) -> Duration {
        Duration::from_millis(self.click_wait_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Checks what clap cannot: key strength and the S2S token format.
    pub fn check(&self) -> Result<(), String> {
        // Believing the first X-Forwarded-For entry let any client choose its address.
        if std::env::var_os("INGEST_TRUST_FORWARDED_FOR").is_some() {
            return Err(
                "INGEST_TRUST_FORWARDED_FOR is gone: list your proxies' addresses or \
                        networks in INGEST_TRUSTED_PROXIES instead"
                    .into(),
            );
        }
        if self.pii_key.len() < 16 {
            return Err("INGEST_PII_KEY must be at least 16 bytes".into());
        }
        schemas::QuarantineKey::new(&self.quarantine_key)
            .map_err(|_| "INGEST_QUARANTINE_KEY must be at least 16 bytes".to_owned())?;
        if self.api_keys.iter().any(|k| k.len() < 8) {
            return Err("every INGEST_API_KEYS entry must be at least 8 characters".into());
        }
        for entry in &self.s2s_tokens {
            match entry.split_once(':') {
                Some((name, token)) if !name.is_empty() && token.len() >= 8 => {}
                _ => {
                    return Err(format!(
                        "S2S_TOKENS entry {:?} is not name:token (token of 8+ characters)",
                        redact(entry)
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The first characters of a secret, enough to recognise it in an error, never all of it.
pub fn redact(secret: &str) -> String {
    let shown: String = secret.chars().take(3).collect();
    format!("{shown}…")
}

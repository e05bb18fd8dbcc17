//! The stack's SASL_SSL listener (SCRAM-SHA-512, a CA made by `scripts/stack`, the ACL
//! authorizer) and its password-protected ClickHouse user, as the secured tests reach them.

use std::path::PathBuf;
use std::process::Command;

use crate::processor::ProcessorTopics;
use crate::stack_env;

/// The flags of a client logging in as `user` on the SASL_SSL listener.
pub fn kafka_flags(user: &str) -> Vec<String> {
    vec![
        format!(
            "--kafka-bootstrap-servers={}",
            stack_env("KAFKA_SECURE_BOOTSTRAP_SERVERS")
        ),
        "--kafka-security-protocol=sasl_ssl".into(),
        "--kafka-sasl-mechanism=SCRAM-SHA-512".into(),
        format!("--kafka-sasl-username={user}"),
        format!(
            "--kafka-sasl-password-file={}",
            password_file(user).display()
        ),
        format!("--kafka-ssl-ca-location={}", ca().display()),
    ]
}

/// The flags of a client logging in with OAUTHBEARER (OIDC) as `client` on the SASL_SSL
/// listener, its token from `token_endpoint` (the stack's identity provider, unless a test
/// runs another).
pub fn kafka_oauth_flags(client: &str, token_endpoint: &str) -> Vec<String> {
    vec![
        format!(
            "--kafka-bootstrap-servers={}",
            stack_env("KAFKA_SECURE_BOOTSTRAP_SERVERS")
        ),
        "--kafka-security-protocol=sasl_ssl".into(),
        "--kafka-sasl-mechanism=OAUTHBEARER".into(),
        format!("--kafka-sasl-oauthbearer-token-endpoint-url={token_endpoint}"),
        format!("--kafka-sasl-oauthbearer-client-id={client}"),
        format!(
            "--kafka-sasl-oauthbearer-client-secret-file={}",
            password_file(client).display()
        ),
        format!("--kafka-ssl-ca-location={}", ca().display()),
    ]
}

/// The stack's identity provider's token endpoint.
pub fn token_endpoint() -> String {
    stack_env("KAFKA_OIDC_TOKEN_ENDPOINT_URL")
}

/// An identity provider like the stack's, with the same issuer, that signs with a key of its
/// own: the broker must refuse its tokens. Stopped when dropped.
pub struct ForgingIdentityProvider {
    child: std::process::Child,
    pub token_endpoint: String,
}

impl ForgingIdentityProvider {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let issuer = format!("http://127.0.0.1:{}", stack_env("KAFKA_OIDC_PORT"));
        let child = Command::new(stack_env("STACK_PYTHON"))
            .arg(format!("{repo}/scripts/kafka/oidc.py"))
            .args([&port.to_string(), "-"])
            .arg(stack_env("KAFKA_SECURE_SECRETS_DIR"))
            .args(["trackledger-kafka", &issuer])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("scripts/kafka/oidc.py runs");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the forging identity provider did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Self {
            child,
            token_endpoint: format!("http://127.0.0.1:{port}/token"),
        }
    }
}

impl Drop for ForgingIdentityProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CA that signed the broker's certificate.
pub fn ca() -> PathBuf {
    stack_env("KAFKA_SECURE_CA_LOCATION").into()
}

/// A CA that signed nothing the broker holds.
pub fn untrusted_ca() -> PathBuf {
    ca().with_file_name("other-ca.pem")
}

pub fn password_file(user: &str) -> PathBuf {
    PathBuf::from(stack_env("KAFKA_SECURE_SECRETS_DIR")).join(format!("{user}.password"))
}

/// The flags of the password-protected ClickHouse user, over HTTPS (the stack's TLS door in
/// front of the engine, with the stack's CA).
pub fn clickhouse_flags() -> Vec<String> {
    vec![
        format!("--clickhouse-url={}", stack_env("CLICKHOUSE_SECURE_URL")),
        format!(
            "--clickhouse-ca-file={}",
            stack_env("CLICKHOUSE_SECURE_CA_FILE")
        ),
        format!("--clickhouse-user={}", stack_env("CLICKHOUSE_SECURE_USER")),
        format!(
            "--clickhouse-password-file={}",
            stack_env("CLICKHOUSE_SECURE_PASSWORD_FILE")
        ),
    ]
}

/// Grants each service's principal the ACLs of scripts/kafka/acls.conf, on `topics` and the
/// groups the tests give the services instead of the production names.
pub fn grant(topics: &ProcessorTopics) {
    let renames = [
        ("tracking.events.v1", &topics.input),
        ("tracking.quarantine.v1", &topics.quarantine),
        ("ledger.v1", &topics.ledger),
        ("ledger.receipts.v1", &topics.receipts),
        ("processor.state.v1", &topics.state),
        ("postbacks.outbox.v1", &topics.outbox),
        ("ledger.capping.v1", &topics.capping),
        ("processor.caps.v1", &topics.caps_state),
        ("ledger.clickids.v1", &topics.click_ids),
        ("processor.clickids.v1", &topics.click_ids_state),
        ("postbacks.retry.v1", &topics.retry),
        ("postbacks.attempts.v1", &topics.attempts),
        ("postbacks.dlq.v1", &topics.dlq),
        ("trackledger-processor", &topics.group),
        (
            "trackledger-forwarder",
            &format!("{}.forwarder", topics.group),
        ),
        ("trackledger-sink", &format!("{}.sink", topics.group)),
    ];
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut command = Command::new(stack_env("STACK_PYTHON"));
    command.args([
        format!("{repo}/scripts/kafka/secure.py"),
        "acls".into(),
        crate::kafka_bootstrap(),
        format!("{repo}/scripts/kafka/acls.conf"),
    ]);
    for (old, new) in renames {
        command.args(["--rename".to_owned(), format!("{old}={new}")]);
    }
    let out = command.output().expect("scripts/kafka/secure.py runs");
    assert!(
        out.status.success(),
        "granting the ACLs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

//! The pipeline on a secured Kafka: the stack's SASL_SSL listener (SCRAM-SHA-512, its own
//! CA) under the ACL authorizer, each service logged in as its own principal with only the
//! ACLs of scripts/kafka/acls.conf, and the sink writing as a password-protected ClickHouse
//! user. Then the refusals: a wrong password, an untrusted CA and a missing ACL each stop a
//! service at once, with the setting to mend, and without the secret in its log.

use std::time::{Duration, Instant};

use serde_json::json;
use tests::pipeline::Pipeline;
use tests::processor::ProcessorTopics;
use tests::secured::{self, kafka_flags};
use tests::service::ServiceProcess;
use tests::sink::{database, wait_rows};
use tests::{secrets, stack_env, unique_name};

#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_runs_over_sasl_ssl_with_one_principal_per_service() {
    let destinations = tests::pipeline::webhook_destinations().await;
    let topics = ProcessorTopics::create("secured").await;
    secured::grant(&topics);
    let db = database("secured");
    // A cap far from reached: the sale and its refund take the capping stage, under its ACLs.
    let caps = std::env::temp_dir().join(format!("{}.caps.toml", topics.group));
    std::fs::write(
        &caps,
        "[[cap]]\nid = \"keto\"\noffer_id = \"keto-vsl\"\nperiod = \"daily\"\nconversions = 1000\n",
    )
    .unwrap();
    let caps_flags = topics.caps_args(&caps);
    let pipeline = Pipeline::start_with(topics, db.clone(), &destinations, &|service| {
        // The processor logs in with OAUTHBEARER (OIDC), the others with SCRAM.
        let mut flags = match service {
            "processor" => {
                let mut flags = secured::kafka_oauth_flags(service, &secured::token_endpoint());
                flags.extend(caps_flags.clone());
                flags
            }
            _ => kafka_flags(service),
        };
        if service == "sink" {
            flags.extend(secured::clickhouse_flags());
        }
        flags
    })
    .await;
    let base = pipeline.ingest.base_url.clone();
    let order = unique_name("order");
    let click_id = unique_name("click");
    let sale = json!({"event_id": format!("{order}-sale"), "event_name": "SALE",
        "order_id": order, "click_id": click_id, "offer_id": "keto-vsl",
        "email": "secured@example.com", "revenue": "50.00", "currency": "USD"});
    tests::post_event(&base, sale.clone()).await;
    tests::post_event(&base, sale).await; // a retry: a DUPLICATE receipt, not a second sale
    tests::post_event(
        &base,
        json!({"event_id": format!("{order}-refund"), "event_name": "REFUND",
            "order_id": order, "revenue": "20.00", "currency": "USD"}),
    )
    .await;

    // Read back as the password-protected user the sink wrote as, over HTTPS.
    let warehouse = trackctl::warehouse::Warehouse {
        clickhouse: telemetry::clickhouse::ClickHouseConnection {
            user: stack_env("CLICKHOUSE_SECURE_USER"),
            password_file: Some(
                telemetry::secret::Secret::read_file(&stack_env("CLICKHOUSE_SECURE_PASSWORD_FILE"))
                    .unwrap(),
            ),
            ca_file: Some(stack_env("CLICKHOUSE_SECURE_CA_FILE").into()),
            ..telemetry::clickhouse::ClickHouseConnection::new(stack_env("CLICKHOUSE_SECURE_URL"))
        },
        database: db.clone(),
    };
    let ch = warehouse.client().unwrap();
    wait_rows(&ch, "ledger", 2, Duration::from_secs(60)).await;
    wait_rows(&ch, "receipts", 1, Duration::from_secs(60)).await;
    wait_rows(&ch, "postback_attempts", 2, Duration::from_secs(60)).await;
    let (net, user): (String, String) = ch
        .query("SELECT toString(sum(signed_revenue)), currentUser() FROM ledger")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(
        trackctl::warehouse::decimal(&net).unwrap(),
        "30".parse().unwrap(),
        "50.00 sold, 20.00 refunded"
    );
    assert_eq!(user, "trackledger");
    let delivered: u64 = ch
        .query("SELECT count() FROM postback_attempts WHERE http_status = 200")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(delivered, 2, "the sale and the refund were forwarded");
    let metrics = pipeline.processor.get("/metrics").unwrap_or_default();
    assert_eq!(
        tests::metric(&metrics, "processor_capping_routed_total", ""),
        2.0,
        "both went through the capping stage"
    );

    // trackctl as its own principal, with only the trackctl rows of the ACL table: the two
    // replays read their topics (dry runs), and erase writes its request to the processor
    // and watches the processor's group.
    let trackctl = |command: &[&str]| {
        let mut args = vec!["trackctl".to_owned()];
        args.extend(kafka_flags("trackctl"));
        args.extend(secured::clickhouse_flags());
        args.push(format!("--database={db}"));
        args.extend(command.iter().map(|a| a.to_string()));
        <trackctl::cli::Cli as clap::Parser>::try_parse_from(args).unwrap()
    };
    let t = &pipeline.topics;
    trackctl::run(trackctl(&[
        "replay",
        "quarantine",
        "--dry-run",
        &format!("--quarantine-topic={}", t.quarantine),
    ]))
    .await
    .expect("trackctl replay quarantine as the trackctl principal");
    trackctl::run(trackctl(&[
        "replay",
        "dlq",
        "--dry-run",
        &format!("--dlq-topic={}", t.dlq),
        &format!("--outbox-topic={}", t.outbox),
    ]))
    .await
    .expect("trackctl replay dlq as the trackctl principal");
    let cli = trackctl(&[
        "erase",
        "--email=secured@example.com",
        &format!("--pii-key={}", secrets::PII_KEY),
        &format!("--events-topic={}", t.input),
        &format!("--processor-group={}", t.group),
        "--wait-seconds=60",
    ]);
    let trackctl::cli::Command::Erase(mut args) = cli.command else {
        unreachable!()
    };
    args.kafka = cli.kafka;
    let erasure = trackctl::erase::run(&args, &cli.warehouse)
        .await
        .expect("trackctl erase as the trackctl principal");
    assert_eq!((erasure.events, erasure.conversions), (2, 1));
    assert_eq!(erasure.processor_applied, 1);
    pipeline.stop().await;
}

/// The start-up check as trackctl's principal, which may describe the events topic and the
/// processor's group: it passes only if the login works and maps to that principal.
fn logs_in(flags: &[String]) -> anyhow::Result<()> {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: telemetry::kafka::KafkaConnection,
    }
    let mut args = vec!["check".to_owned()];
    args.extend(flags.iter().cloned());
    let cli = <Cli as clap::Parser>::try_parse_from(args)?;
    cli.kafka
        .check(&[schemas::topics::EVENTS], Some("trackledger-processor"))
}

#[test]
fn every_sasl_mechanism_and_mutual_tls_log_in_as_the_principal() {
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let mut flags = kafka_flags("trackctl");
        flags.retain(|f| !f.starts_with("--kafka-sasl-mechanism"));
        flags.push(format!("--kafka-sasl-mechanism={mechanism}"));
        logs_in(&flags).unwrap_or_else(|e| panic!("{mechanism}: {e:#}"));
    }
    logs_in(&secured::kafka_oauth_flags(
        "trackctl",
        &secured::token_endpoint(),
    ))
    .expect("OAUTHBEARER");
    // Mutual TLS (as Aiven runs it): the certificate's CN is the principal.
    let clients = std::path::PathBuf::from(stack_env("KAFKA_MTLS_CLIENTS_DIR"));
    let mtls = |key: &str, extra: &[String]| {
        let mut flags = vec![
            format!(
                "--kafka-bootstrap-servers={}",
                stack_env("KAFKA_MTLS_BOOTSTRAP_SERVERS")
            ),
            "--kafka-security-protocol=ssl".to_owned(),
            format!("--kafka-ssl-ca-location={}", secured::ca().display()),
            format!(
                "--kafka-ssl-certificate-location={}",
                clients
                    .join(format!("{}.crt", key.split('-').next().unwrap()))
                    .display()
            ),
            format!(
                "--kafka-ssl-key-location={}",
                clients.join(format!("{key}.key")).display()
            ),
        ];
        flags.extend(extra.iter().cloned());
        flags
    };
    logs_in(&mtls("trackctl", &[])).expect("mutual TLS");
    // An encrypted key, with its password from a file.
    let password = clients.join("ingest-encrypted.key.password");
    let mut flags = mtls(
        "ingest-encrypted",
        &[format!(
            "--kafka-ssl-key-password-file={}",
            password.display()
        )],
    );
    // ingest may describe the events topic but not the processor's group.
    let e = logs_in(&flags).unwrap_err().to_string();
    assert!(
        e.contains("may not use consumer group trackledger-processor"),
        "{e}"
    );
    flags.retain(|f| !f.starts_with("--kafka-ssl-key-password-file"));
    flags.push("--kafka-ssl-key-password=not-the-key-password".into());
    let e = logs_in(&flags).unwrap_err().to_string();
    assert!(
        e.contains("check KAFKA_SSL_KEY_LOCATION and KAFKA_SSL_KEY_PASSWORD"),
        "{e}"
    );
    assert!(!e.contains("not-the-key-password"), "{e}");
    // No client certificate where the brokers require one: refused at once, by name.
    let started = std::time::Instant::now();
    let mut flags = mtls("trackctl", &[]);
    flags
        .retain(|f| !f.starts_with("--kafka-ssl-certificate") && !f.starts_with("--kafka-ssl-key"));
    let e = logs_in(&flags).unwrap_err().to_string();
    assert!(
        e.contains("refused this client's TLS certificate: check KAFKA_SSL_CERTIFICATE_LOCATION"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// Starts `bin` with `flags` and expects it to stop by itself, failing, within 20 s, with a
/// log that names `expected` and never shows `secret`.
fn refused(bin: &str, flags: &[String], expected: &[&str], secret: Option<&str>) {
    let started = Instant::now();
    let mut service = ServiceProcess::start(bin, &unique_name(&format!("refused-{bin}")), flags);
    let status = service
        .exited_within(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{bin} still runs after 20 s: {}", service.log()));
    let log = service.log();
    assert!(!status.success(), "{bin} exited successfully: {log}");
    assert!(started.elapsed() < Duration::from_secs(20));
    for e in expected {
        assert!(log.contains(e), "{bin}'s log lacks {e:?}: {log}");
    }
    if let Some(secret) = secret {
        assert!(!log.contains(secret), "{bin} logged the secret: {log}");
    }
}

#[test]
fn a_wrong_password_stops_the_service_and_names_the_setting() {
    let mut flags = kafka_flags("processor");
    flags.retain(|f| !f.starts_with("--kafka-sasl-password-file"));
    flags.push("--kafka-sasl-password=not-the-password-0451".into());
    flags.push("--instance-id=refused".into());
    refused(
        "processor",
        &flags,
        &[
            "refused the SASL login of Kafka user \"processor\"",
            "KAFKA_SASL_PASSWORD",
            "invalid credentials",
        ],
        Some("not-the-password-0451"),
    );
}

#[test]
fn a_refused_oauthbearer_login_stops_the_service_and_names_the_settings() {
    // A wrong client secret: the identity provider refuses to issue a token.
    let mut flags = secured::kafka_oauth_flags("processor", &secured::token_endpoint());
    flags.retain(|f| !f.starts_with("--kafka-sasl-oauthbearer-client-secret-file"));
    flags.push("--kafka-sasl-oauthbearer-client-secret=not-the-secret-0454".into());
    flags.push("--instance-id=refused".into());
    refused(
        "processor",
        &flags,
        &[
            "the OAUTHBEARER login of Kafka OAuth client \"processor\"",
            "KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET",
            "invalid_client",
        ],
        Some("not-the-secret-0454"),
    );
    // A token the broker's identity provider did not sign (same issuer, another key): the
    // broker verifies the signature against the provider's published keys and refuses it.
    let forger = secured::ForgingIdentityProvider::start();
    let mut flags = secured::kafka_oauth_flags("processor", &forger.token_endpoint);
    flags.push("--instance-id=refused".into());
    refused(
        "processor",
        &flags,
        &[
            "the OAUTHBEARER login of Kafka OAuth client",
            "invalid_token",
        ],
        None,
    );
}

#[test]
fn an_untrusted_ca_stops_the_service_and_names_the_setting() {
    let mut flags = kafka_flags("sink");
    flags.retain(|f| !f.starts_with("--kafka-ssl-ca-location"));
    flags.push(format!(
        "--kafka-ssl-ca-location={}",
        secured::untrusted_ca().display()
    ));
    flags.push(format!("--clickhouse-url={}", tests::clickhouse_url()));
    flags.push(format!("--database={}", database("refused")));
    refused(
        "sink",
        &flags,
        &[
            "TLS handshake with the Kafka brokers failed",
            "KAFKA_SSL_CA_LOCATION",
            "certificate verify failed",
        ],
        None,
    );
}

#[test]
fn clickhouse_refusals_stop_the_sink_and_name_the_setting() {
    let base = [
        format!("--clickhouse-url={}", stack_env("CLICKHOUSE_SECURE_URL")),
        format!("--clickhouse-user={}", stack_env("CLICKHOUSE_SECURE_USER")),
        format!("--database={}", database("refused")),
    ];
    // HTTPS without the CA that signed ClickHouse's certificate.
    let mut flags = base.to_vec();
    flags.push(format!(
        "--clickhouse-password-file={}",
        stack_env("CLICKHOUSE_SECURE_PASSWORD_FILE")
    ));
    refused(
        "sink",
        &flags,
        &["TLS handshake with ClickHouse", "CLICKHOUSE_CA_FILE"],
        None,
    );
    // The right CA, the wrong password.
    let mut flags = base.to_vec();
    flags.push(format!(
        "--clickhouse-ca-file={}",
        stack_env("CLICKHOUSE_SECURE_CA_FILE")
    ));
    flags.push("--clickhouse-password=not-the-password-0453".into());
    refused(
        "sink",
        &flags,
        &[
            "ClickHouse refused the login of user",
            "CLICKHOUSE_PASSWORD",
        ],
        Some("not-the-password-0453"),
    );
}

#[test]
fn a_missing_acl_stops_the_service_and_names_the_topic() {
    // The sink's principal holds no ACL on the processor's input or state.
    let mut flags = kafka_flags("sink");
    flags.push("--instance-id=refused".into());
    refused(
        "processor",
        &flags,
        &[
            "Kafka user \"sink\" (KAFKA_SASL_USERNAME) may not describe topic tracking.events.v1",
            "ACLs",
        ],
        None,
    );
    // The forwarder's principal may use its own group only.
    let mut flags = kafka_flags("forwarder");
    flags.push("--group-id=someone-elses-group".into());
    flags.push(
        concat!(
            "--destinations-file=",
            env!("CARGO_MANIFEST_DIR"),
            "/../config/destinations.toml"
        )
        .into(),
    );
    refused(
        "forwarder",
        &flags,
        &["may not use consumer group someone-elses-group"],
        None,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ingest_stops_when_its_login_is_refused() {
    let mut flags = kafka_flags("ingest");
    flags.retain(|f| !f.starts_with("--kafka-sasl-password-file"));
    flags.push("--kafka-sasl-password=not-the-password-0452".into());
    let mut args = vec![
        "ingest".to_owned(),
        format!("--api-keys={}", secrets::API_KEY),
        format!("--pii-key={}", secrets::PII_KEY),
        format!("--quarantine-key={}", secrets::QUARANTINE_KEY),
        concat!(
            "--offers-file=",
            env!("CARGO_MANIFEST_DIR"),
            "/../config/offers.toml"
        )
        .into(),
        format!(
            "--spool-dir={}",
            std::env::temp_dir().join(unique_name("spool")).display()
        ),
    ];
    args.extend(flags);
    let config = <ingest::Config as clap::Parser>::parse_from(args);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = tokio::time::timeout(
        Duration::from_secs(20),
        ingest::serve(config, listener, std::future::pending()),
    )
    .await
    .expect("ingest still serves after 20 s");
    let error = format!("{:#}", served.unwrap_err());
    assert!(error.contains("KAFKA_SASL_PASSWORD"), "{error}");
    assert!(!error.contains("not-the-password-0452"), "{error}");
}

/// docs/DEPLOYMENT.md's ACL table is scripts/kafka/acls.conf, row for row: the grants the
/// secured test proves sufficient are the ones operators read.
#[test]
fn the_documented_acls_are_the_tested_ones() {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let conf = std::fs::read_to_string(format!("{repo}/scripts/kafka/acls.conf")).unwrap();
    let tested: Vec<Vec<String>> = conf
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default())
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = match f[2].strip_suffix('*') {
                Some(prefix) => format!("`{prefix}` (prefix)"),
                None => format!("`{}`", f[2]),
            };
            vec![
                format!("`{}`", f[0]),
                f[1].to_owned(),
                name,
                f[3].replace(',', ", "),
            ]
        })
        .collect();
    let docs = std::fs::read_to_string(format!("{repo}/docs/DEPLOYMENT.md")).unwrap();
    let section = docs.split("### ACLs").nth(1).unwrap();
    let documented: Vec<Vec<String>> = section
        .lines()
        .skip_while(|l| !l.starts_with("| principal"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    assert!(tested.len() > 20, "{tested:?}");
    assert_eq!(documented, tested);
}

/// The ClickHouse grants docs/DEPLOYMENT.md gives a production user are enough, and needed
/// no more: scripts/clickhouse/users.xml holds a user with exactly those (on the database
/// granted_check), as whom the sink applies every migration, twice, and trackctl imports
/// rates and reads the views.
#[tokio::test(flavor = "multi_thread")]
async fn the_documented_clickhouse_grants_are_enough() {
    let users = include_str!("../../scripts/clickhouse/users.xml");
    let deployment = include_str!("../../docs/DEPLOYMENT.md");
    let grants: Vec<&str> = users
        .lines()
        .filter_map(|l| l.trim().strip_prefix("<query>")?.strip_suffix("</query>"))
        .collect();
    assert_eq!(grants.len(), 2, "{grants:?}");
    for grant in &grants {
        let documented = format!(
            "`{} TO trackledger`",
            grant.replace("granted_check.*", "trackledger.*")
        );
        assert!(
            deployment.contains(&documented),
            "docs/DEPLOYMENT.md does not give {documented}"
        );
    }

    let root = clickhouse::Client::default().with_url(tests::clickhouse_url());
    root.query("DROP DATABASE IF EXISTS granted_check")
        .execute()
        .await
        .unwrap();
    let as_granted = [
        format!("--clickhouse-url={}", tests::clickhouse_url()),
        "--clickhouse-user=trackledger_granted".to_owned(),
        format!(
            "--clickhouse-password-file={}",
            tests::stack_env("CLICKHOUSE_SECURE_PASSWORD_FILE")
        ),
        "--database=granted_check".to_owned(),
    ];
    for _ in 0..2 {
        let out = std::process::Command::new(tests::service::workspace_bin("sink"))
            .args(&as_granted)
            .arg("--migrate-only")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let rates = std::env::temp_dir().join(tests::unique_name("granted-rates.csv"));
    std::fs::write(&rates, "day,base,quote,rate\n2026-11-20,EUR,USD,1.05\n").unwrap();
    let out = std::process::Command::new(tests::service::workspace_bin("trackctl"))
        .args(&as_granted)
        .args(["fx", "import", "--file", rates.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&rates).ok();
    let n: u64 = root
        .query("SELECT count() FROM granted_check.fx_rates")
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(n, 1);
}

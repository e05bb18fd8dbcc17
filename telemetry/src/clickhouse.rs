//! The ClickHouse connection of the sink and of every trackctl command that queries the
//! ledger: one set of flags (under the "ClickHouse" heading), one client builder. HTTPS is
//! rustls: pure Rust, no second OpenSSL binding beside librdkafka's, and the public roots
//! (ClickHouse Cloud) built in; a private CA is added with `--clickhouse-ca-file`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use crate::http_url::{self, without_userinfo};
use crate::secret::{self, Secret};

#[derive(Args, Clone, PartialEq, Eq)]
pub struct ClickHouseConnection {
    /// ClickHouse HTTP(S) interface.
    #[arg(
        long = "clickhouse-url",
        env = "CLICKHOUSE_URL",
        // It may hold `user:password@`.
        hide_env_values = true,
        default_value = "http://127.0.0.1:8123",
        global = true,
        help_heading = "ClickHouse"
    )]
    pub url: String,

    /// ClickHouse user.
    #[arg(
        long = "clickhouse-user",
        env = "CLICKHOUSE_USER",
        default_value = "default",
        global = true,
        help_heading = "ClickHouse"
    )]
    pub user: String,

    /// ClickHouse password. Prefer the variable or the file: a flag shows in the process list.
    #[arg(
        long = "clickhouse-password",
        env = "CLICKHOUSE_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        value_parser = Secret::parse,
        global = true,
        help_heading = "ClickHouse"
    )]
    pub password: Option<Secret>,

    /// File holding the ClickHouse password (a trailing newline is ignored).
    #[arg(
        long = "clickhouse-password-file",
        env = "CLICKHOUSE_PASSWORD_FILE",
        value_name = "PATH",
        value_parser = Secret::read_file,
        global = true,
        help_heading = "ClickHouse"
    )]
    pub password_file: Option<Secret>,

    /// PEM file of CA certificates trusted for an https:// URL, besides the public roots.
    #[arg(
        long = "clickhouse-ca-file",
        env = "CLICKHOUSE_CA_FILE",
        value_name = "PATH",
        global = true,
        help_heading = "ClickHouse"
    )]
    pub ca_file: Option<PathBuf>,
}

// By hand: the URL may hold `user:password@`.
impl std::fmt::Debug for ClickHouseConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConnection")
            .field("url", &without_userinfo(&self.url))
            .field("user", &self.user)
            .field("password", &self.password)
            .field("password_file", &self.password_file)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl Default for ClickHouseConnection {
    /// The local stack's engine, as its passwordless default user.
    fn default() -> Self {
        Self::new("http://127.0.0.1:8123")
    }
}

/// ClickHouse closes idle connections after 3 s (10 s since 23.11); the pool drops them first.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(2);
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

impl ClickHouseConnection {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            user: "default".into(),
            password: None,
            password_file: None,
            ca_file: None,
        }
    }

    /// A client of this connection, without a default database.
    pub fn client(&self) -> anyhow::Result<clickhouse::Client> {
        let password = secret::either("CLICKHOUSE_PASSWORD", &self.password, &self.password_file)?;
        http_url::check("CLICKHOUSE", &self.url, self.ca_file.is_some())?;
        let mut http = HttpConnector::new();
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.enforce_http(false);
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(self.tls()?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let hyper = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(tls);
        let mut client = clickhouse::Client::with_http_client(hyper)
            .with_url(&self.url)
            .with_user(&self.user);
        if let Some(password) = password {
            client = client.with_password(password.expose());
        }
        Ok(client)
    }

    /// `error` with, on top, the settings to mend when ClickHouse refused the TLS handshake
    /// or the login (its text never holds the password).
    pub fn diagnose(&self, error: anyhow::Error) -> anyhow::Error {
        let text = format!("{error:#}");
        if text.contains("certificate") || text.contains("UnknownIssuer") {
            error.context(format!(
                "the TLS handshake with ClickHouse at {} failed: check the host name of \
                 CLICKHOUSE_URL and CLICKHOUSE_CA_FILE (the CA that signed its certificate)",
                without_userinfo(&self.url)
            ))
        } else if text.contains("AUTHENTICATION_FAILED") {
            error.context(format!(
                "ClickHouse refused the login of user {:?}: check CLICKHOUSE_USER and \
                 CLICKHOUSE_PASSWORD (or CLICKHOUSE_PASSWORD_FILE)",
                self.user
            ))
        } else {
            error
        }
    }

    /// The public roots, and the operator's CA if any.
    fn tls(&self) -> anyhow::Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = &self.ca_file {
            let setting = || format!("CLICKHOUSE_CA_FILE={}", path.display());
            let certificates: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
                .with_context(|| format!("{} cannot be read", setting()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("{} is not PEM", setting()))?;
            if certificates.is_empty() {
                bail!("{} holds no certificate", setting());
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .with_context(|| format!("{} holds an invalid certificate", setting()))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_urls_credentials() {
        let c = ClickHouseConnection::new("https://sink:s3cret@ch.example:8443");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("https://ch.example:8443"), "{shown}");
    }

    #[test]
    fn a_url_loses_its_credentials() {
        assert_eq!(
            without_userinfo("https://u:pw@ch.example:8443/?database=x"),
            "https://ch.example:8443/?database=x"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:8123"),
            "http://127.0.0.1:8123"
        );
        let c = ClickHouseConnection::new("https://u:pw-9@ch.example:8443");
        let e = c.diagnose(anyhow::anyhow!("invalid peer certificate: UnknownIssuer"));
        assert!(!format!("{e:#}").contains("pw-9"), "{e:#}");
        assert!(format!("{e:#}").contains("CLICKHOUSE_CA_FILE"));
    }

    #[test]
    fn contradictions_are_named() {
        let mut c = ClickHouseConnection {
            ca_file: Some("/nonexistent.pem".into()),
            ..ClickHouseConnection::default()
        };
        let e = c.client().unwrap_err().to_string();
        assert!(
            e.contains("CLICKHOUSE_CA_FILE") && e.contains("not https"),
            "{e}"
        );
        c.url = "https://ch.example:8443".into();
        let e = c.client().unwrap_err().to_string();
        assert!(
            e.starts_with("CLICKHOUSE_CA_FILE=/nonexistent.pem cannot be read"),
            "{e}"
        );
        let empty = std::env::temp_dir().join(format!("ca-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        c.ca_file = Some(empty.clone());
        let e = c.client().unwrap_err().to_string();
        std::fs::remove_file(&empty).unwrap();
        assert!(e.ends_with("holds no certificate"), "{e}");
        let both = ClickHouseConnection {
            password: Some(Secret::new("a")),
            password_file: Some(Secret::new("b")),
            ..ClickHouseConnection::default()
        };
        assert!(both.client().unwrap_err().to_string().contains("not both"));
        let ftp = ClickHouseConnection::new("ftp://x");
        assert!(ftp
            .client()
            .unwrap_err()
            .to_string()
            .contains("not an http"));
    }
}

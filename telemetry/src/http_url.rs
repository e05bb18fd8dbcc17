//! The URL setting of an HTTP service the pipeline calls (ClickHouse, the schema registry):
//! one rule for its scheme and CA file, and one way to name it without its credentials.

use anyhow::bail;

/// `url` without a `user:password@` part, which must not reach a log.
pub(crate) fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

/// Refuses a `{prefix}_URL` that is neither http:// nor https://, and a `{prefix}_CA_FILE`
/// beside a plain http:// URL. The error names the URL without its credentials.
pub(crate) fn check(prefix: &str, url: &str, has_ca_file: bool) -> anyhow::Result<()> {
    let https = url.starts_with("https://");
    if !https && !url.starts_with("http://") {
        bail!(
            "{prefix}_URL={} is not an http:// or https:// URL",
            without_userinfo(url)
        );
    }
    if has_ca_file && !https {
        bail!("{prefix}_CA_FILE is set but {prefix}_URL is not https://");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_ca_files_are_checked_without_showing_credentials() {
        assert!(check("X", "http://h:1", false).is_ok());
        assert!(check("X", "https://h:1", true).is_ok());
        let e = check("X", "ftp://u:s3cret@h", false)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "X_URL=ftp://h is not an http:// or https:// URL");
        let e = check("X", "http://h:1", true).unwrap_err().to_string();
        assert_eq!(e, "X_CA_FILE is set but X_URL is not https://");
    }
}

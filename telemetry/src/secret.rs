//! A password or key read from the environment, a flag or a file, that never shows: `Debug`
//! and `Display` print `<redacted>`, so a configuration can be logged whole.

use std::fmt;
use std::path::Path;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one client that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// clap's parser of a secret given as a value: it must not be empty.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("is empty".into());
        }
        Ok(Self(text.to_owned()))
    }

    /// clap's parser of a `..._FILE` setting: the file's content without its trailing line
    /// break, as Docker and Kubernetes mount secrets. The error names the file, never its
    /// content.
    pub fn read_file(path: &str) -> Result<Self, String> {
        let text = std::fs::read_to_string(Path::new(path))
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        if value.is_empty() {
            return Err(format!("{path} is empty"));
        }
        Ok(Self(value.to_owned()))
    }
}

/// The secret of a setting given either directly (`variable`) or as a file
/// (`variable_FILE`), never both.
pub fn either<'a>(
    variable: &str,
    direct: &'a Option<Secret>,
    file: &'a Option<Secret>,
) -> anyhow::Result<Option<&'a Secret>> {
    match (direct, file) {
        (Some(_), Some(_)) => anyhow::bail!("set {variable} or {variable}_FILE, not both"),
        (direct, file) => Ok(direct.as_ref().or(file.as_ref())),
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_file_loses_its_line_break_only() {
        let dir = std::env::temp_dir().join(format!("secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p");
        std::fs::write(&path, "  pa ss\n").unwrap();
        assert_eq!(
            Secret::read_file(path.to_str().unwrap()).unwrap().expose(),
            "  pa ss"
        );
        std::fs::write(&path, "\n").unwrap();
        let empty = Secret::read_file(path.to_str().unwrap()).unwrap_err();
        assert!(empty.ends_with("is empty"), "{empty}");
        let missing = Secret::read_file("/nonexistent/secret").unwrap_err();
        assert!(
            missing.starts_with("cannot read /nonexistent/secret"),
            "{missing}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! `trackctl stack`: the local stack, by way of the repository's scripts (`scripts/stack`
//! for Kafka and ClickHouse, `scripts/services` for the pipeline's services).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Action {
    /// Start Kafka, ClickHouse and the services (build them first: cargo build --release).
    Up,
    /// Stop the services, then Kafka and ClickHouse (their data stays).
    Down,
    /// What is running.
    Status,
}

/// The repository: `TRACKLEDGER_HOME`, else the nearest directory up from here that has
/// `scripts/stack`.
pub fn home() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("TRACKLEDGER_HOME") {
        return Ok(PathBuf::from(dir));
    }
    let here = std::env::current_dir()?;
    here.ancestors()
        .find(|d| d.join("scripts/stack").is_file())
        .map(Path::to_path_buf)
        .context(
            "not inside a Trackledger checkout: run from the repository or set TRACKLEDGER_HOME",
        )
}

fn script(home: &Path, name: &str, arg: &str) -> anyhow::Result<()> {
    let path = home.join("scripts").join(name);
    let status = Command::new(&path)
        .arg(arg)
        .current_dir(home)
        .status()
        .with_context(|| format!("cannot run {}", path.display()))?;
    if !status.success() {
        bail!("{name} {arg} failed ({status}); its output above says why");
    }
    Ok(())
}

pub fn run(action: Action) -> anyhow::Result<()> {
    let home = home()?;
    match action {
        Action::Up => {
            script(&home, "stack", "up")?;
            script(&home, "services", "up")
        }
        Action::Down => {
            script(&home, "services", "down")?;
            script(&home, "stack", "down")
        }
        Action::Status => {
            script(&home, "stack", "status")?;
            script(&home, "services", "status")
        }
    }
}

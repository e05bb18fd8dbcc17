//! `trackctl schema`: the contract in a schema registry.
//!
//! - `register` gives every Avro topic its TopicNameStrategy subject (`<topic>-value`) with
//!   the contract's compatibility rule (BACKWARD; Apicurio's own default is none), and
//!   registers the published versions in order, so that the registry checks each against
//!   the one before. Registering what is already there is a no-op returning the same id.
//! - `check` asks the registry whether each subject's newest published version, or a given
//!   schema file, may follow what it holds: what CI runs on a schema change.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use schemas::avro::{registry_subjects, REGISTRY_COMPATIBILITY};
use telemetry::registry::{RegistryError, SchemaRegistry, SchemaRegistryConnection};

#[derive(Subcommand, Debug)]
pub enum SchemaCommand {
    /// Register the contract's schemas under their subjects, with BACKWARD compatibility.
    Register {
        #[command(flatten)]
        registry: SchemaRegistryConnection,
    },
    /// Check that the contract (or one schema file) may follow what the registry holds.
    Check(CheckArgs),
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub registry: SchemaRegistryConnection,
    /// An .avsc file to check instead of the contract's schemas (with --subject).
    #[arg(long, requires = "subject")]
    pub file: Option<PathBuf>,
    /// The subject to check --file against, e.g. tracking.events.v1-value.
    #[arg(long, requires = "file")]
    pub subject: Option<String>,
}

/// One version as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub subject: String,
    pub version: u32,
    pub id: u32,
}

/// Registers every subject of the contract; returns what each version's id is.
pub async fn register(registry: &SchemaRegistry) -> anyhow::Result<Vec<Registered>> {
    let mut done = Vec::new();
    for s in registry_subjects() {
        if registry.compatibility(&s.subject).await?.as_deref() != Some(REGISTRY_COMPATIBILITY) {
            registry
                .set_compatibility(&s.subject, REGISTRY_COMPATIBILITY)
                .await
                .with_context(|| format!("setting {REGISTRY_COMPATIBILITY} on {}", s.subject))?;
        }
        for (version, json) in &s.versions {
            let id = registry.register(&s.subject, json).await.with_context(|| {
                format!(
                    "registering v{version} of {} in {}",
                    s.subject,
                    registry.url()
                )
            })?;
            done.push(Registered {
                subject: s.subject.clone(),
                version: *version,
                id,
            });
        }
    }
    Ok(done)
}

/// What the registry said of one schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub subject: String,
    pub what: String,
    /// `None` when the subject is not in the registry yet (anything may be its first version).
    pub compatible: Option<bool>,
}

/// Checks the contract's newest versions, or `file` against `subject`.
pub async fn check(registry: &SchemaRegistry, args: &CheckArgs) -> anyhow::Result<Vec<Verdict>> {
    let wanted: Vec<(String, String, String)> = match (&args.file, &args.subject) {
        (Some(file), Some(subject)) => {
            let json = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            vec![(subject.clone(), file.display().to_string(), json)]
        }
        _ => registry_subjects()
            .into_iter()
            .map(|s| {
                let (version, json) = *s.versions.last().expect("every subject has a version");
                (s.subject, format!("v{version}"), json.to_owned())
            })
            .collect(),
    };
    let mut verdicts = Vec::new();
    for (subject, what, json) in wanted {
        let compatible = match registry.is_compatible(&subject, &json).await {
            Ok(c) => Some(c),
            Err(RegistryError::NotFound(_)) => None,
            Err(e) => return Err(e).with_context(|| format!("checking {what} of {subject}")),
        };
        verdicts.push(Verdict {
            subject,
            what,
            compatible,
        });
    }
    Ok(verdicts)
}

/// Runs a `schema` command, printing one line per subject.
pub async fn run(command: SchemaCommand) -> anyhow::Result<()> {
    match command {
        SchemaCommand::Register { registry } => {
            let registry = registry.client()?;
            for r in register(&registry).await? {
                println!(
                    "{} v{} registered as schema id {} ({REGISTRY_COMPATIBILITY})",
                    r.subject, r.version, r.id
                );
            }
            Ok(())
        }
        SchemaCommand::Check(args) => {
            let registry = args.registry.client()?;
            let verdicts = check(&registry, &args).await?;
            let mut refused = Vec::new();
            for v in &verdicts {
                let said = match v.compatible {
                    Some(true) => "compatible",
                    Some(false) => "INCOMPATIBLE",
                    None => "new subject (nothing to break)",
                };
                println!("{} {}: {said}", v.subject, v.what);
                if v.compatible == Some(false) {
                    refused.push(format!("{} {}", v.subject, v.what));
                }
            }
            if !refused.is_empty() {
                bail!(
                    "the registry at {} would refuse {} under {REGISTRY_COMPATIBILITY}: publish \
                     the change as a new topic version instead (docs/CONTRACT.md)",
                    registry.url(),
                    refused.join(", ")
                );
            }
            Ok(())
        }
    }
}

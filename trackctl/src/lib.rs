//! trackctl, the operator's command line. [`cli`] is the interface; each command lives in
//! its own module: [`stack`], [`demo`], [`replay`], [`recon`], [`gate`], [`dashboard`],
//! [`erase`], [`schema`], [`fx`] and [`caps`].

pub mod caps;
pub mod cli;
pub mod dashboard;
pub mod demo;
pub mod erase;
pub mod fx;
pub mod gate;
pub mod recon;
pub mod replay;
pub mod schema;
pub mod stack;
pub mod warehouse;

use cli::{CapsCommand, Cli, Command, Fx, Replay};

/// Runs one command, printing its result for a human.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let kafka = cli.kafka.clone();
    match cli.command {
        Command::Stack { action } => {
            tokio::task::spawn_blocking(move || stack::run(action)).await?
        }
        Command::Demo {
            args,
            mut postbacks,
        } => {
            postbacks.kafka = kafka;
            let run = demo::run(&args, &cli.warehouse, &postbacks, true).await?;
            println!("\n{}", demo::render(&run));
            anyhow::ensure!(
                run.settled,
                "the ledger did not settle within {} s",
                args.timeout_seconds
            );
            Ok(())
        }
        Command::Receiver { bind } => demo::receiver::serve(bind).await,
        Command::Replay(Replay::Quarantine { args }) => {
            let done = replay::quarantine(&kafka, &args).await?;
            println!(
                "{} accepted, {} refused again (quarantined anew), {} not replayable",
                done.accepted, done.refused_again, done.skipped
            );
            Ok(())
        }
        Command::Replay(Replay::Dlq { mut common, filter }) => {
            common.kafka = kafka;
            let n = forwarder::dlq::replay(&common, &filter).await?;
            let verb = if filter.dry_run {
                "would be replayed"
            } else {
                "replayed to the outbox"
            };
            println!("{n} dead-lettered postbacks {verb}");
            Ok(())
        }
        Command::Recon(args) => {
            let recon = recon::run(&args, &cli.warehouse).await?;
            print!("{}", recon::render::table(&recon));
            let (csv, html) = recon::write_reports(&recon, &args.out_dir)?;
            println!("\nWrote {} and {}", csv.display(), html.display());
            Ok(())
        }
        Command::Schema(command) => schema::run(command).await,
        Command::Dashboard(args) => dashboard::serve(cli.warehouse.clone(), &args).await,
        Command::Gate(args) => {
            let gate = gate::run(&args, &cli.warehouse).await?;
            print!("{}", gate::table(&gate));
            if let Some(path) = &args.json {
                std::fs::write(path, serde_json::to_vec_pretty(&gate)?)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                println!("Wrote {}", path.display());
            }
            anyhow::ensure!(
                gate.verdict != gate::Verdict::Fail,
                "the gate failed: hold the rollout"
            );
            Ok(())
        }
        Command::Caps(CapsCommand::Status(args)) => {
            let rows = caps::run(&kafka, &args).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", caps::table(&rows));
            }
            Ok(())
        }
        Command::Fx(Fx::Import(args)) => {
            let rates = fx::read(&args)?;
            let done = fx::import(&cli.warehouse, &rates).await?;
            println!(
                "Imported {} rates of {} currency pairs for {} days ({} to {}) into fx_rates.",
                done.rates, done.pairs, done.days, done.first_day, done.last_day
            );
            Ok(())
        }
        Command::Erase(mut args) => {
            args.kafka = kafka;
            let e = erase::run(&args, &cli.warehouse).await?;
            if e.events == 0 {
                println!("Nothing in the ledger matches; nothing was changed.");
                return Ok(());
            }
            if args.dry_run {
                println!(
                    "Would erase {} ledger entries of {} conversions (dry run: nothing changed).",
                    e.events, e.conversions
                );
                return Ok(());
            }
            println!(
                "Erasure {}: {} ledger entries of {} conversions.",
                e.erasure_id, e.events, e.conversions
            );
            for (table, rows) in &e.rows {
                println!("  ClickHouse {table}: {rows} rows anonymised");
            }
            println!(
                "  processor: {} of {} conversions forgotten",
                e.processor_applied, e.conversions
            );
            anyhow::ensure!(
                e.processor_applied == e.conversions,
                "the processor has not applied every erasure request yet; it will when it runs (the requests wait in Kafka)"
            );
            Ok(())
        }
    }
}

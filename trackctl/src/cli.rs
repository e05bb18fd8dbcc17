//! The command line: `trackctl <command> --help` documents each one.

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

use crate::demo::DemoArgs;
use crate::erase::EraseArgs;
use crate::recon::ReconArgs;
use crate::replay::QuarantineReplay;
use crate::schema::SchemaCommand;
use crate::stack::Action;
use crate::warehouse::Warehouse;

#[derive(Parser, Debug)]
#[command(
    name = "trackctl",
    version,
    about = "Operate a Trackledger pipeline: the local stack, demo traffic, replay, reconciliation, the rollout gate, a dashboard, erasure, the schema registry and exchange rates"
)]
pub struct Cli {
    #[command(flatten)]
    pub warehouse: Warehouse,
    /// The Kafka connection of the commands that use Kafka (erase, replay, demo, caps).
    #[command(flatten)]
    pub kafka: telemetry::kafka::KafkaConnection,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start, stop or inspect the local stack (Kafka, ClickHouse and the services).
    Stack {
        #[arg(value_enum)]
        action: Action,
    },
    /// Send realistic traffic through ingest and print what the ledger made of it.
    Demo {
        #[command(flatten)]
        args: DemoArgs,
        /// The forwarder's topics, to count the dead letters.
        #[command(flatten)]
        postbacks: forwarder::config::Common,
    },
    /// Serve the demo's stand-in tracker and webhook (the destinations of config/destinations.toml).
    Receiver {
        #[arg(long, env = "DEMO_RECEIVER_BIND", default_value = "127.0.0.1:18090")]
        bind: SocketAddr,
    },
    /// Send refused input or dead-lettered postbacks through the pipeline again.
    #[command(subcommand)]
    Replay(Replay),
    /// Compare a network's payout report (CSV) with the ledger.
    Recon(ReconArgs),
    /// Erase one person's data from ClickHouse and the processor's state.
    Erase(EraseArgs),
    /// Register the contract in a schema registry, or check a change against it.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Serve a read-only page of the business view (revenue, EPC, rates, postbacks, the gate).
    Dashboard(crate::dashboard::DashboardArgs),
    /// Evaluate the rollout KPIs over a window; exit 1 if any fails.
    Gate(crate::gate::GateArgs),
    /// Exchange rates for the views' reporting currency.
    #[command(subcommand)]
    Fx(Fx),
    /// Conversion caps: how much of each the processor has counted.
    #[command(subcommand)]
    Caps(CapsCommand),
}

#[derive(Subcommand, Debug)]
pub enum CapsCommand {
    /// Each cap's current period: used, limit and share, from the processor's exact counters
    /// (the committed state of its capping stage).
    Status(crate::caps::CapsArgs),
}

#[derive(Subcommand, Debug)]
pub enum Fx {
    /// Import rates into ClickHouse's fx_rates from a CSV file or the ECB's euro
    /// reference-rate XML; a day and pair imported again takes the new rate.
    Import(crate::fx::ImportArgs),
}

// Parsed once per run: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Replay {
    /// Re-send quarantined requests to ingest (after fixing what refused them).
    Quarantine {
        #[command(flatten)]
        args: QuarantineReplay,
    },
    /// Put dead-lettered postbacks back on the outbox, with their idempotency keys.
    Dlq {
        #[command(flatten)]
        common: forwarder::config::Common,
        #[command(flatten)]
        filter: forwarder::config::ReplayArgs,
    },
}

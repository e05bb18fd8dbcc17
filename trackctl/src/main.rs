use clap::Parser;

#[tokio::main]
async fn main() {
    telemetry::init_cli_tracing();
    let cli = trackctl::cli::Cli::parse();
    let clickhouse = cli.warehouse.clickhouse.clone();
    if let Err(e) = trackctl::run(cli).await {
        let e = clickhouse.diagnose(e);
        eprintln!("trackctl: {e:#}");
        std::process::exit(1);
    }
}

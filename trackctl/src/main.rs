use clap::Parser;

#[tokio::main]
async fn main() {
    telemetry::init_cli_tracing();
    let cli = trackctl::cli::Cli::parse();
    if let Err(e) = trackctl::run(cli).await {
        eprintln!("trackctl: {e:#}");
        std::process::exit(1);
    }
}

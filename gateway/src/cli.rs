//! The `sluice` command line.

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

use crate::config::{Config, LogFormat, Overrides};
use crate::server::Gateway;

/// Sluice: a Kafka gateway.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway in front of a Kafka cluster.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// YAML configuration file; flags override its values.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Bootstrap servers of the Kafka cluster, `HOST:PORT[,HOST:PORT...]`.
    #[arg(long)]
    bootstrap: Option<String>,
    /// Kafka listener (the bootstrap port; broker ports follow it). Default 127.0.0.1:6969.
    #[arg(long)]
    listen: Option<String>,
    /// Host name advertised to clients in broker lists.
    #[arg(long)]
    advertised_host: Option<String>,
    /// Admin HTTP listener. Default 127.0.0.1:8888.
    #[arg(long)]
    admin: Option<String>,
    /// Directory for gateway state.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("`{other}` is not a log format (text or json)")),
    }
}

/// Parses the command line and runs it; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => match serve(args) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("sluice: {e:#}");
                1
            }
        },
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    let config = Config::load(
        args.config.as_deref(),
        Overrides {
            bootstrap: args.bootstrap,
            listen: args.listen,
            advertised_host: args.advertised_host,
            admin: args.admin,
            state_dir: args.state_dir,
            log_format: args.log_format,
        },
    )?;
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let gateway = Gateway::start(config).await?;
        wait_for_signal().await;
        gateway.shutdown().await;
        Ok(())
    })
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.logging.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

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
    /// Create or update the resources described in a YAML file (one or more documents).
    Apply {
        /// The YAML file (`-` for standard input).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show resources: `sluice get interceptors`, `sluice get plugin NAME`.
    Get {
        /// Kind: plugins, interceptors, service-accounts, groups, acls, virtual-clusters,
        /// alias-topics, concentration-rules or kms-keys (singular and CamelCase work too).
        kind: String,
        /// One resource; all when absent.
        name: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a resource: `sluice delete interceptor NAME`. `sluice delete kms-key ID`
    /// crypto-shreds: every record encrypted under that key id becomes unreadable for good.
    Delete {
        /// Kind: plugin, interceptor, service-account, group, acl, virtual-cluster, alias-topic,
        /// concentration-rule or kms-key.
        kind: String,
        /// Name.
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Plugin commands.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Upload (or replace) a plugin component.
    Push {
        /// Plugin name.
        name: String,
        /// The component (`.wasm`).
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Debug, clap::Args)]
struct ApiArgs {
    /// Admin API of the gateway (`https://...` when it serves TLS).
    #[arg(long, env = "SLUICE_ADMIN", default_value = "http://127.0.0.1:8888")]
    admin: String,
    /// Bearer token (the admin token, or the read-only one for `get`). A flag is visible to
    /// every local user in `ps`: prefer the SLUICE_ADMIN_TOKEN environment variable or
    /// --token-file.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token (one line); wins over --token.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// PEM CA bundle to trust for an `https://` admin API (default: the platform's trust
    /// store).
    #[arg(long, env = "SLUICE_ADMIN_CA_FILE")]
    ca_file: Option<PathBuf>,
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
    /// Admin HTTP listener. Default 127.0.0.1:8888. An address beyond loopback needs an admin
    /// token (or --admin-allow-unauthenticated).
    #[arg(long)]
    admin: Option<String>,
    /// Directory for gateway state.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    /// Bearer token the admin API requires for every resource read and write. A flag is
    /// visible to every local user in `ps`: prefer the SLUICE_ADMIN_TOKEN environment
    /// variable or --admin-token-file.
    #[arg(long, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// File holding the admin token (one line; keep it mode 0600).
    #[arg(long, env = "SLUICE_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Read-only bearer token (monitoring, consoles): reads of resources, never writes.
    /// Visible in `ps` like --admin-token: prefer SLUICE_ADMIN_READ_TOKEN or
    /// --admin-read-token-file.
    #[arg(long, env = "SLUICE_ADMIN_READ_TOKEN", hide_env_values = true)]
    admin_read_token: Option<String>,
    /// File holding the read-only token (one line).
    #[arg(long, env = "SLUICE_ADMIN_READ_TOKEN_FILE")]
    admin_read_token_file: Option<PathBuf>,
    /// Serve the admin API without a token on an address beyond loopback: anyone who reaches
    /// it can then upload plugins and create accounts and ACLs.
    #[arg(long)]
    admin_allow_unauthenticated: bool,
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
        Command::Serve(args) => report(serve(args)),
        Command::Apply { file, api } => report(
            api.client()
                .and_then(|c| crate::admin_client::apply(&c, &file)),
        ),
        Command::Get { kind, name, api } => report(
            api.client()
                .and_then(|c| crate::admin_client::get(&c, &kind, name.as_deref())),
        ),
        Command::Delete { kind, name, api } => report(
            api.client()
                .and_then(|c| crate::admin_client::delete(&c, &kind, &name)),
        ),
        Command::Plugin {
            command: PluginCommand::Push { name, file, api },
        } => report(
            api.client()
                .and_then(|c| crate::admin_client::push_plugin(&c, &name, &file)),
        ),
    }
}

impl ApiArgs {
    fn client(&self) -> Result<crate::admin_client::AdminClient> {
        let token = match &self.token_file {
            Some(path) => Some(crate::admin_client::read_token_file(path)?),
            None => self.token.clone(),
        };
        crate::admin_client::AdminClient::with_tls(&self.admin, token, self.ca_file.as_deref())
    }
}

fn report(r: Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            1
        }
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
            admin_token: args.admin_token,
            admin_token_file: args.admin_token_file,
            admin_read_token: args.admin_read_token,
            admin_read_token_file: args.admin_read_token_file,
            admin_allow_unauthenticated: args.admin_allow_unauthenticated,
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

//! The `herald` command: a thin shell around the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::config::{Config, Settings};
use herald::domain::clock::Clock;
use tokio_util::sync::CancellationToken;

/// Webhook traffic allocates many short-lived buffers on several threads;
/// mimalloc serves that pattern with far less contention than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Herald: a self-hosted webhook delivery server.
///
/// Products publish events to Herald's API; Herald signs them (Standard
/// Webhooks), POSTs them to every subscribed endpoint, retries what fails
/// and keeps the history. Settings come from flags, HERALD_* environment
/// variables, or a TOML file (same names in snake_case), in that order.
#[derive(Parser)]
#[command(name = "herald", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API and the delivery workers
    Serve(Args),
    /// Create or upgrade the database schema, then exit
    Migrate(Args),
    /// Measure throughput, latency and memory: start a Herald (or drive
    /// one with --url), publish through its API, receive on loopback
    Bench(herald::bench::BenchArgs),
    /// Soak test: publish for a while (10 minutes by default) to healthy,
    /// slow, failing and flapping receivers on a PostgreSQL cluster while
    /// nodes and PostgreSQL are killed and restarted, and to a SQLite node
    /// whose disk fills and frees; then check nothing accepted was lost
    ///
    /// The cluster's PostgreSQL is the soak's own: made with initdb in a
    /// temporary directory, on a free port (as root, run as the `postgres`
    /// user), so no other server is disturbed. The SQLite node's disk is a
    /// tmpfs mounted for the soak, sized for the run's history (root only;
    /// else --skip-sqlite).
    /// The first cluster node is never killed, so its memory is watched
    /// over the whole run. At the end: every accepted message delivered or
    /// in its final state (exhausted), duplicates within the in-flight cap
    /// per crash, memory flat (runs of 5 minutes or more), and every WARN
    /// or ERROR in the nodes' logs explained by a chaos event. Exits
    /// non-zero when a check fails. See docs/reliability.md.
    Soak(herald::bench::soak::SoakArgs),
    /// Make, list or revoke API tokens: administrator, application-scoped
    /// or owner-scoped, with an optional expiry
    #[command(subcommand)]
    Token(TokenCommand),
    /// Copy another webhook server's data into this Herald's database
    #[command(subcommand)]
    Import(ImportCommand),
    /// Make a secret key, or rotate the key that seals endpoint secrets
    /// (see docs/security.md, "Rotating the secret key")
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Render payload templates from stdin within a memory budget (Herald
    /// starts these workers itself)
    #[command(name = "render-worker", hide = true)]
    RenderWorker {
        /// Bytes of data memory this process may use
        limit: u64,
    },
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Copy a running Svix server through its API: event types with their
    /// schemas, applications, and endpoints with their headers and signing
    /// secrets (consumers keep verifying with the secret they have).
    ///
    /// Objects are matched by uid; one without a uid gets its Svix id as
    /// uid. Running it again changes only what differs. Message history is
    /// not copied. On SQLite, stop Herald first; on PostgreSQL, nodes may
    /// keep running. See docs/migrating-from-svix.md.
    Svix {
        /// The Svix server's address, e.g. https://svix.internal:8071
        #[arg(long, value_name = "URL")]
        url: String,
        /// An API token of that Svix server, sent as a bearer token
        #[arg(long, env = "SVIX_AUTH_TOKEN", value_name = "TOKEN", hide_env_values = true)]
        token: String,
        #[command(flatten)]
        args: Args,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a fresh 32-byte key in base64, for a key file
    Generate,
    /// Show which key seals, what is sealed under each key, and which keys
    /// every node holds
    Status {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Seal every endpoint secret again under the new key, batch by batch,
    /// through a running Herald. Refused until every node holds the new key.
    /// Safe to stop anywhere and run again; when it says done, the old key
    /// may be removed from every node's key file.
    Rotate {
        /// The id of the key to rotate to [default: the first key of the
        /// answering node's key file]
        #[arg(long, value_name = "ID")]
        key: Option<String>,
        /// Endpoints sealed again per request
        #[arg(long, default_value_t = 500, value_name = "N")]
        batch_size: u32,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// A running Herald's address
    #[arg(long, default_value = "http://127.0.0.1:8080", value_name = "URL")]
    url: String,
    /// An administrator token of that Herald
    #[arg(long, env = "HERALD_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print it, once (Herald keeps only its hash)
    Create {
        /// What the token is for, e.g. "billing service"
        #[arg(long)]
        name: String,
        /// Bind the token to this application (id or uid); without it the
        /// token is an administrator's
        #[arg(long, value_name = "APP")]
        app: Option<String>,
        /// With --app: only this owner's endpoints (a customer's token)
        #[arg(long, value_name = "OWNER", requires = "app")]
        owner: Option<String>,
        /// How long the token lives, e.g. 90d [default: no expiry]
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// Requests per second [default: HERALD_API_RATE_LIMIT]
        #[arg(long, value_name = "N")]
        rate_limit: Option<u32>,
        #[command(flatten)]
        args: Args,
    },
    /// List tokens (never the tokens themselves)
    List {
        #[command(flatten)]
        args: Args,
    },
    /// Revoke a token at once, on every node
    Revoke {
        /// The token's id (tok_…)
        id: String,
        #[command(flatten)]
        args: Args,
    },
}

#[derive(clap::Args)]
struct Args {
    /// TOML file with settings (keys as the flags, in snake_case), delivery
    /// profiles ([profiles.NAME] tables; see docs/recipes.md) and broker
    /// sources ([[sources]] tables; see docs/sources.md)
    #[arg(long, short, env = "HERALD_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(flatten)]
    settings: Settings,
}

fn main() -> ExitCode {
    match run_command(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

/// A refusal is for a person: the message and its causes, never a backtrace
/// (anyhow's `Debug` adds one whenever `RUST_BACKTRACE` is set).
fn report(error: &anyhow::Error) {
    eprintln!("Error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

fn run_command(cli: Cli) -> anyhow::Result<()> {
    let (args, migrate_only) = match cli.command {
        Command::Bench(bench) => return run_bench(bench),
        Command::Soak(soak) => return run_soak(soak),
        Command::Token(command) => return run_token(command),
        Command::Import(command) => return run_import(command),
        Command::Keys(command) => return run_keys(command),
        Command::RenderWorker { limit } => {
            return herald::delivery::render::serve_worker(limit).context("the render worker failed");
        }
        Command::Serve(args) => (args, false),
        Command::Migrate(args) => (args, true),
    };
    let config = Config::load(&args.settings, args.config.as_deref()).context("invalid configuration")?;
    init_logging(&config.log);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        if migrate_only {
            herald::store::open(&config, &Clock::system())
                .await
                .context("migration failed")?;
            tracing::info!("the database schema is up to date");
            Ok(())
        } else {
            serve(config).await
        }
    })
}

fn run_bench(args: herald::bench::BenchArgs) -> anyhow::Result<()> {
    init_logging("warn");
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let out = args.out.clone();
    runtime.block_on(herald::bench::run(args)).context("the bench failed")?;
    eprintln!("report written to {}", out.display());
    Ok(())
}

fn run_soak(args: herald::bench::soak::SoakArgs) -> anyhow::Result<()> {
    init_logging("warn");
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let passed = runtime
        .block_on(herald::bench::soak::run(args))
        .context("the soak could not run")?;
    anyhow::ensure!(passed, "the soak failed its checks (see the report above)");
    Ok(())
}

fn run_token(command: TokenCommand) -> anyhow::Result<()> {
    let args = match &command {
        TokenCommand::Create { args, .. } | TokenCommand::List { args } | TokenCommand::Revoke { args, .. } => args,
    };
    let config = Config::load(&args.settings, args.config.as_deref()).context("invalid configuration")?;
    init_logging("warn");
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let action = token_action(command)?;
    runtime.block_on(async {
        // The command line is an edge: it reads the system's clock.
        let clock = Clock::system();
        let store = herald::store::open(&config, &clock)
            .await
            .context("cannot open the database")?;
        herald::service::tokens::run(store.as_ref(), &clock, action).await?;
        anyhow::Ok(())
    })
}

fn run_import(command: ImportCommand) -> anyhow::Result<()> {
    let ImportCommand::Svix { url, token, args } = command;
    let config = Config::load(&args.settings, args.config.as_deref()).context("invalid configuration")?;
    init_logging("warn");
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let source = herald::cli::import_svix::Source { url, token };
    runtime.block_on(herald::cli::import_svix::run(config, source))?;
    Ok(())
}

fn run_keys(command: KeysCommand) -> anyhow::Result<()> {
    use herald::cli::keys::{self, Server};
    let server = |args: ServerArgs| Server {
        url: args.url,
        token: args.token,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    match command {
        KeysCommand::Generate => println!("{}", keys::generate()),
        KeysCommand::Status { server: args } => println!("{}", runtime.block_on(keys::status(&server(args)))?),
        KeysCommand::Rotate {
            key,
            batch_size,
            server: args,
        } => runtime.block_on(keys::rotate(&server(args), key, batch_size))?,
    }
    Ok(())
}

fn token_action(command: TokenCommand) -> anyhow::Result<herald::service::tokens::Action> {
    use herald::service::tokens::Action;
    Ok(match command {
        TokenCommand::Create {
            name,
            app,
            owner,
            expires_in,
            rate_limit,
            ..
        } => {
            let expires_in = expires_in
                .map(|d| herald::domain::retry::parse_duration(&d).context("--expires-in"))
                .transpose()?;
            Action::Create(herald::service::tokens::TokenIn {
                name,
                app_id: app,
                owner_id: owner,
                expires_in: expires_in.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                rate_limit,
            })
        }
        TokenCommand::List { .. } => Action::List,
        TokenCommand::Revoke { id, .. } => Action::Revoke(id),
    })
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    herald::run(listener, config, shutdown).await?;
    Ok(())
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    let term = herald::terminated();
    tokio::select! {
        _ = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

fn init_logging(filter: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Logs go to stderr; stdout carries only what a person must copy (a new token).
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

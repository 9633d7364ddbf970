//! `cairn`: every Cairn process and the command-line client in one binary.
//!
//! - `servers.rs`: `cairn meta`, `cairn chunk`, `cairn dev`
//! - `commands.rs`: the client commands (put, get, ls, ...)
//! - `session.rs`: the config file; login, logout and the user commands
//! - `output.rs`: tables, times and sizes for people; JSON for scripts

mod commands;
mod output;
mod servers;
mod session;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: replicated file storage across many machines"
)]
struct Cli {
    /// Metadata service address (host:port), or the members of a metadata
    /// group separated by commas [default: 127.0.0.1:7700]
    #[arg(long, global = true, env = "CAIRN_META")]
    meta: Option<String>,
    /// Let any metadata member answer reads from its own state, which may
    /// lag the leader's by a moment (works while no leader is elected)
    #[arg(long, global = true)]
    stale_ok: bool,
    /// How long a command keeps retrying while the metadata group elects a
    /// leader or a member is unreachable, as in 30s
    #[arg(long, global = true, default_value = "30s", value_parser = cairn_proto::units::parse_duration)]
    failover_timeout: std::time::Duration,
    /// The cluster's CA certificate (PEM): talk TLS to servers whose
    /// certificates it signed [default: the config's, else plain HTTP]
    #[arg(long, global = true, env = "CAIRN_CA")]
    ca: Option<std::path::PathBuf>,
    /// Client config file: metadata addresses and the login session
    /// [default: $CAIRN_CONFIG, else ~/.config/cairn/config.json]
    #[arg(long, global = true)]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the metadata service
    Meta(servers::MetaArgs),
    /// Run a chunk server
    Chunk(servers::ChunkArgs),
    /// Run a local cluster: 1 or 3 metadata members and N chunk servers
    Dev(servers::DevArgs),
    /// Store a local file (or stdin, `-`) in Cairn
    Put(commands::PutArgs),
    /// Fetch a file from Cairn to a local file (or stdout, `-`)
    Get(commands::GetArgs),
    /// Print a file's contents
    Cat(commands::CatArgs),
    /// List a directory
    Ls(commands::LsArgs),
    /// Create a directory
    Mkdir(commands::MkdirArgs),
    /// Remove a file or directory
    Rm(commands::RmArgs),
    /// Move or rename a file or directory (atomic)
    Mv(commands::MoveArgs),
    /// Copy a file (shares its chunks; no data is copied)
    Cp(commands::MoveArgs),
    /// Show a file's or directory's metadata
    Stat(commands::StatArgs),
    /// Log in: prompts for the password and keeps the session in the config file
    Login(session::LoginArgs),
    /// End this session (or, with --all, every session of the user)
    Logout(session::LogoutArgs),
    /// Show who you are logged in as
    Whoami,
    /// Manage users: add, passwd, rm, list, revoke
    #[command(subcommand)]
    User(session::UserCommand),
    /// Set a file's or directory's permission bits (owner or admin), as in 640
    Chmod(commands::ChmodArgs),
    /// Set a file's or directory's owner and/or group: OWNER, OWNER:GROUP or :GROUP
    Chown(commands::ChownArgs),
    /// Show the cluster: map epoch, nodes, replication, repair and scrub progress
    Status(commands::StatusArgs),
    /// Check that every chunk of every file is on its nodes and intact
    Fsck(commands::FsckArgs),
    /// Manage storage nodes: drain, undrain, remove
    #[command(subcommand)]
    Node(commands::NodeCommand),
    /// Manage the metadata group: members, add-voter, add-learner, remove, snapshot
    #[command(subcommand, name = "meta-admin")]
    MetaAdmin(commands::MetaAdminCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_server = matches!(
        cli.command,
        Command::Meta(_) | Command::Chunk(_) | Command::Dev(_)
    );
    init_logging(if is_server { "info" } else { "warn" });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let config_path = session::config_path(cli.config.as_deref());
    let config = if is_server {
        session::ClientConfig::default()
    } else {
        match session::load(&config_path) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    };
    let dev_count = cli.meta.clone();
    let meta_addrs = cli
        .meta
        .or_else(|| config.meta.clone())
        .unwrap_or_else(|| cairn_proto::DEFAULT_META_ADDR.to_string());
    let token = std::env::var("CAIRN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| config.token.clone());
    let ca = cli
        .ca
        .clone()
        .or_else(|| config.ca.as_ref().map(std::path::PathBuf::from));
    let tls = match &ca {
        Some(path) => match cairn_transport::ClientTls::from_ca_file(path) {
            Ok(tls) => tls,
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        None => cairn_transport::ClientTls::plain(),
    };
    let meta = &cairn_client::MetaClient::new(&meta_addrs)
        .with_stale_ok(cli.stale_ok)
        .with_failover_timeout(cli.failover_timeout)
        .with_token(token)
        .with_tls(tls.clone());
    let session = session::Session {
        config_path: config_path.clone(),
        config: config.clone(),
        meta_addrs: meta_addrs.clone(),
        ca: ca.clone(),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Meta(args) => servers::meta(args, tls).await,
            Command::Chunk(args) => servers::chunk(args, meta_addrs, tls).await,
            Command::Dev(mut args) => {
                // For `dev`, `--meta N` is how many metadata members to run
                // (an address, as from CAIRN_META, means the default).
                if let Some(count) = dev_count.and_then(|c| c.parse().ok()) {
                    args.meta = count;
                }
                servers::dev(args).await
            }
            Command::Login(args) => session::login(meta, &session, args).await,
            Command::Logout(args) => session::logout(meta, &session, args).await,
            Command::Whoami => session::whoami(meta).await,
            Command::User(command) => session::user(meta, command).await,
            Command::Chmod(args) => commands::chmod(meta, args).await,
            Command::Chown(args) => commands::chown(meta, args).await,
            Command::Put(args) => commands::put(meta, args).await,
            Command::Get(args) => commands::get(meta, args).await,
            Command::Cat(args) => commands::cat(meta, args).await,
            Command::Ls(args) => commands::ls(meta, args).await,
            Command::Mkdir(args) => commands::mkdir(meta, args).await,
            Command::Rm(args) => commands::rm(meta, args).await,
            Command::Mv(args) => commands::mv(meta, args).await,
            Command::Cp(args) => commands::cp(meta, args).await,
            Command::Stat(args) => commands::stat(meta, args).await,
            Command::Status(args) => commands::status(meta, args).await,
            Command::Fsck(args) => commands::fsck(meta, args).await,
            Command::Node(command) => commands::node(meta, command).await,
            Command::MetaAdmin(command) => commands::meta_admin(meta, command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{default_level},openraft=warn"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

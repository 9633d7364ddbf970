//! `cairn`: every Cairn process and the command-line client in one binary.
//!
//! - `servers.rs`: `cairn meta`, `cairn chunk`, `cairn s3`, `cairn dev`
//! - `context.rs`: what client commands stand on (the file API, the
//!   working directory that relative paths start from)
//! - `file_commands.rs`: put, get, cat, ls, mkdir, rm, mv, cp, stat,
//!   chmod, chown, xattr
//! - `cluster_commands.rs`: status, fsck, node, meta-admin
//! - `shell.rs`: `cairn shell`, the interactive shell
//! - `session.rs`: the config file; login, logout and the user commands
//! - `key_commands.rs`: `cairn key`, S3 access keys
//! - `output.rs`: tables, times, sizes and escaped names for people

mod cluster_commands;
mod context;
mod file_commands;
mod key_commands;
mod mount_commands;
mod output;
mod servers;
mod session;
mod shell;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::context::Context;

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
    /// Run an S3-compatible gateway (any number; each is stateless)
    S3(servers::S3Args),
    /// Run the web page (any number; each is stateless): browse, upload,
    /// download, S3 keys, cluster health
    Web(servers::WebArgs),
    /// Run a local cluster: 1 or 3 metadata members, N chunk servers, an
    /// S3 gateway and the web page
    Dev(servers::DevArgs),
    /// An interactive shell: cd, ls, put, get, ... with line editing,
    /// history and completion of remote paths
    Shell,
    /// Print a completion script for a shell: bash, zsh, fish, elvish or powershell
    Completions(CompletionsArgs),
    #[command(flatten)]
    Files(FileCommand),
    /// Log in: prompts for the password and keeps the session in the config file
    Login(session::LoginArgs),
    /// End this session (or, with --all, every session of the user)
    Logout(session::LogoutArgs),
    /// Show who you are logged in as
    Whoami,
    /// Manage users: add, passwd, rm, list, revoke
    #[command(subcommand)]
    User(session::UserCommand),
    /// Manage S3 access keys: create, list, rm
    #[command(subcommand)]
    Key(key_commands::KeyCommand),
    /// Mount the cluster as a local directory (FUSE), in the foreground
    Mount(mount_commands::MountArgs),
    /// Unmount a directory `cairn mount` serves
    Umount(mount_commands::UmountArgs),
    /// Show the cluster: map epoch, nodes, replication, repair and scrub progress
    Status(cluster_commands::StatusArgs),
    /// Check that every chunk of every file is on its nodes and intact
    Fsck(cluster_commands::FsckArgs),
    /// Manage storage nodes: drain, undrain, remove
    #[command(subcommand)]
    Node(cluster_commands::NodeCommand),
    /// Manage the metadata group: members, add-voter, add-learner, remove, snapshot
    #[command(subcommand, name = "meta-admin")]
    MetaAdmin(cluster_commands::MetaAdminCommand),
}

/// The commands on files and directories: the same in the shell.
#[derive(Subcommand)]
pub enum FileCommand {
    /// Store a local file (or stdin, `-`) in Cairn
    Put(file_commands::PutArgs),
    /// Fetch a file (or a byte range of it) to a local file (or stdout, `-`)
    Get(file_commands::GetArgs),
    /// Print a file's contents (or a byte range of them)
    Cat(file_commands::CatArgs),
    /// List a directory (or, with -R, everything below it)
    Ls(file_commands::LsArgs),
    /// Create a directory
    Mkdir(file_commands::MkdirArgs),
    /// Remove a file or directory
    Rm(file_commands::RmArgs),
    /// Move or rename a file or directory (atomic)
    Mv(file_commands::MoveArgs),
    /// Copy a file (shares its chunks; no data is copied)
    Cp(file_commands::MoveArgs),
    /// Give a file another name (a hard link), or with -s make a symbolic link
    Ln(file_commands::LnArgs),
    /// Show a file's or directory's metadata
    Stat(file_commands::StatArgs),
    /// Set a file's or directory's permission bits (owner or admin), as in 640
    Chmod(file_commands::ChmodArgs),
    /// Set a file's or directory's owner and/or group: OWNER, OWNER:GROUP or :GROUP
    Chown(file_commands::ChownArgs),
    /// Extended attributes: get, set, list, rm
    #[command(subcommand)]
    Xattr(file_commands::XattrCommand),
}

impl FileCommand {
    pub async fn run(self, ctx: &Context) -> anyhow::Result<ExitCode> {
        match self {
            FileCommand::Put(args) => file_commands::put(ctx, args).await,
            FileCommand::Get(args) => file_commands::get(ctx, args).await,
            FileCommand::Cat(args) => file_commands::cat(ctx, args).await,
            FileCommand::Ls(args) => file_commands::ls(ctx, args).await,
            FileCommand::Mkdir(args) => file_commands::mkdir(ctx, args).await,
            FileCommand::Rm(args) => file_commands::rm(ctx, args).await,
            FileCommand::Mv(args) => file_commands::mv(ctx, args).await,
            FileCommand::Cp(args) => file_commands::cp(ctx, args).await,
            FileCommand::Ln(args) => file_commands::ln(ctx, args).await,
            FileCommand::Stat(args) => file_commands::stat(ctx, args).await,
            FileCommand::Chmod(args) => file_commands::chmod(ctx, args).await,
            FileCommand::Chown(args) => file_commands::chown(ctx, args).await,
            FileCommand::Xattr(command) => file_commands::xattr(ctx, command).await,
        }
    }
}

#[derive(clap::Args)]
struct CompletionsArgs {
    shell: clap_complete::Shell,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions(args) = &cli.command {
        clap_complete::generate(
            args.shell,
            &mut Cli::command(),
            "cairn",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let is_server = matches!(
        cli.command,
        Command::Meta(_) | Command::Chunk(_) | Command::S3(_) | Command::Web(_) | Command::Dev(_)
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
    // The member that led when the last command ran gets the first call.
    let remembered_leader = (!is_server)
        .then(|| session::remembered_leader(&config_path, &meta_addrs))
        .flatten();
    let meta = cairn_client::MetaClient::new(&meta_addrs)
        .with_stale_ok(cli.stale_ok)
        .with_failover_timeout(cli.failover_timeout)
        .with_token(token)
        .with_tls(tls.clone())
        .with_leader_hint(remembered_leader.as_deref());
    let ctx = &Context::new(meta.clone(), config.user.clone());
    let session = session::Session {
        config_path: config_path.clone(),
        config: config.clone(),
        meta_addrs: meta_addrs.clone(),
        ca: ca.clone(),
    };
    let result = match cli.command {
        Command::Shell => shell::run(&runtime, ctx, &session),
        command => runtime.block_on(async {
            match command {
                Command::Meta(args) => servers::meta(args, tls).await,
                Command::Chunk(args) => servers::chunk(args, meta_addrs.clone(), tls).await,
                Command::S3(args) => servers::s3(args, meta_addrs.clone(), tls).await,
                Command::Web(args) => servers::web(args, meta_addrs.clone(), tls).await,
                Command::Dev(mut args) => {
                    // For `dev`, `--meta N` is how many metadata members to
                    // run (an address, as from CAIRN_META, means the default).
                    if let Some(count) = dev_count.and_then(|c| c.parse().ok()) {
                        args.meta = count;
                    }
                    servers::dev(args).await
                }
                Command::Shell | Command::Completions(_) => unreachable!("handled above"),
                Command::Files(command) => command.run(ctx).await,
                Command::Login(args) => session::login(&meta, &session, args).await,
                Command::Logout(args) => session::logout(&meta, &session, args).await,
                Command::Whoami => session::whoami(&meta).await,
                Command::User(command) => session::user(&meta, command).await,
                Command::Key(command) => key_commands::key(&meta, command).await,
                Command::Mount(args) => mount_commands::mount(ctx, args).await,
                Command::Umount(args) => mount_commands::umount(args),
                Command::Status(args) => cluster_commands::status(&meta, args).await,
                Command::Fsck(args) => cluster_commands::fsck(ctx, args).await,
                Command::Node(command) => cluster_commands::node(&meta, command).await,
                Command::MetaAdmin(command) => cluster_commands::meta_admin(&meta, command).await,
            }
        }),
    };
    if !is_server && remembered_leader.as_deref() != Some(meta.addr().as_str()) {
        session::remember_leader(&config_path, &meta_addrs, &meta.addr());
    }
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
        // fuser warns when `cairn umount` unmounted before it could, and
        // for every operation Cairn leaves to the kernel's default.
        tracing_subscriber::EnvFilter::new(format!("{default_level},openraft=warn,fuser=error"))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

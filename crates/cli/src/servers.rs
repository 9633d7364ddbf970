//! The server subcommands: `cairn meta`, `cairn chunk` and `cairn dev`.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_client::MetaClient;
use cairn_proto::units::{parse_duration, parse_size};
use clap::Args;
use tokio::process::{Child, Command};

/// `println!` that ignores a closed stdout (as in `cairn dev | head`): the
/// cluster must still stop cleanly.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

#[derive(Args)]
pub struct MetaArgs {
    /// Directory for the metadata database
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to listen on
    #[arg(long, default_value = cairn_proto::DEFAULT_META_ADDR)]
    listen: String,
    /// This member's id in the metadata group (1 up; never reused)
    #[arg(long, default_value_t = 1)]
    id: u64,
    /// Every member of the metadata group to form, this one included, as
    /// 1=HOST:PORT,2=HOST:PORT,3=HOST:PORT [default: a group of this one]
    #[arg(long)]
    peers: Option<String>,
    /// Start empty and wait to be added to a running group with
    /// `cairn meta-admin add-voter` (never form a group of its own)
    #[arg(long)]
    join: bool,
    /// Snapshot the metadata state, and drop the log before it, every this
    /// many log entries
    #[arg(long, default_value_t = 10_000)]
    snapshot_logs: u64,
    /// A member that hears nothing from the leader for between one and two
    /// of these stands for election (the leader heartbeats 5 times as often)
    #[arg(long, default_value = "750ms", value_parser = parse_duration)]
    election_timeout: Duration,
    /// File holding the cluster's secret (at least 16 bytes): chunk servers
    /// and other members must have the same to join. Required for a group;
    /// a single member makes DATA_DIR/cluster.secret if not given
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
    /// File with the first admin's password: read when the cluster has no
    /// user yet, or written (mode 0600) with a new random one if missing
    /// [default: DATA_DIR/admin.password]
    #[arg(long)]
    admin_password_file: Option<PathBuf>,
    /// Copies of every chunk (kept in the cluster map) [default on a new cluster: 3]
    #[arg(long)]
    replication: Option<u32>,
    /// Size of a chunk, as in 4MiB (kept in the cluster map) [default on a new cluster: 4MiB]
    #[arg(long, value_parser = parse_size)]
    chunk_size: Option<u64>,
    /// Mark a storage node down after this long without a heartbeat
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    down_after: Duration,
    /// A down node must heartbeat steadily this long before it is up again (flap damping)
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    up_after: Duration,
    /// How long the chunk capabilities handed to readers and writers are
    /// good for; clients ask for fresh ones before they run out
    #[arg(long, default_value = "4h", value_parser = parse_duration)]
    capability_ttl: Duration,
}

#[derive(Args)]
pub struct ChunkArgs {
    /// Directory for chunks and this node's id
    #[arg(long)]
    data_dir: PathBuf,
    /// Address to listen on (and to be reached at)
    #[arg(long, default_value = "127.0.0.1:7701")]
    listen: String,
    /// Failure zone (rack, host, room); copies of a chunk go to distinct zones when possible
    #[arg(long, default_value = "default")]
    zone: String,
    /// Most bytes of chunks to hold, and the placement weight, as in 500GiB [default: the size of the disk]
    #[arg(long, value_parser = parse_size)]
    capacity: Option<u64>,
    /// Free disk space to leave for everything else; under it the node is `full`
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    reserve: u64,
    /// Time between heartbeats to the metadata service
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// Time between repair passes when the map does not change
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    repair_interval: Duration,
    /// Most bytes per second the repair loop sends to other nodes, as in 100MiB
    #[arg(long, default_value = "100MiB", value_parser = parse_size)]
    repair_rate: u64,
    /// Time between the starts of two full scrub passes (re-hashing every chunk)
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    scrub_interval: Duration,
    /// Most bytes per second the scrubber reads, as in 32MiB
    #[arg(long, default_value = "32MiB", value_parser = parse_size)]
    scrub_rate: u64,
    /// Delete a chunk no file references only after it has been here this long
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    collect_grace: Duration,
    /// File holding the cluster's secret, the same as the metadata members'
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Args)]
pub struct S3Args {
    /// Address to listen on for S3 clients
    #[arg(long, default_value = DEFAULT_S3_ADDR)]
    listen: String,
    /// File holding the cluster's secret, the same as the metadata
    /// members': the gateway checks request signatures with secrets only
    /// cluster processes may read
    #[arg(long)]
    cluster_secret_file: PathBuf,
    /// Remove multipart uploads not touched for this long
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    multipart_expiry: Duration,
    /// Largest single PutObject or UploadPart body, as in 5GiB
    #[arg(long, default_value = "5GiB", value_parser = parse_size)]
    max_put_size: u64,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Where `cairn s3` listens unless told.
pub const DEFAULT_S3_ADDR: &str = "127.0.0.1:7780";

#[derive(Args)]
pub struct WebArgs {
    /// Address to listen on for browsers
    #[arg(long, default_value = DEFAULT_WEB_ADDR)]
    listen: String,
    /// File holding the cluster's secret: with it, visitors can make S3
    /// buckets on the page (only cluster processes add to /buckets);
    /// everything else acts with the visitor's own session
    #[arg(long)]
    cluster_secret_file: Option<PathBuf>,
    #[command(flatten)]
    tls: TlsArgs,
}

/// Where `cairn web` listens unless told.
pub const DEFAULT_WEB_ADDR: &str = "127.0.0.1:7790";

/// The TLS flags of every server.
#[derive(Args)]
pub struct TlsArgs {
    /// This server's TLS certificate chain (PEM); with --tls-key it serves
    /// only TLS, and every process of the cluster needs --ca
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    /// The server side of TLS, if the flags ask for it.
    fn load(&self) -> anyhow::Result<Option<cairn_transport::ServerTls>> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(cairn_transport::ServerTls::load(cert, key)?)),
            _ => Ok(None),
        }
    }
}

#[derive(Args)]
pub struct DevArgs {
    /// Directory for all the cluster's data; running again on it brings the data back
    #[arg(long, default_value = "./cairn-dev")]
    dir: PathBuf,
    /// Number of chunk servers
    #[arg(long, default_value_t = 3)]
    nodes: u16,
    /// Number of metadata members, given as `cairn dev --meta N` (the
    /// global --meta flag): 1, or 3 or 5 for a group that survives the loss
    /// of 1 or 2 of them
    #[arg(skip = 1u16)]
    pub meta: u16,
    /// First metadata port; further members and then chunk servers take
    /// the ports after it
    #[arg(long, default_value_t = 7700)]
    port: u16,
    /// Mark a storage node down after this long without a heartbeat
    #[arg(long, default_value = "10s")]
    down_after: String,
    /// Free disk space each chunk server leaves for everything else
    #[arg(long, default_value = "64MiB")]
    reserve: String,
    /// Serve TLS: make a private CA and a certificate for 127.0.0.1 under
    /// DIR/tls (once), and give them to every process and to the client config
    #[arg(long)]
    tls: bool,
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}

pub async fn meta(
    args: MetaArgs,
    client_tls: cairn_transport::ClientTls,
) -> anyhow::Result<ExitCode> {
    let peers = match &args.peers {
        Some(text) => cairn_meta::group::parse_peers(text).map_err(anyhow::Error::msg)?,
        None => Default::default(),
    };
    let secret_file = match args.cluster_secret_file {
        Some(path) => path,
        // Every member of a group must hold the same secret: one made here
        // would lock the others out.
        None if !peers.is_empty() || args.join => bail!(
            "a metadata group needs --cluster-secret-file, the same file for every member and chunk server; \
             make one with `head -c 32 /dev/urandom | base64 > cluster.secret; chmod 600 cluster.secret`"
        ),
        None => {
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
            let path = args.data_dir.join("cluster.secret");
            let made = ensure_secret_file(&path)?;
            tracing::warn!(
                file = %path.display(),
                made,
                "no --cluster-secret-file: using this one; give chunk servers --cluster-secret-file with a copy of it"
            );
            path
        }
    };
    let secret = read_cluster_secret(Some(&secret_file))?;
    let config = cairn_meta::MetaConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        id: args.id,
        peers,
        join: args.join,
        snapshot_logs: args.snapshot_logs,
        election_timeout: args.election_timeout,
        cluster_token: secret.as_ref().map(|s| s.token.clone()),
        capability_key: secret.as_ref().map(|s| s.capability_key.clone()),
        sealing_key: secret.map(|s| s.sealing_key),
        capability_ttl: args.capability_ttl,
        tls: args.tls.load()?,
        client_tls,
        admin_password_file: args.admin_password_file,
        replication: args.replication,
        chunk_size_bytes: args.chunk_size,
        down_after: args.down_after,
        up_after: args.up_after,
    };
    cairn_meta::run(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn chunk(
    args: ChunkArgs,
    meta: String,
    client_tls: cairn_transport::ClientTls,
) -> anyhow::Result<ExitCode> {
    for (flag, value) in [
        ("--repair-rate", args.repair_rate),
        ("--scrub-rate", args.scrub_rate),
    ] {
        if value == 0 {
            bail!("{flag} must be more than 0 bytes per second");
        }
    }
    for (flag, value) in [
        ("--heartbeat-interval", args.heartbeat_interval),
        ("--repair-interval", args.repair_interval),
        ("--scrub-interval", args.scrub_interval),
    ] {
        if value.is_zero() {
            bail!("{flag} must be longer than 0");
        }
    }
    let secret = read_cluster_secret(args.cluster_secret_file.as_deref())?;
    let config = cairn_chunk::ChunkConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        meta,
        cluster_token: secret.as_ref().map(|s| s.token.clone()),
        capability_key: secret.map(|s| s.capability_key),
        tls: args.tls.load()?,
        client_tls,
        zone: args.zone,
        capacity_bytes: args.capacity,
        reserve_bytes: args.reserve,
        heartbeat_interval: args.heartbeat_interval,
        repair: cairn_chunk::repair::RepairConfig {
            interval: args.repair_interval,
            rate_bytes_per_second: args.repair_rate,
        },
        scrub_interval: args.scrub_interval,
        scrub_rate_bytes_per_second: args.scrub_rate,
        collect_grace: args.collect_grace,
    };
    cairn_chunk::run(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn s3(
    args: S3Args,
    meta: String,
    client_tls: cairn_transport::ClientTls,
) -> anyhow::Result<ExitCode> {
    if args.multipart_expiry.is_zero() || args.max_put_size == 0 {
        bail!("--multipart-expiry and --max-put-size must be more than 0");
    }
    let secret =
        read_cluster_secret(Some(&args.cluster_secret_file))?.expect("a secret file was given");
    let tls = args.tls.load()?;
    cairn_transport::check_tls_settings(tls.as_ref(), &client_tls)?;
    let meta = MetaClient::new(&meta)
        .with_tls(client_tls)
        .with_cluster_token(Some(secret.token));
    let config = cairn_s3::S3Config {
        listen: args.listen,
        meta,
        tls,
        limits: cairn_s3::GatewayLimits {
            max_put_bytes: args.max_put_size,
            multipart_expiry: args.multipart_expiry,
        },
        // Often enough that an expiry is kept to within an hour.
        sweep_interval: Duration::from_secs(3600).min(args.multipart_expiry),
    };
    cairn_s3::run(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn web(
    args: WebArgs,
    meta: String,
    client_tls: cairn_transport::ClientTls,
) -> anyhow::Result<ExitCode> {
    let tls = args.tls.load()?;
    cairn_transport::check_tls_settings(tls.as_ref(), &client_tls)?;
    let secret = read_cluster_secret(args.cluster_secret_file.as_deref())?;
    let meta = MetaClient::new(&meta).with_tls(client_tls);
    let config = cairn_web::WebConfig {
        listen: args.listen,
        system: secret.map(|secret| meta.clone().with_cluster_token(Some(secret.token))),
        meta,
        tls,
    };
    cairn_web::run(config, shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// The shortest cluster secret accepted.
const MIN_SECRET_BYTES: usize = 16;

/// What a server derives from the cluster secret.
struct ClusterSecret {
    /// Proves membership of the cluster (joining, Raft, chunk server peers).
    token: String,
    /// Signs (meta) and checks (chunk) chunk capabilities.
    capability_key: cairn_proto::api::CapabilityKey,
    /// Seals (meta) the secrets of S3 access keys.
    sealing_key: cairn_meta::auth::SealingKey,
}

/// Reads the cluster secret file and derives the token servers exchange
/// and the key of chunk capabilities.
fn read_cluster_secret(path: Option<&Path>) -> anyhow::Result<Option<ClusterSecret>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the cluster secret file {}", path.display()))?;
    let secret = bytes.trim_ascii();
    if secret.len() < MIN_SECRET_BYTES {
        bail!(
            "the cluster secret in {} is {} bytes; use at least {MIN_SECRET_BYTES}, as made by \
             `head -c 32 /dev/urandom | base64 > FILE`",
            path.display(),
            secret.len()
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            "the cluster secret file can be read by other users; chmod 600 it"
        );
    }
    Ok(Some(ClusterSecret {
        token: cairn_proto::api::cluster_token(secret),
        capability_key: cairn_proto::api::CapabilityKey::from_secret(secret),
        sealing_key: cairn_meta::auth::SealingKey::from_secret(secret),
    }))
}

/// Makes `path` hold a new random cluster secret (mode 0600) unless it
/// exists.
fn ensure_cluster_secret(path: &Path) -> anyhow::Result<()> {
    ensure_secret_file(path).map(|_| ())
}

/// Makes `path` hold a new random secret (mode 0600) unless it exists;
/// says whether it made one.
fn ensure_secret_file(path: &Path) -> anyhow::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    };
    // Two random v4 UUIDs: 244 random bits.
    let secret = format!(
        "{}{}\n",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(true)
}

/// How long `cairn dev` waits for the cluster to become healthy.
const DEV_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child gets to stop after SIGTERM before it is killed.
const DEV_STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn dev(args: DevArgs) -> anyhow::Result<ExitCode> {
    if args.nodes == 0 || args.nodes > 100 {
        bail!("--nodes must be between 1 and 100; got {}", args.nodes);
    }
    if ![1, 3, 5].contains(&args.meta) {
        bail!(
            "--meta must be 1, 3 or 5 metadata members; got {}",
            args.meta
        );
    }
    if u32::from(args.port) + u32::from(args.meta) + u32::from(args.nodes) + 1 > 65535 {
        bail!(
            "--port {} leaves no room for {} metadata, {} chunk server and 1 S3 ports after it",
            args.port,
            args.meta,
            args.nodes
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    let exe = std::env::current_exe().context("cannot find the cairn executable")?;
    let meta_addrs: Vec<String> = (0..args.meta)
        .map(|i| format!("127.0.0.1:{}", args.port + i))
        .collect();
    let meta_list = meta_addrs.join(",");
    let secret_path = dir.join("cluster.secret");
    ensure_cluster_secret(&secret_path)?;
    let secret_file = path_str(&secret_path)?;
    // Every member reads the first admin's password from one file, made
    // here, so that this process can log in with it.
    let password_path = dir.join("admin.password");
    let new_password = ensure_secret_file(&password_path)?;
    let password_file = path_str(&password_path)?;
    // With --tls: one CA and one certificate for every process (all on
    // 127.0.0.1), made once and kept with the data.
    let pki = if args.tls {
        Some(cairn_transport::pki::ensure_dev_pki(
            &dir.join("tls"),
            &["127.0.0.1", "localhost"],
        )?)
    } else {
        None
    };
    let mut tls_args: Vec<&str> = Vec::new();
    if let Some(pki) = &pki {
        tls_args.extend([
            "--tls-cert",
            path_str(&pki.server_cert)?,
            "--tls-key",
            path_str(&pki.server_key)?,
            "--ca",
            path_str(&pki.ca_cert)?,
        ]);
    }
    let peers = meta_addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{}={addr}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut children: Vec<(String, Child)> = Vec::new();
    for (i, addr) in meta_addrs.iter().enumerate() {
        // One member keeps the directory name of earlier versions.
        let name = if args.meta == 1 {
            "meta".to_string()
        } else {
            format!("meta-{}", i + 1)
        };
        let data_dir = dir.join(&name);
        let id = (i + 1).to_string();
        let mut meta_args = vec![
            "meta",
            "--data-dir",
            path_str(&data_dir)?,
            "--listen",
            addr,
            "--id",
            &id,
            "--down-after",
            &args.down_after,
            "--cluster-secret-file",
            secret_file,
            "--admin-password-file",
            password_file,
        ];
        if args.meta > 1 {
            meta_args.extend(["--peers", &peers]);
        }
        meta_args.extend(&tls_args);
        let child = spawn_child(&exe, &dir, &name, &meta_args)?;
        children.push((name, child));
    }
    let mut chunk_addrs = Vec::new();
    for i in 1..=args.nodes {
        let addr = format!("127.0.0.1:{}", args.port + args.meta - 1 + i);
        let data_dir = dir.join(format!("chunk-{i}"));
        let name = format!("chunk-{i}");
        let mut chunk_args = vec![
            "chunk",
            "--meta",
            &meta_list,
            "--data-dir",
            path_str(&data_dir)?,
            "--listen",
            &addr,
            "--reserve",
            &args.reserve,
            "--cluster-secret-file",
            secret_file,
        ];
        chunk_args.extend(&tls_args);
        let child = spawn_child(&exe, &dir, &name, &chunk_args)?;
        children.push((name, child));
        chunk_addrs.push(addr);
    }

    let client_config = dir.join("client.json");
    let s3_addr = format!("127.0.0.1:{}", args.port + args.meta + args.nodes);
    let web_addr = format!("127.0.0.1:{}", args.port + args.meta + args.nodes + 1);
    let ready = tokio::select! {
        ready = log_in_and_wait_healthy(&meta_list, &password_path, &client_config, pki.as_ref(), args.nodes as usize) => ready,
        (name, status) = first_exit(&mut children) => Err(exited_while_starting(&dir, &name, status)),
        _ = shutdown_signal() => Err(anyhow::anyhow!("interrupted while starting")),
    };
    let admin = match ready {
        Ok(admin) => admin,
        Err(e) => {
            stop_children(&mut children).await;
            return Err(e.context(format!(
                "the local cluster did not start; see the logs in {}",
                dir.display()
            )));
        }
    };
    // The S3 gateway, once the cluster is up, and a key for admin.
    let mut s3_args = vec![
        "s3",
        "--meta",
        &meta_list,
        "--listen",
        &s3_addr,
        "--cluster-secret-file",
        secret_file,
    ];
    s3_args.extend(&tls_args);
    children.push(("s3".to_string(), spawn_child(&exe, &dir, "s3", &s3_args)?));
    let key_path = dir.join("s3.key");
    let mut web_args = vec![
        "web",
        "--meta",
        &meta_list,
        "--listen",
        &web_addr,
        "--cluster-secret-file",
        secret_file,
    ];
    web_args.extend(&tls_args);
    children.push((
        "web".to_string(),
        spawn_child(&exe, &dir, "web", &web_args)?,
    ));
    let s3_ready = tokio::select! {
        ready = async {
            wait_listening(&s3_addr).await?;
            wait_listening(&web_addr).await?;
            ensure_dev_key(&admin, &key_path).await
        } => ready,
        (name, status) = first_exit(&mut children) => Err(exited_while_starting(&dir, &name, status)),
        _ = shutdown_signal() => Err(anyhow::anyhow!("interrupted while starting")),
    };
    let key = match s3_ready {
        Ok(key) => key,
        Err(e) => {
            stop_children(&mut children).await;
            return Err(e.context(format!(
                "the S3 gateway or the web page did not start; see {}/s3.log and web.log",
                dir.display()
            )));
        }
    };
    say!(
        "Cairn dev cluster is up (data in {}, logs in {}/*.log)",
        dir.display(),
        dir.display()
    );
    for (i, addr) in meta_addrs.iter().enumerate() {
        if args.meta == 1 {
            say!("  metadata service  {addr}");
        } else {
            say!("  metadata member {} {addr}", i + 1);
        }
    }
    for (i, addr) in chunk_addrs.iter().enumerate() {
        say!("  chunk server {}    {addr}", i + 1);
    }
    let scheme = if pki.is_some() { "https" } else { "http" };
    let endpoint = format!("{scheme}://{s3_addr}");
    say!("  S3 gateway        {endpoint}");
    say!("  web page          {scheme}://{web_addr}  (log in as admin)");
    say!();
    if new_password {
        let password = std::fs::read_to_string(&password_path)?;
        say!(
            "Created user admin with the password {} (kept in {}, mode 0600).",
            password.trim(),
            password_path.display()
        );
    }
    say!(
        "Logged in as admin; the session is in {} (mode 0600).",
        client_config.display()
    );
    match &pki {
        Some(pki) => say!(
            "Every process speaks TLS; clients trust the CA in {} (kept in the config; elsewhere pass --ca).",
            pki.ca_cert.display()
        ),
        None => say!("Plain HTTP on loopback, for development (cairn dev --tls serves TLS)."),
    }
    say!();
    say!("Try, in another terminal:");
    say!("  export CAIRN_CONFIG={}", client_config.display());
    say!("  cairn put ./README.md /home/admin/readme.md");
    say!("  cairn ls -l");
    say!("  cairn status");
    say!();
    print_s3_settings(
        &endpoint,
        &key,
        &key_path,
        pki.as_ref().map(|p| p.ca_cert.as_path()),
    );
    say!();
    say!("Press Ctrl-C to stop.");

    // A process that dies is reported and the rest keep running: the
    // cluster is built to survive it, and trying that is part of dev use.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let exit = loop {
        tokio::select! {
            _ = &mut shutdown => break ExitCode::SUCCESS,
            (name, status) = first_exit(&mut children) => {
                eprintln!(
                    "warning: {name} exited ({status}); the rest of the cluster keeps running. See {}/{name}.log",
                    dir.display()
                );
                children.retain(|(n, _)| n != &name);
                if children.is_empty() {
                    break ExitCode::FAILURE;
                }
            }
        }
    };
    stop_children(&mut children).await;
    say!("Cairn dev cluster stopped.");
    Ok(exit)
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not valid UTF-8", path.display()))
}

fn spawn_child(exe: &Path, dir: &Path, name: &str, args: &[&str]) -> anyhow::Result<Child> {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it makes the child die with us
    // even if we are killed with SIGKILL, so no server is left behind.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    command
        .spawn()
        .with_context(|| format!("cannot start {name}"))
}

/// Waits until something listens on `addr`.
async fn wait_listening(addr: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEV_START_TIMEOUT;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "nothing listens on {addr} after {}s",
        DEV_START_TIMEOUT.as_secs()
    )
}

/// The S3 access key `cairn dev` made for admin: kept in `path` (mode
/// 0600) and reused while the cluster still has it.
async fn ensure_dev_key(
    admin: &MetaClient,
    path: &Path,
) -> anyhow::Result<cairn_proto::api::KeyCreated> {
    if let Ok(text) = std::fs::read_to_string(path) {
        if let Ok(key) = serde_json::from_str::<cairn_proto::api::KeyCreated>(&text) {
            let held = admin.keys(None, false).await?;
            if held
                .keys
                .iter()
                .any(|k| k.access_key_id == key.access_key_id)
            {
                return Ok(key);
            }
        }
    }
    let key = admin.create_key(None).await?;
    crate::session::write_private_json(path, &key)?;
    Ok(key)
}

/// Ready-to-paste settings for aws-cli, rclone and boto3.
fn print_s3_settings(
    endpoint: &str,
    key: &cairn_proto::api::KeyCreated,
    key_path: &Path,
    ca: Option<&Path>,
) {
    let id = &key.access_key_id;
    let secret = &key.secret_access_key;
    say!(
        "S3: access key {id} for {} (kept in {}, mode 0600). Paste one of:",
        key.user,
        key_path.display()
    );
    say!("  # aws-cli");
    say!("  export AWS_ACCESS_KEY_ID={id} AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION=us-east-1");
    if let Some(ca) = ca {
        say!("  export AWS_CA_BUNDLE={}", ca.display());
    }
    say!("  aws --endpoint-url {endpoint} s3 mb s3://demo && aws --endpoint-url {endpoint} s3 cp ./README.md s3://demo/");
    say!("  # rclone");
    say!("  export RCLONE_CONFIG_CAIRN_TYPE=s3 RCLONE_CONFIG_CAIRN_PROVIDER=Other RCLONE_CONFIG_CAIRN_ENDPOINT={endpoint} \\");
    say!(
        "    RCLONE_CONFIG_CAIRN_ACCESS_KEY_ID={id} RCLONE_CONFIG_CAIRN_SECRET_ACCESS_KEY={secret}"
    );
    match ca {
        Some(ca) => say!("  rclone --ca-cert {} lsd cairn:", ca.display()),
        None => say!("  rclone lsd cairn:"),
    }
    say!("  # boto3");
    let verify = ca.map_or(String::new(), |ca| format!(", verify=\"{}\"", ca.display()));
    say!(
        "  s3 = boto3.client(\"s3\", endpoint_url=\"{endpoint}\", aws_access_key_id=\"{id}\", aws_secret_access_key=\"{secret}\", region_name=\"us-east-1\"{verify})"
    );
}

/// How long the session `cairn dev` opens for its user lasts.
const DEV_SESSION_SECS: u64 = 30 * 86_400;

/// Logs in as admin (once the cluster has made that user), keeps the
/// session in the client config file, and waits for `nodes` chunk servers.
async fn log_in_and_wait_healthy(
    meta_list: &str,
    password_path: &Path,
    client_config: &Path,
    pki: Option<&cairn_transport::pki::DevPki>,
    nodes: usize,
) -> anyhow::Result<MetaClient> {
    let password = std::fs::read_to_string(password_path)
        .with_context(|| format!("cannot read {}", password_path.display()))?;
    let tls = match pki {
        Some(pki) => cairn_transport::ClientTls::from_ca_file(&pki.ca_cert)?,
        None => cairn_transport::ClientTls::plain(),
    };
    let anonymous = MetaClient::new(meta_list)
        .with_failover_timeout(DEV_START_TIMEOUT)
        .with_tls(tls.clone());
    let login = anonymous
        .login(&cairn_proto::api::LoginRequest {
            user: "admin".into(),
            password: password.trim().to_string(),
            expires_in_secs: Some(DEV_SESSION_SECS),
        })
        .await
        .context("cannot log in as admin with the password in admin.password")?;
    crate::session::save(
        client_config,
        &crate::session::ClientConfig {
            meta: Some(meta_list.to_string()),
            user: Some(login.user),
            token: Some(login.token.clone()),
            expires_ms: Some(login.expires_ms),
            ca: pki.map(|p| p.ca_cert.to_string_lossy().into_owned()),
        },
    )?;
    let client = MetaClient::new(meta_list)
        .with_token(Some(login.token))
        .with_tls(tls);
    wait_healthy(&client, nodes).await?;
    Ok(client)
}

async fn wait_healthy(client: &MetaClient, nodes: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + DEV_START_TIMEOUT;
    let mut last_problem = String::from("no answer yet");
    while Instant::now() < deadline {
        match client.status().await {
            Ok(status) if status.nodes_up >= nodes => return Ok(()),
            Ok(status) => last_problem = format!("{} of {nodes} chunk servers up", status.nodes_up),
            Err(e) => last_problem = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!(
        "not healthy after {}s: {last_problem}",
        DEV_START_TIMEOUT.as_secs()
    )
}

/// Waits until one child exits; returns its name and status.
async fn first_exit(children: &mut [(String, Child)]) -> (String, String) {
    loop {
        for (name, child) in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return (name.clone(), status.to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The error for a child of `cairn dev` that exited while starting, with
/// the last lines of its log (an address in use says so there).
fn exited_while_starting(dir: &Path, name: &str, status: String) -> anyhow::Error {
    const SHOWN_LINES: usize = 5;
    // Only the end is read: a log may be long by the time a server fails.
    const TAIL_BYTES: u64 = 16 * 1024;
    let log_path = dir.join(format!("{name}.log"));
    let log = log_tail(&log_path, TAIL_BYTES).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(SHOWN_LINES)..].join("\n  ");
    anyhow::anyhow!(
        "{name} exited while starting ({status}); the end of {}:\n  {tail}",
        log_path.display()
    )
}

/// The last `max_bytes` of the file at `path`, as text.
fn log_tail(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(max_bytes)))?;
    let mut tail = Vec::new();
    file.take(max_bytes).read_to_end(&mut tail)?;
    Ok(String::from_utf8_lossy(&tail).into_owned())
}

/// SIGTERM to every child (chunk servers first), then SIGKILL to stragglers.
async fn stop_children(children: &mut [(String, Child)]) {
    for (_, child) in children.iter().rev() {
        if let Some(pid) = child.id() {
            // SAFETY: sending a signal to our own child process.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
    }
    for (name, child) in children.iter_mut() {
        if tokio::time::timeout(DEV_STOP_TIMEOUT, child.wait())
            .await
            .is_err()
        {
            eprintln!(
                "{name} did not stop within {}s; killing it",
                DEV_STOP_TIMEOUT.as_secs()
            );
            let _ = child.kill().await;
        }
    }
}

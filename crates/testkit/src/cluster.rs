//! A real Cairn cluster: `cairn meta` and `cairn chunk` processes on
//! 127.0.0.1 with free ports and a temporary data directory. Dropping the
//! cluster kills every process it started.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cairn_bin;

pub const MIB: usize = 1 << 20;

/// A port free now on 127.0.0.1, never one handed out before in this
/// process: the kernel may give a just-closed port again, and two members
/// of one test cluster once got the same one.
pub fn free_port() -> u16 {
    free_port_block(0)
}

/// A free port whose next `count` ports are free too, none of them handed
/// out before in this process (tests running at once must not get
/// overlapping blocks: `cairn dev` takes a block).
pub fn free_port_block(count: u16) -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    const ATTEMPTS: usize = 10_000;
    let below = ephemeral_ports_start();
    for attempt in 0..ATTEMPTS {
        let port = candidate_port(attempt, below, count);
        if port >= 65000 - count {
            continue;
        }
        let mut given = GIVEN.lock().unwrap();
        let block = port..=port + count;
        let free = block.clone().all(|p| !given.contains(&p))
            && block
                .clone()
                .all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            given.extend(block);
            return port;
        }
    }
    panic!(
        "no block of {} free ports on 127.0.0.1 in {ATTEMPTS} tries",
        count + 1
    );
}

/// Lowest port tests draw from: below the kernel's ephemeral range there
/// are no outgoing connections' source ports, one of which could take a
/// port chosen but not yet bound (a `cairn dev` web server, started last,
/// once failed so in CI).
const TEST_PORTS_START: u16 = 10_000;

/// The first port of the kernel's ephemeral range (`ip_local_port_range`).
fn ephemeral_ports_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A port to try: drawn at random between [`TEST_PORTS_START`] and the
/// ephemeral range when there is room for the block, else one the kernel
/// picks (in the ephemeral range, as before).
fn candidate_port(attempt: usize, ephemeral_start: u16, count: u16) -> u16 {
    use std::hash::BuildHasher;
    let room = ephemeral_start.saturating_sub(TEST_PORTS_START + count);
    if room < 1_000 {
        return TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
    }
    // Random per process (the hasher's keys) and per attempt.
    let random =
        std::collections::hash_map::RandomState::new().hash_one((std::process::id(), attempt));
    TEST_PORTS_START + (random % u64::from(room)) as u16
}

pub struct ChunkServer {
    pub data_dir: PathBuf,
    pub addr: String,
    /// Flags for this server, over the cluster's defaults.
    pub args: Vec<(String, String)>,
    child: Option<Child>,
}

/// One `cairn meta` process: a member of the metadata group.
pub struct MetaMember {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    /// Flags for this member, after the cluster's.
    pub args: Vec<String>,
    child: Option<Child>,
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// Every member's address, comma-separated: what clients get as --meta.
    pub meta_addr: String,
    /// The client config holding the admin's session (`--config`).
    pub config: PathBuf,
    meta_args: Vec<String>,
    pub metas: Vec<MetaMember>,
    pub chunks: Vec<ChunkServer>,
    /// Flags every chunk server gets (a server's own `args` win).
    chunk_args: Vec<(String, String)>,
}

/// Chunk server flags of every test cluster: fast heartbeats and repair
/// passes, and a small disk reserve so a nearly full CI disk still works.
const CHUNK_DEFAULTS: &[(&str, &str)] = &[
    ("--heartbeat-interval", "300ms"),
    ("--reserve", "16MiB"),
    ("--repair-interval", "2s"),
];

pub(crate) fn spawn(args: &[String], log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(cairn_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("cairn starts")
}

impl Cluster {
    /// Runs `cairn ARGS` (a door: `s3`, `web`) logging to `NAME.log` in
    /// the cluster's directory, and waits until it listens on `addr`.
    pub(crate) fn spawn_listening(&self, name: &str, args: &[String], addr: &str) -> Child {
        let log = self.dir.path().join(format!("{name}.log"));
        let mut child = spawn(args, &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "cairn {name} exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cairn {name} does not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// A metadata server and `nodes` chunk servers, waiting until all are up.
    pub fn start(nodes: usize) -> Cluster {
        Cluster::start_with(nodes, &[])
    }

    pub fn start_with(nodes: usize, meta_args: &[&str]) -> Cluster {
        Cluster::start_full(nodes, meta_args, &[])
    }

    /// As `start_with`, and `chunk_args` (flag, value) for every chunk server.
    pub fn start_full(nodes: usize, meta_args: &[&str], chunk_args: &[(&str, &str)]) -> Cluster {
        Cluster::start_group(1, nodes, meta_args, chunk_args)
    }

    /// A metadata group of `members` (formed with --peers when more than
    /// one) and `nodes` chunk servers, waiting until all nodes are up.
    pub fn start_group(
        members: usize,
        nodes: usize,
        meta_args: &[&str],
        chunk_args: &[(&str, &str)],
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        write_secret(&dir.path().join("cluster.secret"), CLUSTER_SECRET);
        write_secret(&dir.path().join("admin.password"), ADMIN_PASSWORD);
        let metas: Vec<MetaMember> = (1..=members as u64)
            .map(|id| MetaMember {
                id,
                addr: format!("127.0.0.1:{}", free_port()),
                data_dir: dir.path().join(if members == 1 {
                    "meta".to_string()
                } else {
                    format!("meta-{id}")
                }),
                args: Vec::new(),
                child: None,
            })
            .collect();
        let meta_addr = metas
            .iter()
            .map(|m| m.addr.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            config: dir.path().join("client.json"),
            dir,
            meta_addr,
            meta_args: meta_args.iter().map(|s| s.to_string()).collect(),
            metas,
            chunks: Vec::new(),
            chunk_args: chunk_args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        cluster.start_meta();
        cluster.login_admin();
        for _ in 0..nodes {
            cluster.add_chunk(&[]);
        }
        cluster.wait_nodes_up(nodes);
        cluster
    }

    /// A cluster of one metadata server and one chunk server on copies of
    /// existing data directories: `data/meta`, `data/chunk` and the secret
    /// `data/cluster.secret` (as a fixture of an earlier release keeps
    /// them), logged in as `admin` with `admin_password`.
    pub fn start_from_data(data: &Path, admin_password: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&data.join("meta"), &dir.path().join("meta"));
        copy_dir(&data.join("chunk"), &dir.path().join("chunk-0"));
        std::fs::copy(
            data.join("cluster.secret"),
            dir.path().join("cluster.secret"),
        )
        .unwrap();
        write_secret(&dir.path().join("admin.password"), admin_password);
        let member = MetaMember {
            id: 1,
            addr: format!("127.0.0.1:{}", free_port()),
            data_dir: dir.path().join("meta"),
            args: Vec::new(),
            child: None,
        };
        let mut cluster = Cluster {
            config: dir.path().join("client.json"),
            meta_addr: member.addr.clone(),
            dir,
            meta_args: Vec::new(),
            metas: vec![member],
            chunks: Vec::new(),
            chunk_args: Vec::new(),
        };
        cluster.start_meta();
        cluster.login_admin_with(admin_password);
        cluster.chunks.push(ChunkServer {
            data_dir: cluster.dir.path().join("chunk-0"),
            addr: format!("127.0.0.1:{}", free_port()),
            args: Vec::new(),
            child: None,
        });
        cluster.start_chunk(0);
        // The map the data came with lists the node up at its old address:
        // wait for the one that registers now.
        let addr = cluster.chunks[0].addr.clone();
        cluster.wait_for(&format!("the node up at {addr}"), |status| {
            status["nodes"].as_array().is_some_and(|nodes| {
                nodes
                    .iter()
                    .any(|n| n["addr"] == addr.as_str() && n["state"] == "up")
            })
        });
        cluster
    }

    /// Logs in as the first admin (waiting for the group to elect a leader
    /// and create the user); the session goes in `self.config`.
    pub fn login_admin(&self) {
        self.login_admin_with(ADMIN_PASSWORD)
    }

    fn login_admin_with(&self, password: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.cairn_with_stdin(
                &["login", "--user", "admin", "--password-stdin"],
                format!("{password}\n").as_bytes(),
            );
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cannot log in as admin: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A client config for `user` (added with `password`), logged in.
    pub fn login_as(&self, user: &str, password: &str) -> PathBuf {
        let config = self.dir.path().join(format!("client-{user}.json"));
        let out = run_cairn(
            &self.meta_addr,
            &config,
            &["login", "--user", user, "--password-stdin"],
            format!("{password}\n").as_bytes(),
        );
        assert!(
            out.status.success(),
            "login as {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        config
    }

    /// Starts one more chunk server with its own flags; returns its index.
    /// Does not wait for it to be up.
    pub fn add_chunk(&mut self, args: &[(&str, &str)]) -> usize {
        let i = self.chunks.len();
        self.chunks.push(ChunkServer {
            data_dir: self.dir.path().join(format!("chunk-{i}")),
            addr: format!("127.0.0.1:{}", free_port()),
            args: args
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        });
        self.start_chunk(i);
        i
    }

    /// Starts every metadata member that is not running.
    pub fn start_meta(&mut self) {
        for i in 0..self.metas.len() {
            if self.metas[i].child.is_none() {
                self.start_member(i);
            }
        }
    }

    /// Starts metadata member `i` (index in `metas`). Members of a group
    /// get `--peers` naming the group's first members (those started with
    /// the cluster); a later member gets its own flags (as `--join`).
    pub fn start_member(&mut self, i: usize) {
        let member = &self.metas[i];
        let mut args: Vec<String> = vec![
            "meta".into(),
            "--data-dir".into(),
            member.data_dir.to_str().unwrap().into(),
            "--listen".into(),
            member.addr.clone(),
            "--id".into(),
            member.id.to_string(),
        ];
        if self.metas.len() > 1 && !member.args.iter().any(|a| a == "--join") {
            args.push("--peers".into());
            args.push(self.peers());
        }
        if !member.args.iter().any(|a| a == "--cluster-secret-file") {
            args.push("--cluster-secret-file".into());
            args.push(self.secret_file());
        }
        args.push("--admin-password-file".into());
        args.push(
            self.dir
                .path()
                .join("admin.password")
                .to_str()
                .unwrap()
                .into(),
        );
        args.extend(self.meta_args.iter().cloned());
        args.extend(member.args.iter().cloned());
        let log = self.member_log(i);
        self.metas[i].child = Some(spawn(&args, &log));
    }

    /// `--peers` of the group: every member that is not a later joiner.
    fn peers(&self) -> String {
        self.metas
            .iter()
            .filter(|m| !m.args.iter().any(|a| a == "--join"))
            .map(|m| format!("{}={}", m.id, m.addr))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The cluster secret file every process of this cluster is given.
    pub fn secret_file(&self) -> String {
        self.dir
            .path()
            .join("cluster.secret")
            .to_str()
            .unwrap()
            .to_string()
    }

    pub fn member_log(&self, i: usize) -> PathBuf {
        let name = self.metas[i]
            .data_dir
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        self.dir.path().join(format!("{name}.log"))
    }

    /// Adds a metadata member with a fresh id, an empty data directory and
    /// `--join` (it waits to be added with `meta-admin add-voter`), and
    /// starts it. Clients are not told about it. Returns its index.
    pub fn add_member(&mut self) -> usize {
        let id = self.metas.iter().map(|m| m.id).max().unwrap_or(0) + 1;
        self.metas.push(MetaMember {
            id,
            addr: format!("127.0.0.1:{}", free_port()),
            data_dir: self.dir.path().join(format!("meta-{id}")),
            args: vec!["--join".into()],
            child: None,
        });
        let i = self.metas.len() - 1;
        self.start_member(i);
        i
    }

    /// SIGKILL to metadata member `i`, as in a crash.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.metas[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// Sends `signal` (as SIGSTOP 19, SIGCONT 18) to metadata member `i`.
    pub fn signal_member(&self, i: usize, signal: i32) {
        let child = self.metas[i].child.as_ref().expect("member is running");
        unsafe {
            libc_kill(child.id() as i32, signal);
        }
    }

    /// Sends `signal` (as SIGSTOP 19, SIGCONT 18) to chunk server `i`.
    pub fn signal_chunk(&self, i: usize, signal: i32) {
        let child = self.chunks[i]
            .child
            .as_ref()
            .expect("chunk server is running");
        unsafe {
            libc_kill(child.id() as i32, signal);
        }
    }

    /// Member `i` was started and not stopped or killed since.
    pub fn is_running(&self, i: usize) -> bool {
        self.metas[i].child.is_some()
    }

    /// `/v1/health` of member `i`, or `None` if it does not answer in 1 s.
    pub fn member_health(&self, i: usize) -> Option<Value> {
        let (code, body) = try_http_within(
            &self.metas[i].addr,
            "GET",
            "/v1/health",
            &[],
            Duration::from_secs(1),
        )?;
        (code == 200).then(|| serde_json::from_slice(&body).ok())?
    }

    /// The index of the running member that says it leads, in the highest
    /// term if several do (a restarted leader says so until it hears of
    /// the newer term).
    pub fn leader(&self) -> Option<usize> {
        (0..self.metas.len())
            .filter(|&i| self.metas[i].child.is_some())
            .filter_map(|i| {
                let health = self.member_health(i)?;
                (health["role"] == "leader").then(|| (health["term"].as_u64(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Waits (at most `limit`) until a running member leads, other than
    /// `not`; returns its index.
    pub fn wait_leader(&self, not: Option<usize>, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.leader().filter(|&i| Some(i) != not) {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no metadata leader within {limit:?}; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn start_chunk(&mut self, i: usize) {
        let server = &self.chunks[i];
        let mut args: Vec<String> = vec![
            "chunk".into(),
            "--meta".into(),
            self.meta_addr.clone(),
            "--data-dir".into(),
            server.data_dir.to_str().unwrap().into(),
            "--listen".into(),
            server.addr.clone(),
        ];
        // Later layers win: defaults, then the cluster's, then the server's.
        // An empty value drops the flag.
        let mut flags: Vec<(String, String)> = CHUNK_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        flags.push(("--cluster-secret-file".into(), self.secret_file()));
        for (flag, value) in self.chunk_args.iter().chain(&server.args) {
            flags.retain(|(f, _)| f != flag);
            flags.push((flag.clone(), value.clone()));
        }
        for (flag, value) in flags.into_iter().filter(|(_, v)| !v.is_empty()) {
            args.push(flag);
            args.push(value);
        }
        let child = spawn(&args, &self.dir.path().join(format!("chunk-{i}.log")));
        self.chunks[i].child = Some(child);
    }

    /// Stops a chunk server with SIGTERM.
    pub fn stop_chunk(&mut self, i: usize) {
        if let Some(mut child) = self.chunks[i].child.take() {
            Self::terminate(&mut child);
        }
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn kill_chunk(&mut self, i: usize) {
        if let Some(mut child) = self.chunks[i].child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait: a clean stop.
    fn terminate(child: &mut Child) {
        unsafe {
            libc_kill(child.id() as i32, 15);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    pub fn stop_all(&mut self) {
        for server in &mut self.chunks {
            if let Some(mut child) = server.child.take() {
                Self::terminate(&mut child);
            }
        }
        for member in &mut self.metas {
            if let Some(mut child) = member.child.take() {
                Self::terminate(&mut child);
            }
        }
    }

    pub fn start_all(&mut self) {
        self.start_meta();
        for i in 0..self.chunks.len() {
            self.start_chunk(i);
        }
        self.wait_nodes_up(self.chunks.len());
    }

    /// Runs a client command against this cluster.
    pub fn cairn(&self, args: &[&str]) -> Output {
        self.cairn_with_stdin(args, &[])
    }

    pub fn cairn_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_cairn(&self.meta_addr, &self.config, args, stdin)
    }

    /// The session token kept in the client config `config` (for library
    /// clients: `MetaClient::with_token`).
    pub fn token(&self, config: &Path) -> String {
        let text = std::fs::read_to_string(config).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        value["token"]
            .as_str()
            .expect("the config holds a session")
            .to_string()
    }

    /// Runs a client command as the user whose session is in `config`.
    pub fn cairn_as(&self, config: &Path, args: &[&str], stdin: &[u8]) -> Output {
        run_cairn(&self.meta_addr, config, args, stdin)
    }

    /// Runs a client command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a client command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cairn(args);
        assert!(!out.status.success(), "cairn {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    pub fn status(&self) -> Option<Value> {
        let out = self.cairn(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn wait_nodes_up(&self, count: usize) {
        self.wait_for(&format!("{count} nodes up"), |status| {
            status["nodes_up"].as_u64() == Some(count as u64)
        });
    }

    /// Polls `cairn status` until `check` holds (at most 30 s).
    pub fn wait_for(&self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_within(Duration::from_secs(30), what, check)
    }

    /// Polls `cairn status` until `check` holds, at most `limit`.
    pub fn wait_for_within(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        let mut last = None;
        loop {
            if let Some(status) = self.status() {
                if check(&status) {
                    return status;
                }
                last = Some(status);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; logs in {}; last status: {}",
                self.dir.path().display(),
                last.map_or("none".to_string(), |s| s.to_string())
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node id a chunk server keeps in its data directory.
    pub fn node_id(&self, i: usize) -> String {
        std::fs::read_to_string(self.chunks[i].data_dir.join("node_id"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Writes `data` to a local temp file and returns its path.
    pub fn local_file(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.path().join("local").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        path
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // CAIRN_TEST_KEEP=1 keeps a failed test's data and logs.
        if std::thread::panicking() && std::env::var_os("CAIRN_TEST_KEEP").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap()).keep();
            eprintln!("kept the cluster's files in {}", kept.display());
        }
        for server in &mut self.chunks {
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for member in &mut self.metas {
            if let Some(mut child) = member.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The secret every test cluster's processes share.
pub const CLUSTER_SECRET: &str = "the test cluster's secret";

/// The header with which a request passes as a cluster process.
pub fn cluster_token_header() -> (&'static str, String) {
    (
        cairn_proto::api::CLUSTER_TOKEN_HEADER,
        cairn_proto::api::cluster_token(CLUSTER_SECRET.as_bytes()),
    )
}

/// The first admin's password in every test cluster.
pub const ADMIN_PASSWORD: &str = "the test admin's password";

/// Runs `cairn --meta META --config CONFIG ARGS...` with `stdin`.
pub fn run_cairn(meta_addr: &str, config: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(cairn_bin())
        .arg("--meta")
        .arg(meta_addr)
        .arg("--config")
        .arg(config)
        .env_remove("CAIRN_TOKEN")
        .env_remove("CAIRN_CONFIG")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The data directories the release before format markers wrote
/// (`fixtures/release-1`, made by its script; `CONTENTS` says what is in).
pub fn release_1_fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/release-1")
}

/// Writes a cluster secret file, readable by its owner only.
pub fn write_secret(path: &Path, secret: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(secret.as_bytes()).unwrap();
}

/// One HTTP/1.1 request with a 1 s connect and 5 s read limit; `None` if
/// the server cannot be reached or does not answer in time.
pub fn try_http(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    try_http_within(addr, method, path, body, Duration::from_secs(5))
}

/// As [`try_http`], giving up on an answer after `limit`.
pub fn try_http_within(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
    limit: Duration,
) -> Option<(u16, Vec<u8>)> {
    try_http_full(addr, method, path, &[], body, limit)
}

/// One HTTP/1.1 request with extra headers (`name`, `value`).
pub fn try_http_full(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    limit: Duration,
) -> Option<(u16, Vec<u8>)> {
    let mut all = vec![("Content-Type", "application/json")];
    all.extend_from_slice(headers);
    let response = raw_exchange(addr, method, path, &all, body, limit).ok()?;
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, response[head_end + 4..].to_vec()))
}

/// Sends one HTTP/1.1 request (`Connection: close`) and reads the whole
/// raw answer, giving up on it after `limit`.
pub(crate) fn raw_exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    limit: Duration,
) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Write};
    let socket: std::net::SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let mut stream = std::net::TcpStream::connect_timeout(&socket, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(limit))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response)
}

/// As [`try_http`] for a server that must answer.
pub fn http_request(addr: &str, method: &str, path: &str) -> (u16, Vec<u8>) {
    try_http(addr, method, path, &[])
        .unwrap_or_else(|| panic!("{method} {path} on {addr}: no answer"))
}

extern "C" {
    #[link_name = "kill"]
    pub(crate) fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---- helpers shared by the end-to-end test files ----

pub fn put_bytes(cluster: &Cluster, data: &[u8], remote: &str) -> u64 {
    let out = cluster.cairn_with_stdin(&["put", "-", remote], data);
    assert!(
        out.status.success(),
        "put {remote}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout.split_whitespace().next().unwrap().parse().unwrap()
}

pub fn get_bytes(cluster: &Cluster, remote: &str) -> Vec<u8> {
    let out = cluster.cairn(&["cat", remote]);
    assert!(
        out.status.success(),
        "cat {remote}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Chunk ids of a file, from `stat --json`.
pub fn chunk_ids(cluster: &Cluster, remote: &str) -> Vec<String> {
    let stat = cluster.json(&["stat", "--json", remote]);
    stat["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

/// (targets, holders) of every chunk of a file.
pub fn locations(cluster: &Cluster, remote: &str) -> Vec<(Vec<String>, Vec<String>)> {
    let stat = cluster.json(&["stat", "--json", "--locations", remote]);
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    stat["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (strings(&l["targets"]), strings(&l["held_by"])))
        .collect()
}

/// The chunk file of `id` on chunk server `node`.
pub fn chunk_file(cluster: &Cluster, node: usize, id: &str) -> std::path::PathBuf {
    cluster.chunks[node]
        .data_dir
        .join("chunks")
        .join(&id[..2])
        .join(id)
}

/// Chunk ids held on disk by chunk server `node` (the layout of
/// [`chunk_file`]).
pub fn chunks_on_disk(cluster: &Cluster, node: usize) -> std::collections::BTreeSet<String> {
    let root = cluster.chunks[node].data_dir.join("chunks");
    let Ok(shards) = std::fs::read_dir(&root) else {
        return Default::default();
    };
    shards
        .flatten()
        .flat_map(|shard| {
            std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|chunk| chunk.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Appends bytes to a chunk file, as a torn or misdirected write might:
/// a copy longer than its chunk.
pub fn grow(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes.extend_from_slice(&[0x5a; 100_000]);
    std::fs::write(path, bytes).unwrap();
}

/// Overwrites a chunk file with bytes of the same length, as bit rot would.
pub fn rot(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    for b in bytes.iter_mut().step_by(997) {
        *b ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

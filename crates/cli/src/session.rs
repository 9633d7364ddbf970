//! The client's config file, and the commands that manage users and
//! sessions: `login`, `logout`, `whoami`, `user ...`.
//!
//! The config file (`$CAIRN_CONFIG`, else `~/.config/cairn/config.json`,
//! mode 0600) keeps the metadata addresses and the session token that
//! `cairn login` received; every other command reads it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use cairn_client::MetaClient;
use cairn_proto::api::{AddUserRequest, LoginRequest, PasswdRequest, UserRequest};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::output;

/// What the config file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConfig {
    /// The metadata members, as `--meta` takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
    /// The cluster's CA certificate (PEM file), when it speaks TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<String>,
}

/// What `login` and `logout` need to know about this invocation.
pub struct Session {
    pub config_path: PathBuf,
    pub config: ClientConfig,
    /// The metadata members this invocation talks to.
    pub meta_addrs: String,
    /// The CA it trusts (`--ca` or the config's).
    pub ca: Option<PathBuf>,
}

/// The largest config file read (it holds a few short strings).
const MAX_CONFIG_BYTES: u64 = 64 * 1024;

/// Where the config file is: `--config`, `$CAIRN_CONFIG`, or
/// `~/.config/cairn/config.json`.
pub fn config_path(flag: Option<&Path>) -> PathBuf {
    if let Some(path) = flag {
        return path.to_path_buf();
    }
    if let Some(path) = std::env::var_os("CAIRN_CONFIG") {
        return PathBuf::from(path);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("cairn").join("config.json")
}

/// Reads the config file; a missing file is an empty config.
pub fn load(path: &Path) -> anyhow::Result<ClientConfig> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ClientConfig::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mut text = String::new();
    use std::io::Read;
    file.take(MAX_CONFIG_BYTES)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a cairn config file (JSON); fix or remove it, then run `cairn login`",
            path.display()
        )
    })
}

/// Writes the config file (mode 0600: it holds a bearer token) through a
/// temporary file, so a crash leaves the old one or the new one.
pub fn save(path: &Path, config: &ClientConfig) -> anyhow::Result<()> {
    write_private_json(path, config)
}

/// Writes `value` as JSON to `path`, readable by its owner only (0600),
/// whole or not at all: a temporary file, synced, renamed into place.
pub fn write_private_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let temp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot write {}", temp.display()))?;
    file.write_all(serde_json::to_string_pretty(value)?.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[derive(Args)]
pub struct LoginArgs {
    /// User to log in as [default: the config's user, else admin]
    #[arg(long)]
    user: Option<String>,
    /// Read the password from the first line of stdin instead of prompting
    #[arg(long)]
    password_stdin: bool,
    /// How long the session lasts, as in 12h or 7d (at most 90d)
    #[arg(long, default_value = "24h", value_parser = cairn_proto::units::parse_duration)]
    expires_in: std::time::Duration,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// End every session of this user, on every machine, not just this one
    #[arg(long)]
    all: bool,
}

#[derive(clap::Subcommand)]
pub enum UserCommand {
    /// Add a user (admin only); they get /home/NAME, mode 0700
    Add(UserAddArgs),
    /// Set a password: your own, or (admin) anyone's; ends their sessions
    Passwd(UserPasswdArgs),
    /// Remove a user (admin only); their files stay, owned by the old name
    Rm(UserNameArgs),
    /// List users (admin only)
    List(UserListArgs),
    /// End every session of a user (yours, or anyone's for an admin)
    Revoke(UserNameArgs),
}

#[derive(Args)]
pub struct UserAddArgs {
    name: String,
    /// Further groups, comma-separated (every user is in their own group)
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Make the user an admin (every permission, user management)
    #[arg(long)]
    admin: bool,
    /// Read the password from the first line of stdin instead of prompting
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Args)]
pub struct UserPasswdArgs {
    /// Whose password [default: yours]
    name: Option<String>,
    /// Read the new password from the first line of stdin instead of prompting
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Args)]
pub struct UserNameArgs {
    name: String,
}

#[derive(Args)]
pub struct UserListArgs {
    #[arg(long)]
    json: bool,
}

pub async fn login(
    meta: &MetaClient,
    session: &Session,
    args: LoginArgs,
) -> anyhow::Result<ExitCode> {
    let config_path = &session.config_path;
    let user = args
        .user
        .or_else(|| session.config.user.clone())
        .unwrap_or_else(|| "admin".to_string());
    let password = read_password(
        &format!("password for {user}: "),
        args.password_stdin,
        false,
    )?;
    let answer = meta
        .login(&LoginRequest {
            user: user.clone(),
            password,
            expires_in_secs: Some(args.expires_in.as_secs().max(1)),
        })
        .await?;
    // The CA is kept as an absolute path, so the config works from anywhere.
    let ca = session.ca.as_ref().map(|path| {
        std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.clone())
            .to_string_lossy()
            .into_owned()
    });
    let saved = ClientConfig {
        meta: Some(session.meta_addrs.clone()),
        user: Some(answer.user.clone()),
        token: Some(answer.token),
        expires_ms: Some(answer.expires_ms),
        ca,
    };
    save(config_path, &saved)?;
    eprintln!(
        "logged in as {} until {}; the session is in {}",
        answer.user,
        output::format_time(answer.expires_ms),
        config_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn logout(
    meta: &MetaClient,
    session: &Session,
    args: LogoutArgs,
) -> anyhow::Result<ExitCode> {
    let (config_path, config) = (&session.config_path, &session.config);
    if config.token.is_none() && std::env::var_os("CAIRN_TOKEN").is_none() {
        bail!(
            "not logged in (no token in {}); nothing to end",
            config_path.display()
        );
    }
    let ended = if args.all {
        let me = meta.whoami().await?;
        meta.revoke(&UserRequest { name: me.user }).await?
    } else {
        meta.logout().await?
    };
    let mut kept = config.clone();
    kept.token = None;
    kept.expires_ms = None;
    save(config_path, &kept)?;
    eprintln!(
        "logged out {} ({} session(s) ended)",
        ended.name, ended.sessions_ended
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn whoami(meta: &MetaClient) -> anyhow::Result<ExitCode> {
    let me = meta.whoami().await?;
    println!(
        "{}{} (groups {}), home {}{}",
        me.user,
        if me.admin { ", admin" } else { "" },
        me.groups.join(","),
        me.home,
        me.expires_ms
            .map(|ms| format!(", session until {}", output::format_time(ms)))
            .unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn user(meta: &MetaClient, command: UserCommand) -> anyhow::Result<ExitCode> {
    if matches!(command, UserCommand::Add(_) | UserCommand::Passwd(_)) {
        warn_if_clear_text(meta);
    }
    match command {
        UserCommand::Add(args) => {
            let password = read_password(
                &format!("password for the new user {}: ", args.name),
                args.password_stdin,
                true,
            )?;
            meta.add_user(&AddUserRequest {
                name: args.name.clone(),
                password,
                groups: args.groups,
                admin: args.admin,
            })
            .await?;
            println!("added user {}, home /home/{}", args.name, args.name);
        }
        UserCommand::Passwd(args) => {
            let name = match args.name {
                Some(name) => name,
                None => meta.whoami().await?.user,
            };
            let password = read_password(
                &format!("new password for {name}: "),
                args.password_stdin,
                true,
            )?;
            let answer = meta
                .passwd(&PasswdRequest {
                    name: name.clone(),
                    password,
                })
                .await?;
            println!(
                "password of {name} changed; {} session(s) ended (log in again with `cairn login --user {name}`)",
                answer.sessions_ended
            );
        }
        UserCommand::Rm(args) => {
            let answer = meta.remove_user(&UserRequest { name: args.name }).await?;
            println!(
                "removed user {} ({} session(s) ended; their files keep uid {}, which no new user gets)",
                answer.name, answer.sessions_ended, answer.uid
            );
        }
        UserCommand::List(args) => {
            // Page by page: a cluster may keep 100,000 users.
            let mut page = cairn_client::Page::default();
            let mut all = Vec::new();
            if !args.json {
                print!("{}", output::users_header());
            }
            loop {
                let users = meta.users_page(&page).await?;
                if args.json {
                    all.extend(users.users);
                } else {
                    print!("{}", output::users_rows(&users.users));
                }
                match users.next {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
            if args.json {
                let users = cairn_proto::api::UsersResponse {
                    users: all,
                    next: None,
                };
                println!("{}", serde_json::to_string_pretty(&users)?);
            }
        }
        UserCommand::Revoke(args) => {
            let answer = meta.revoke(&UserRequest { name: args.name }).await?;
            println!(
                "ended {} session(s) of {}",
                answer.sessions_ended, answer.name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the member that led last is remembered: beside the config file.
fn leader_file(config_path: &Path) -> PathBuf {
    config_path.with_extension("leader")
}

/// The member that led when a command last ran with these members, if
/// one did (the next command calls it first).
pub fn remembered_leader(config_path: &Path, members: &str) -> Option<String> {
    let text = std::fs::read_to_string(leader_file(config_path)).ok()?;
    let (remembered_members, leader) = text.trim_end().split_once('\n')?;
    (remembered_members == members).then(|| leader.to_string())
}

/// Remembers `leader` for `members` (best effort: a command does not fail
/// for want of it). Written through a temporary file, so that commands
/// running at once never read half a file.
pub fn remember_leader(config_path: &Path, members: &str, leader: &str) {
    let path = leader_file(config_path);
    let temp = path.with_extension(format!("leader-{}", std::process::id()));
    let written = std::fs::write(&temp, format!("{members}\n{leader}\n"))
        .and_then(|()| std::fs::rename(&temp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
}

/// Warns before a password crosses a network in clear text: the cluster
/// speaks plain HTTP and a member is not on this machine.
fn warn_if_clear_text(meta: &MetaClient) {
    let remote = meta.members().iter().any(|addr| {
        let host = addr
            .rsplit_once(':')
            .map_or(addr.as_str(), |(host, _)| host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host != "localhost"
            && !host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    if remote && !meta.tls().is_tls() {
        eprintln!(
            "warning: this cluster speaks plain HTTP, so the password crosses the network in clear text; \
             give the servers --tls-cert/--tls-key and this command --ca"
        );
    }
}

/// Reads a password: the first line of stdin with `from_stdin`, else from
/// the terminal with echo off (asked twice when `confirm`).
fn read_password(prompt: &str, from_stdin: bool, confirm: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        if password.is_empty() {
            bail!("no password on stdin; pipe one line, as in `echo PASSWORD | cairn ... --password-stdin`");
        }
        return Ok(password);
    }
    if !std::io::stdin().is_terminal() {
        bail!("stdin is not a terminal, so the password cannot be prompted for; pass --password-stdin and pipe it");
    }
    let password = prompt_hidden(prompt)?;
    if confirm && prompt_hidden("again: ")? != password {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(password)
}

/// Prompts on stderr and reads a line from the terminal without echo.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let is_tty = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if is_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: setting the attributes read above, minus echo.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if is_tty {
        // SAFETY: restores the terminal as it was.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    read.context("cannot read the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.json");
        assert_eq!(load(&path).unwrap(), ClientConfig::default());
        let config = ClientConfig {
            meta: Some("127.0.0.1:1".into()),
            user: Some("alice".into()),
            token: Some("t".into()),
            expires_ms: Some(5),
            ca: Some("/etc/cairn/ca.pem".into()),
        };
        save(&path, &config).unwrap();
        assert_eq!(load(&path).unwrap(), config);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "not json").unwrap();
        let message = format!("{:#}", load(&path).unwrap_err());
        assert!(message.contains("cairn login"), "{message}");
    }
}

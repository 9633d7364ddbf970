//! The file commands (`put`, `get`, `cat`, `ls`, `mkdir`, `rm`, `mv`,
//! `cp`, `stat`, `chmod`, `chown`, `xattr`), for one-shot use and for the
//! shell: each resolves what was typed against the context's working
//! directory, calls the file API, and prints for a person (or JSON with
//! `--json`).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use base64::Engine;
use cairn_client::{chunk_locations, ClientError, Grant, PutOptions, Target};
use cairn_proto::api::{ChownRequest, DirEntry, EntryKind, OnExists, XattrSetMode};
use cairn_proto::ErrorCode;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::AsyncWriteExt;

use crate::context::{Context, Remote};
use crate::output::{self, escape};

#[derive(Args)]
pub struct PutArgs {
    /// Local file, or `-` for stdin
    local: String,
    /// Remote path (relative ones start at your home, or the shell's
    /// directory); ending in `/` or naming a directory means "into it"
    remote: String,
    /// Replace an existing file
    #[arg(long, conflicts_with = "rename")]
    force: bool,
    /// If the name is taken, store under a new unique name (printed)
    #[arg(long)]
    rename: bool,
    /// Permission bits of a new file, in octal, as in 600 [default: 644]
    #[arg(long, value_parser = parse_mode)]
    mode: Option<u32>,
}

#[derive(Args)]
pub struct GetArgs {
    /// Remote path, or `id:<file id>`
    remote: String,
    /// Local file or directory, or `-` for stdout
    local: String,
    #[command(flatten)]
    range: RangeArgs,
}

#[derive(Args)]
pub struct CatArgs {
    /// Remote path, or `id:<file id>`
    remote: String,
    #[command(flatten)]
    range: RangeArgs,
}

/// A byte range of a file (only the chunks it overlaps are fetched).
#[derive(Args, Clone, Copy)]
pub struct RangeArgs {
    /// Start at this byte
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Read at most this many bytes [default: to the end]
    #[arg(long)]
    length: Option<u64>,
}

#[derive(Args)]
pub struct LsArgs {
    /// Long format: kind, mode, owner, group, size, version, time, id
    #[arg(short = 'l')]
    long: bool,
    /// Everything below, with full paths (in the order S3 lists keys)
    #[arg(short = 'R', long)]
    recursive: bool,
    #[arg(long)]
    json: bool,
    /// Directory (or file) to list [default: your home, or the shell's directory]
    path: Option<String>,
}

#[derive(Args)]
pub struct MkdirArgs {
    /// Create missing parents; no error if it exists
    #[arg(short = 'p', long)]
    parents: bool,
    /// Permission bits of the new directory, in octal, as in 750 [default: 755]
    #[arg(short = 'm', long, value_parser = parse_mode)]
    mode: Option<u32>,
    path: String,
}

#[derive(Args)]
pub struct ChmodArgs {
    /// Permission bits in octal, as in 640 or 0750
    #[arg(value_parser = parse_mode)]
    mode: u32,
    path: String,
}

#[derive(Args)]
pub struct ChownArgs {
    /// OWNER, OWNER:GROUP or :GROUP (names, or numeric ids)
    owner: String,
    path: String,
}

#[derive(Args)]
pub struct RmArgs {
    /// Remove a directory and everything in it (it disappears at once;
    /// its contents are deleted in the background)
    #[arg(short = 'r', long)]
    recursive: bool,
    path: String,
}

#[derive(Args)]
pub struct MoveArgs {
    src: String,
    /// Destination; an existing directory means "into it"
    dst: String,
    /// Replace an existing file at the destination
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
pub struct LnArgs {
    /// The file to name again; with -s, the link's target, kept as given
    target: String,
    /// The new name; an existing directory means "into it, under the
    /// target's name"
    link_name: String,
    /// Make a symbolic link instead of a hard link
    #[arg(short = 's', long)]
    symbolic: bool,
}

#[derive(Args)]
pub struct StatArgs {
    /// Remote path, or `id:<file id>`
    path: String,
    /// Also show each chunk's target nodes and which nodes hold it
    #[arg(long)]
    locations: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum XattrCommand {
    /// Print one attribute's value (raw bytes)
    Get { path: String, name: String },
    /// Set an attribute: NAME (as in user.color) to VALUE, or to stdin with `-`
    Set {
        path: String,
        name: String,
        value: String,
        /// Refuse if the attribute exists
        #[arg(long, conflicts_with = "replace")]
        create: bool,
        /// Refuse if the attribute does not exist
        #[arg(long)]
        replace: bool,
    },
    /// List the attributes you may read, with their values
    List {
        path: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove an attribute
    Rm { path: String, name: String },
}

/// Octal mode bits, as in 640, 0750 or 1777.
pub fn parse_mode(text: &str) -> Result<u32, String> {
    let mode = u32::from_str_radix(text, 8)
        .map_err(|_| format!("{text:?} is not an octal mode, as in 640, 0750 or 1777"))?;
    if mode > 0o7777 {
        return Err(format!(
            "{text} has bits beyond 7777; a mode is set-uid, set-gid, sticky, and read, write and execute \
             for owner, group and others"
        ));
    }
    Ok(mode)
}

fn progress_bar(total_bytes: Option<u64>, verb: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total_bytes {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template")
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg} {bytes} {bytes_per_sec}").expect("static template"),
        ),
    };
    bar.set_message(verb.to_string());
    bar
}

pub async fn put(ctx: &Context, args: PutArgs) -> anyhow::Result<ExitCode> {
    let options = PutOptions {
        on_exists: match (args.force, args.rename) {
            (true, _) => OnExists::Replace,
            (_, true) => OnExists::Rename,
            _ => OnExists::Fail,
        },
        mode: args.mode,
        xattrs: None,
        size_bytes: None,
    };
    let remote = ctx.resolve(&args.remote).await?;
    let local_name = || -> anyhow::Result<String> {
        if args.local == "-" {
            bail!(
                "{remote} is a directory; give the remote file a name when reading stdin, as in {}/NAME",
                remote.trim_end_matches('/')
            );
        }
        Path::new(&args.local)
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
            .with_context(|| format!("cannot take a file name from {}", args.local))
    };
    // REMOTE/ means into that directory; so does REMOTE naming one, which
    // the first try finds out.
    let target = if args.remote.ends_with('/') {
        format!("{}/{}", remote.trim_end_matches('/'), local_name()?)
    } else {
        remote.clone()
    };
    let first = put_file(ctx, &args.local, &target, &options).await;
    let committed = match first {
        Err(PutFailure::Client(e))
            if e.code() == Some(ErrorCode::IsADirectory) && !args.remote.ends_with('/') =>
        {
            let inside = format!("{}/{}", remote.trim_end_matches('/'), local_name()?);
            put_file(ctx, &args.local, &inside, &options).await
        }
        other => other,
    };
    let committed = match committed {
        Ok(committed) => committed,
        Err(PutFailure::Client(e)) => return Err(e.into()),
        Err(PutFailure::Local(e)) => return Err(e),
    };
    println!("{} {}", committed.id, escape(&committed.path));
    Ok(ExitCode::SUCCESS)
}

enum PutFailure {
    Client(ClientError),
    Local(anyhow::Error),
}

/// Stores the local file (or stdin, `-`) as `remote`.
async fn put_file(
    ctx: &Context,
    local: &str,
    remote: &str,
    options: &PutOptions,
) -> Result<cairn_proto::api::CommitResponse, PutFailure> {
    if local == "-" {
        let bar = progress_bar(None, "put");
        let result = ctx
            .files
            .put(remote, tokio::io::stdin(), options, &|n| bar.inc(n))
            .await;
        bar.finish_and_clear();
        return result.map_err(PutFailure::Client);
    }
    let file = tokio::fs::File::open(local)
        .await
        .with_context(|| format!("cannot open local file {local}"))
        .map_err(PutFailure::Local)?;
    let metadata = file
        .metadata()
        .await
        .with_context(|| format!("cannot read local file {local}"))
        .map_err(PutFailure::Local)?;
    if metadata.is_dir() {
        return Err(PutFailure::Local(anyhow::anyhow!(
            "{local} is a directory; put stores one file at a time"
        )));
    }
    let bar = progress_bar(Some(metadata.len()), "put");
    let options = PutOptions {
        size_bytes: Some(metadata.len()),
        ..options.clone()
    };
    let result = ctx.files.put(remote, file, &options, &|n| bar.inc(n)).await;
    bar.finish_and_clear();
    result.map_err(PutFailure::Client)
}

pub async fn get(ctx: &Context, args: GetArgs) -> anyhow::Result<ExitCode> {
    let remote = ctx.remote(&args.remote).await?;
    let reader = ctx.files.open(remote.target()).await?;
    let RangeArgs { offset, length } = args.range;
    if args.local == "-" {
        let mut stdout = tokio::io::stdout();
        reader
            .copy_range(
                offset,
                length,
                &mut stdout,
                cairn_client::limits::DEFAULT_WINDOW,
                &|_| {},
            )
            .await?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut local = PathBuf::from(&args.local);
    if local.is_dir() {
        let name = match &remote {
            Remote::Path(path) => path.rsplit('/').next().filter(|n| !n.is_empty()),
            Remote::Id(_) => None,
        };
        local = local.join(
            name.map(str::to_string)
                .unwrap_or_else(|| format!("cairn-file-{}", reader.stat().id)),
        );
    }
    // A destination that is neither a file nor a directory (a device such
    // as /dev/null, a FIFO) is written in place, as `cp` does: renaming a
    // finished file over it would replace it (for root, /dev/null itself).
    if std::fs::metadata(&local).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        let mut device = tokio::fs::OpenOptions::new()
            .write(true)
            .open(&local)
            .await
            .with_context(|| format!("cannot open {} for writing", local.display()))?;
        reader
            .copy_range(
                offset,
                length,
                &mut device,
                cairn_client::limits::DEFAULT_WINDOW,
                &|_| {},
            )
            .await?;
        return Ok(ExitCode::SUCCESS);
    }
    // Write beside the destination, rename when every chunk verified: the
    // output name never shows a partial or unverified file.
    let file_name = local.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    let temp = local.with_file_name(format!(".{file_name}.cairn-partial-{}", std::process::id()));
    let result = async {
        let mut file = tokio::fs::File::create(&temp)
            .await
            .with_context(|| format!("cannot create {}", temp.display()))?;
        let total = reader
            .size_bytes()
            .saturating_sub(offset)
            .min(length.unwrap_or(u64::MAX));
        let bar = progress_bar(Some(total), "get");
        let fetched = reader
            .copy_range(
                offset,
                length,
                &mut file,
                cairn_client::limits::DEFAULT_WINDOW,
                &|n| bar.inc(n),
            )
            .await;
        bar.finish_and_clear();
        fetched?;
        file.flush().await?;
        drop(file);
        tokio::fs::rename(&temp, &local).await.with_context(|| {
            format!(
                "cannot move the fetched file into place at {}",
                local.display()
            )
        })?;
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&temp).await;
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

pub async fn cat(ctx: &Context, args: CatArgs) -> anyhow::Result<ExitCode> {
    let args = GetArgs {
        remote: args.remote,
        local: "-".into(),
        range: args.range,
    };
    get(ctx, args).await
}

pub async fn ls(ctx: &Context, args: LsArgs) -> anyhow::Result<ExitCode> {
    let path = match &args.path {
        Some(path) => ctx.resolve(path).await?,
        None => ctx.cwd().await?,
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        // Streamed, page by page: a listing of any size in bounded memory.
        write!(
            out,
            "{{\"path\":{},\"entries\":[",
            serde_json::to_string(&path)?
        )?;
    }
    let mut first = true;
    let mut show = |shown: &str, entry: &DirEntry| -> std::io::Result<()> {
        if args.json {
            if !first {
                out.write_all(b",")?;
            }
            let mut value = serde_json::to_value(entry)?;
            if args.recursive {
                value["path"] = serde_json::Value::String(shown.to_string());
            }
            serde_json::to_writer(&mut out, &value)?;
        } else if args.long {
            let row = DirEntry {
                name: shown.to_string(),
                ..entry.clone()
            };
            out.write_all(output::long_listing(std::slice::from_ref(&row)).as_bytes())?;
        } else {
            let suffix = if entry.kind == EntryKind::Dir {
                "/"
            } else {
                ""
            };
            writeln!(out, "{}{suffix}", escape(shown))?;
        }
        first = false;
        Ok(())
    };
    let write_error = |e: std::io::Error| ClientError::io("cannot write the listing", e);
    if args.recursive {
        let skipped = ctx
            .files
            .walk_each(&path, |e| show(&e.path, &e.entry).map_err(write_error))
            .await?;
        for dir in &skipped {
            eprintln!("cairn: cannot list {}: permission denied", escape(dir));
        }
    } else {
        ctx.files
            .list_each(&path, |e| show(&e.name, &e).map_err(write_error))
            .await?;
    }
    if args.json {
        writeln!(out, "]}}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub async fn mkdir(ctx: &Context, args: MkdirArgs) -> anyhow::Result<ExitCode> {
    let path = ctx.resolve(&args.path).await?;
    ctx.files.mkdir(&path, args.parents, args.mode).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn chmod(ctx: &Context, args: ChmodArgs) -> anyhow::Result<ExitCode> {
    let path = ctx.resolve(&args.path).await?;
    ctx.files.chmod(&path, args.mode).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn chown(ctx: &Context, args: ChownArgs) -> anyhow::Result<ExitCode> {
    let (owner, group) = match args.owner.split_once(':') {
        Some((owner, group)) => (owner, Some(group)),
        None => (args.owner.as_str(), None),
    };
    let mut request = ChownRequest {
        path: ctx.resolve(&args.path).await?,
        ..ChownRequest::default()
    };
    // A number is an id, as chown(1) takes one.
    match owner.parse::<u32>() {
        _ if owner.is_empty() => {}
        Ok(uid) => request.uid = Some(uid),
        Err(_) => request.owner = Some(owner.to_string()),
    }
    match group
        .filter(|g| !g.is_empty())
        .map(|g| (g, g.parse::<u32>()))
    {
        None => {}
        Some((_, Ok(gid))) => request.gid = Some(gid),
        Some((group, Err(_))) => request.group = Some(group.to_string()),
    }
    if request.owner.is_none()
        && request.uid.is_none()
        && request.group.is_none()
        && request.gid.is_none()
    {
        bail!("give OWNER, OWNER:GROUP or :GROUP, as in alice:eng");
    }
    ctx.files.chown(&request).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn rm(ctx: &Context, args: RmArgs) -> anyhow::Result<ExitCode> {
    let path = ctx.resolve(&args.path).await?;
    ctx.files.remove(&path, args.recursive).await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn mv(ctx: &Context, args: MoveArgs) -> anyhow::Result<ExitCode> {
    let (src, dst) = (ctx.resolve(&args.src).await?, ctx.resolve(&args.dst).await?);
    let moved = ctx.files.rename(&src, &dst, args.force).await?;
    println!("{}", escape(&moved.path));
    Ok(ExitCode::SUCCESS)
}

pub async fn cp(ctx: &Context, args: MoveArgs) -> anyhow::Result<ExitCode> {
    let (src, dst) = (ctx.resolve(&args.src).await?, ctx.resolve(&args.dst).await?);
    let copied = ctx.files.copy(&src, &dst, args.force).await?;
    println!("{} {}", copied.id, escape(&copied.path));
    Ok(ExitCode::SUCCESS)
}

pub async fn ln(ctx: &Context, args: LnArgs) -> anyhow::Result<ExitCode> {
    let mut link_name = ctx.resolve(&args.link_name).await?;
    let target = if args.symbolic {
        args.target.clone()
    } else {
        ctx.resolve(&args.target).await?
    };
    // As ln(1): into an existing directory, under the target's last name.
    if let Ok(stat) = ctx.files.stat(Target::Path(&link_name)).await {
        if stat.kind == EntryKind::Dir {
            let name = target
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or_default();
            if name.is_empty() || name == "." || name == ".." {
                bail!(
                    "give the link's own name: {} is a directory",
                    escape(&link_name)
                );
            }
            link_name = format!("{}/{name}", link_name.trim_end_matches('/'));
        }
    }
    let stat = if args.symbolic {
        ctx.files.symlink(&link_name, &target).await?
    } else {
        ctx.files.link(&target, &link_name).await?
    };
    println!("{} {}", stat.id, escape(&link_name));
    Ok(ExitCode::SUCCESS)
}

pub async fn stat(ctx: &Context, args: StatArgs) -> anyhow::Result<ExitCode> {
    let remote = ctx.remote(&args.path).await?;
    let stat = ctx.files.stat(remote.target()).await?;
    let locations = if args.locations {
        let map = ctx.files.map(true).await?;
        let grant = Grant::admin(ctx.meta()).await?;
        let chunks = ctx
            .files
            .chunks()
            .clone()
            .with_capability(grant.capability().await?);
        Some(chunk_locations(&chunks, &map, &stat.chunks).await?)
    } else {
        None
    };
    if args.json {
        let mut value = serde_json::to_value(&stat)?;
        if let Some(locations) = &locations {
            value["locations"] = serde_json::to_value(locations)?;
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        let shown = match &remote {
            Remote::Path(path) => path.clone(),
            Remote::Id(id) => format!("id:{id}"),
        };
        print!("{}", output::stat_text(&shown, &stat, locations.as_deref()));
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn xattr(ctx: &Context, command: XattrCommand) -> anyhow::Result<ExitCode> {
    match command {
        XattrCommand::Get { path, name } => {
            let remote = ctx.remote(&path).await?;
            let value = ctx.files.xattr(remote.target(), &name).await?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&value)?;
            if std::io::stdout().is_terminal() && !value.ends_with(b"\n") {
                stdout.write_all(b"\n")?;
            }
        }
        XattrCommand::Set {
            path,
            name,
            value,
            create,
            replace,
        } => {
            let path = ctx.resolve(&path).await?;
            let value = if value == "-" {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                    .context("cannot read the value from stdin")?;
                bytes
            } else {
                value.into_bytes()
            };
            let mode = match (create, replace) {
                (true, _) => XattrSetMode::Create,
                (_, true) => XattrSetMode::Replace,
                _ => XattrSetMode::Any,
            };
            ctx.files.set_xattr(&path, &name, &value, mode).await?;
        }
        XattrCommand::List { path, json } => {
            let remote = ctx.remote(&path).await?;
            let xattrs = ctx.files.xattrs(remote.target()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&xattrs)?);
            } else {
                for xattr in &xattrs {
                    println!("{}={}", escape(&xattr.name), shown_value(&xattr.value));
                }
            }
        }
        XattrCommand::Rm { path, name } => {
            let path = ctx.resolve(&path).await?;
            ctx.files.remove_xattr(&path, &name).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A value as getfattr shows it: quoted text, or `0s` and base64.
fn shown_value(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(text) if !text.chars().any(char::is_control) => {
            format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
        }
        _ => format!(
            "0s{}",
            base64::engine::general_purpose::STANDARD.encode(value)
        ),
    }
}

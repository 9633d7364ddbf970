//! Mounting and unmounting: `cairn mount` runs in the foreground until
//! Ctrl-C, SIGTERM or `cairn umount`, then unmounts cleanly (committing
//! what open files hold).

use std::path::Path;

use cairn_client::{ClientError, Files};
use fuser::{Config, MountOption, Session, SessionACL};

use crate::fs::{CairnFs, Identity};

#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// Let other local users use the mount: they act as the mount's user,
    /// or, on an admin's mount, as themselves (their uid and groups, with
    /// the kernel checking permissions first).
    pub allow_other: bool,
    pub read_only: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Refused(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

/// Event-loop threads reading /dev/fuse; the work runs on the runtime.
const FUSE_THREADS: usize = 4;

/// Mounts the cluster `files` reaches at `mountpoint`, as the user it is
/// logged in as (or, an admin's with `allow_other`, as each caller), and
/// serves it until it is unmounted or the process gets SIGINT or SIGTERM.
/// `ready` runs once the mount answers, with whom it acts as.
pub async fn mount(
    files: Files,
    mountpoint: &Path,
    options: &MountOptions,
    ready: impl FnOnce(&str),
) -> Result<(), MountError> {
    let whoami = files.meta().whoami().await?;
    // An admin's session may act for any uid: shared with other local
    // users, it acts as each caller (as NFS trusts its clients' uids),
    // never as the admin for everyone.
    let per_caller = whoami.admin && options.allow_other;
    let metadata = std::fs::metadata(mountpoint).map_err(|source| MountError::Io {
        context: format!("cannot use {} as a mount point", mountpoint.display()),
        source,
    })?;
    if !metadata.is_dir() {
        return Err(MountError::Refused(format!(
            "{} is not a directory; mount on an empty directory (mkdir it first)",
            mountpoint.display()
        )));
    }
    let chunk_size_bytes = files.map(false).await?.chunk_size_bytes;
    let who = Identity {
        uid: whoami.uid,
        gids: whoami.gids.clone(),
        admin: whoami.admin,
    };
    let fs = CairnFs::new(
        files,
        who,
        per_caller,
        options.read_only,
        chunk_size_bytes,
        tokio::runtime::Handle::current(),
    );
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        if options.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    if options.allow_other {
        config.acl = SessionACL::All;
    }
    if per_caller {
        // The kernel checks each caller's permissions against the
        // attributes first; the metadata service checks again.
        config.mount_options.push(MountOption::DefaultPermissions);
    }
    config.n_threads = Some(FUSE_THREADS);
    config.clone_fd = true;
    let where_ = mountpoint.to_path_buf();
    // Mounting waits for the kernel's first request: not on the runtime.
    let session = tokio::task::spawn_blocking(move || Session::new(fs, &where_, &config))
        .await
        .expect("mount task")
        .map_err(|source| MountError::Io {
            context: format!(
                "cannot mount on {} (is /dev/fuse there, and fusermount3 installed for non-root users?)",
                mountpoint.display()
            ),
            source,
        })?;
    let mut session = session;
    let mut unmounter = session.unmount_callable();
    if per_caller {
        ready(&format!(
            "each local caller's own uid and groups (through {}'s admin session)",
            whoami.user
        ));
    } else {
        ready(&whoami.user);
    }
    let serving = tokio::task::spawn_blocking(move || session.run());
    tokio::pin!(serving);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|source| MountError::Io {
        context: "cannot handle SIGTERM".into(),
        source,
    })?;
    tokio::select! {
        ended = &mut serving => return finished(ended),
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("unmounting {}", mountpoint.display());
    if let Err(e) = unmounter.unmount() {
        tracing::warn!(
            "{} is busy ({e}): detaching it now; it goes away once the last file open there is closed",
            mountpoint.display()
        );
        unmount(mountpoint, true)?;
    }
    finished(serving.await)
}

fn finished(ended: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), MountError> {
    ended
        .expect("session task")
        .map_err(|source| MountError::Io {
            context: "the mount ended with an error".into(),
            source,
        })
}

/// Unmounts `mountpoint` (lazily: detached now, gone when the last file
/// open there closes): umount(2) as root, fusermount3 otherwise.
pub fn unmount(mountpoint: &Path, lazy: bool) -> Result<(), MountError> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())
        .map_err(|_| MountError::Refused(format!("{} holds a NUL byte", mountpoint.display())))?;
    let flags = if lazy { libc::MNT_DETACH } else { 0 };
    // SAFETY: a valid NUL-terminated path; umount2 reads it only.
    if unsafe { libc::umount2(path.as_ptr(), flags) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EPERM) => fusermount(mountpoint, lazy),
        Some(libc::EBUSY) => Err(MountError::Refused(format!(
            "{} is busy: a process has a file or directory open there (see `fuser -vm {}`); \
             close it, or unmount with --lazy",
            mountpoint.display(),
            mountpoint.display()
        ))),
        Some(libc::EINVAL) => Err(MountError::Refused(format!(
            "nothing is mounted on {}",
            mountpoint.display()
        ))),
        _ => Err(MountError::Io {
            context: format!("cannot unmount {}", mountpoint.display()),
            source: error,
        }),
    }
}

fn fusermount(mountpoint: &Path, lazy: bool) -> Result<(), MountError> {
    let mut last = None;
    for program in ["fusermount3", "fusermount"] {
        let mut command = std::process::Command::new(program);
        command.arg(if lazy { "-uz" } else { "-u" }).arg(mountpoint);
        match command.status() {
            Ok(status) if status.success() => return Ok(()),
            Ok(status) => {
                return Err(MountError::Refused(format!(
                    "{program} could not unmount {} ({status})",
                    mountpoint.display()
                )))
            }
            Err(e) => last = Some(e),
        }
    }
    Err(MountError::Io {
        context: "unmounting as a normal user needs fusermount3 (Debian: apt install fuse3)".into(),
        source: last.expect("a program was tried"),
    })
}

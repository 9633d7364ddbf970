//! `cairn mount` beside a test [`Cluster`]: mounted on a temporary
//! directory as the user of a client config, and unmounted when dropped.
//! Mounting needs /dev/fuse and root (or fusermount3).

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::cluster::{spawn, Cluster};

pub struct Mounted {
    /// Where the cluster is mounted.
    pub path: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

/// Whether `path` is a mount point (in /proc/self/mounts).
pub fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let wanted = path.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(wanted.as_ref()))
}

/// Why this machine cannot run mount tests, if it cannot.
pub fn cannot_mount() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("there is no /dev/fuse (load the fuse module)".into());
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 && which("fusermount3").is_none() {
        return Some("not root, and no fusermount3 (apt install fuse3)".into());
    }
    None
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

impl Cluster {
    /// Mounts the cluster as the user whose session is in `config`, with
    /// `args` (such as `--read-only`), and waits until the mount answers.
    pub fn mount(&self, config: &Path, args: &[&str]) -> Mounted {
        if let Some(reason) = cannot_mount() {
            panic!("cannot run mount tests here: {reason}");
        }
        let dir = tempfile::Builder::new()
            .prefix("cairn-mount-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let log = self.dir.path().join(format!(
            "mount-{}.log",
            dir.path().file_name().unwrap().to_string_lossy()
        ));
        let mut all: Vec<String> = vec![
            "--meta".into(),
            self.meta_addr.clone(),
            "--config".into(),
            config.to_string_lossy().into_owned(),
            "mount".into(),
            path.to_string_lossy().into_owned(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let mut child = spawn(&all, &log);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !is_mounted(&path) {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "cairn mount exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "cairn mount did not mount {}",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Mounted {
            path,
            log,
            child: Some(child),
            _dir: dir,
        }
    }
}

impl Mounted {
    /// `name` inside the mount.
    pub fn at(&self, name: &str) -> PathBuf {
        self.path.join(name.trim_start_matches('/'))
    }

    /// Unmounts with SIGTERM, as Ctrl-C does, and waits for the process:
    /// its exit status.
    pub fn unmount(mut self) -> std::process::ExitStatus {
        self.stop().expect("the mount process was running")
    }

    /// Kills the mount process (SIGKILL: a crash, nothing released) and
    /// detaches what it had mounted.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        lazy_unmount(&self.path);
    }

    /// The mount process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().ok();
                lazy_unmount(&self.path);
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn lazy_unmount(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    if !is_mounted(path) {
        return;
    }
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

impl Drop for Mounted {
    fn drop(&mut self) {
        self.stop();
        lazy_unmount(&self.path);
    }
}

//! `cairn mount` against a real cluster: ordinary system calls on the
//! mounted directory, checked against what POSIX and ext4 answer, against
//! a reference file (fsx), between two mounts, and with a chunk server
//! killed during writes. Needs /dev/fuse and root (CI runs as root); the
//! tests fail with the reason rather than pass by skipping.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use cairn_testkit::{random_bytes, Cluster, Mounted};

const MIB: usize = 1024 * 1024;

/// The kernel trusts attributes and names for 1 s (`limits::ATTR_TTL`).
const CACHE_TTL: Duration = Duration::from_millis(1200);

/// A cluster with 1 MiB chunks (so that small files span chunks) and the
/// user alice, logged in; alice's client config.
fn cluster(nodes: usize) -> (Cluster, std::path::PathBuf) {
    let cluster = Cluster::start_with(nodes, &["--chunk-size", "1MiB"]);
    let out = cluster.cairn_with_stdin(
        &["user", "add", "alice", "--password-stdin"],
        b"alice-password\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alice = cluster.login_as("alice", "alice-password");
    (cluster, alice)
}

fn errno_of(result: std::io::Result<impl Sized>) -> i32 {
    match result {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().expect("an OS error"),
    }
}

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn renameat2(from: &Path, to: &Path, flags: u32) -> i32 {
    let (from, to) = (c_path(from), c_path(to));
    // SAFETY: valid NUL-terminated paths.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    if rc == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

fn utimens(path: &Path, times: [libc::timespec; 2]) -> i32 {
    let path = c_path(path);
    // SAFETY: a valid path and two timespecs.
    let rc = unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) };
    if rc == 0 {
        0
    } else {
        std::io::Error::last_os_error().raw_os_error().unwrap()
    }
}

fn timespec(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

fn cat(cluster: &Cluster, config: &Path, remote: &str) -> Vec<u8> {
    let out = cluster.cairn_as(config, &["cat", remote], &[]);
    assert!(
        out.status.success(),
        "cairn cat {remote}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn files_and_directories_follow_posix() {
    let (cluster, alice) = cluster(3);
    let mount = cluster.mount(&alice, &[]);
    let home = mount.at("home/alice");

    // Create, write, read back; the CLI sees it once closed.
    let f = home.join("f.txt");
    fs::write(&f, b"hello").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"hello");
    assert_eq!(cat(&cluster, &alice, "/home/alice/f.txt"), b"hello");
    // O_APPEND, O_TRUNC.
    OpenOptions::new()
        .append(true)
        .open(&f)
        .unwrap()
        .write_all(b" world")
        .unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"hello world");
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&f)
        .unwrap()
        .write_all(b"new")
        .unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"new");

    // Random writes across chunk boundaries, a hole, fsync, ftruncate.
    let data = random_bytes(3 * MIB + 123, 1);
    let big = home.join("big.bin");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&big)
        .unwrap();
    file.write_all_at(&data, 0).unwrap();
    file.write_all_at(b"XYZ", (MIB - 1) as u64).unwrap();
    file.write_all_at(b"tail", (5 * MIB) as u64).unwrap();
    file.sync_all().unwrap();
    let mut expected = data.clone();
    expected[MIB - 1..MIB + 2].copy_from_slice(b"XYZ");
    expected.resize(5 * MIB, 0);
    expected.extend_from_slice(b"tail");
    let mut read_back = vec![0u8; expected.len()];
    file.read_exact_at(&mut read_back, 0).unwrap();
    assert!(
        read_back == expected,
        "read back what was written, with zeros in the hole"
    );
    file.set_len(MIB as u64 + 10).unwrap();
    expected.truncate(MIB + 10);
    file.set_len(2 * MIB as u64).unwrap();
    expected.resize(2 * MIB, 0);
    // posix_fallocate grows the file with zeros; within it, nothing changes.
    use std::os::fd::AsRawFd;
    // SAFETY: an open descriptor.
    assert_eq!(
        unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, 1000) },
        0
    );
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, 2 * MIB as i64 + 5) },
        0
    );
    expected.resize(2 * MIB + 5, 0);
    drop(file);
    assert_eq!(fs::metadata(&big).unwrap().len(), 2 * MIB as u64 + 5);
    assert!(fs::read(&big).unwrap() == expected);
    assert!(cat(&cluster, &alice, "/home/alice/big.bin") == expected);

    // Directories.
    let d = home.join("d");
    fs::create_dir(&d).unwrap();
    assert_eq!(errno_of(fs::create_dir(&d)), libc::EEXIST);
    fs::write(d.join("inner"), b"x").unwrap();
    assert_eq!(errno_of(fs::remove_dir(&d)), libc::ENOTEMPTY);
    assert_eq!(errno_of(fs::remove_file(&d)), libc::EISDIR);
    assert_eq!(errno_of(fs::remove_dir(d.join("inner"))), libc::ENOTDIR);
    assert_eq!(errno_of(fs::metadata(home.join("missing"))), libc::ENOENT);
    assert_eq!(
        errno_of(fs::write(home.join("missing/x"), b"")),
        libc::ENOENT
    );
    let long = "n".repeat(256);
    assert_eq!(
        errno_of(fs::write(home.join(&long), b"")),
        libc::ENAMETOOLONG
    );
    fs::write(home.join("n".repeat(255)), b"").unwrap();
    let mut names: Vec<String> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["inner"]);

    // rename(2) and its error cases.
    let (a, b) = (home.join("a"), home.join("b"));
    fs::write(&a, b"A").unwrap();
    fs::write(&b, b"B").unwrap();
    fs::rename(&a, &b).unwrap();
    assert_eq!(fs::read(&b).unwrap(), b"A");
    assert_eq!(errno_of(fs::metadata(&a)), libc::ENOENT);
    let empty = home.join("empty");
    fs::create_dir(&empty).unwrap();
    assert_eq!(errno_of(fs::rename(&b, &empty)), libc::EISDIR);
    assert_eq!(errno_of(fs::rename(&d, &b)), libc::ENOTDIR);
    let full = home.join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("x"), b"").unwrap();
    assert_eq!(errno_of(fs::rename(&d, &full)), libc::ENOTEMPTY);
    fs::rename(&d, &empty).unwrap();
    assert_eq!(fs::read(empty.join("inner")).unwrap(), b"x");
    assert_eq!(
        errno_of(fs::rename(&empty, empty.join("sub"))),
        libc::EINVAL
    );
    fs::write(&a, b"A2").unwrap();
    assert_eq!(renameat2(&a, &b, libc::RENAME_NOREPLACE), libc::EEXIST);
    assert_eq!(fs::read(&b).unwrap(), b"A");

    // Modes, owners, times.
    fs::set_permissions(&b, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(&b).unwrap().mode() & 0o7777, 0o600);
    let b_c = c_path(&b);
    // SAFETY: a valid path.
    let chowned = unsafe { libc::chown(b_c.as_ptr(), 4242, u32::MAX) };
    assert_eq!(chowned, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EPERM)
    );
    fs::set_permissions(&b, fs::Permissions::from_mode(0o000)).unwrap();
    assert_eq!(errno_of(File::open(&b)), libc::EACCES);
    fs::set_permissions(&b, fs::Permissions::from_mode(0o644)).unwrap();
    // Set-uid and set-gid stay through chmod and go with a write by a
    // user; a sticky directory shows its bit.
    let tool = home.join("tool");
    fs::write(&tool, b"#!/bin/sh\n").unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o6755)).unwrap();
    assert_eq!(fs::metadata(&tool).unwrap().mode() & 0o7777, 0o6755);
    fs::write(&tool, b"#!/bin/sh\nexit 0\n").unwrap();
    assert_eq!(fs::metadata(&tool).unwrap().mode() & 0o7777, 0o0755);
    let shared = home.join("shared");
    fs::create_dir(&shared).unwrap();
    // Link counts: a directory's 2 + its subdirectories, a file's 1.
    fs::create_dir(shared.join("d1")).unwrap();
    fs::create_dir(shared.join("d2")).unwrap();
    fs::write(shared.join("f"), b"").unwrap();
    assert_eq!(fs::metadata(&shared).unwrap().nlink(), 4);
    assert_eq!(fs::metadata(shared.join("f")).unwrap().nlink(), 1);
    fs::remove_dir(shared.join("d2")).unwrap();
    assert_eq!(fs::metadata(&shared).unwrap().nlink(), 3);
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    assert_eq!(fs::metadata(&shared).unwrap().mode() & 0o7777, 0o1777);
    let before = fs::metadata(&b).unwrap();
    assert_eq!(
        utimens(
            &b,
            [
                timespec(1_000_000_000, 5),
                timespec(1_500_000_000, 123_456_789)
            ]
        ),
        0
    );
    let set = fs::metadata(&b).unwrap();
    assert_eq!((set.atime(), set.atime_nsec()), (1_000_000_000, 5));
    assert_eq!(
        (set.mtime(), set.mtime_nsec()),
        (1_500_000_000, 123_456_789)
    );
    assert!(set.ctime() >= before.ctime());
    let omit_atime = timespec(0, libc::UTIME_OMIT);
    assert_eq!(utimens(&b, [omit_atime, timespec(1_600_000_000, 0)]), 0);
    let omitted = fs::metadata(&b).unwrap();
    assert_eq!(
        (omitted.atime(), omitted.mtime()),
        (1_000_000_000, 1_600_000_000)
    );
    assert_eq!(
        utimens(
            &b,
            [timespec(0, libc::UTIME_NOW), timespec(0, libc::UTIME_NOW)]
        ),
        0
    );
    let now = fs::metadata(&b).unwrap();
    assert!(now.mtime() > 1_600_000_000 && now.atime() == now.mtime());
    // Times set on an open file with writes are not undone by its close.
    let mut open = OpenOptions::new().write(true).open(&b).unwrap();
    open.write_all(b"later").unwrap();
    assert_eq!(utimens(&b, [timespec(7, 0), timespec(7, 0)]), 0);
    drop(open);
    assert_eq!(fs::metadata(&b).unwrap().mtime(), 7);

    // Extended attributes.
    let xattr = |name: &str| CString::new(name).unwrap();
    let value = b"blue";
    // SAFETY: valid path, name and buffer.
    let set = unsafe {
        libc::setxattr(
            b_c.as_ptr(),
            xattr("user.color").as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(set, 0);
    let mut buffer = [0u8; 16];
    // SAFETY: as above.
    let got = unsafe {
        libc::getxattr(
            b_c.as_ptr(),
            xattr("user.color").as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    assert_eq!(&buffer[..got as usize], value);
    // SAFETY: as above.
    let missing = unsafe {
        libc::getxattr(
            b_c.as_ptr(),
            xattr("user.none").as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    assert_eq!(missing, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::ENODATA)
    );

    // Other users' files: alice cannot write into / (the cluster's).
    assert_eq!(errno_of(fs::write(mount.at("not-hers"), b"")), libc::EACCES);
    assert!(mount.unmount().success(), "a clean unmount");
}

#[test]
fn symbolic_links_pipes_and_sockets() {
    let (cluster, alice) = cluster(3);
    let mount = cluster.mount(&alice, &[]);
    let home = mount.at("home/alice");
    fs::create_dir(home.join("dir")).unwrap();
    fs::write(home.join("dir/real"), b"through the link").unwrap();

    // The kernel follows links; the namespace keeps their text.
    let link = home.join("ln");
    std::os::unix::fs::symlink("dir/real", &link).unwrap();
    assert_eq!(fs::read_link(&link).unwrap(), Path::new("dir/real"));
    assert_eq!(fs::read(&link).unwrap(), b"through the link");
    let meta = fs::symlink_metadata(&link).unwrap();
    assert!(meta.file_type().is_symlink());
    assert_eq!(meta.len(), "dir/real".len() as u64);
    std::os::unix::fs::symlink("dir", home.join("dirlink")).unwrap();
    assert_eq!(
        fs::read(home.join("dirlink/real")).unwrap(),
        b"through the link"
    );
    std::os::unix::fs::symlink("/no/such/place", home.join("dangling")).unwrap();
    assert_eq!(errno_of(fs::read(home.join("dangling"))), libc::ENOENT);
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("x", &link)),
        libc::EEXIST
    );
    // Writing through a link writes the file it names.
    fs::write(&link, b"rewritten").unwrap();
    assert_eq!(fs::read(home.join("dir/real")).unwrap(), b"rewritten");
    // Renamed and removed as a name, leaving its target alone.
    fs::rename(&link, home.join("ln2")).unwrap();
    fs::remove_file(home.join("ln2")).unwrap();
    assert_eq!(fs::read(home.join("dir/real")).unwrap(), b"rewritten");

    // A named pipe works between two processes of this machine.
    let fifo = home.join("fifo");
    let fifo_c = c_path(&fifo);
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::metadata(&fifo).unwrap().file_type()
    ));
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::write(fifo, b"piped").unwrap())
    };
    assert_eq!(fs::read(&fifo).unwrap(), b"piped");
    writer.join().unwrap();
    // A socket node; a device node needs an admin (EPERM for alice).
    let sock = home.join("sock");
    let sock_c = c_path(&sock);
    // SAFETY: valid path and mode.
    assert_eq!(
        unsafe { libc::mknod(sock_c.as_ptr(), libc::S_IFSOCK | 0o600, 0) },
        0
    );
    assert!(std::os::unix::fs::FileTypeExt::is_socket(
        &fs::symlink_metadata(&sock).unwrap().file_type()
    ));
    let dev_c = c_path(&home.join("null"));
    // SAFETY: valid path and mode.
    let made = unsafe { libc::mknod(dev_c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    assert_eq!(made, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EPERM)
    );
    // The CLI sees them for what they are.
    let listing = String::from_utf8(
        cluster
            .cairn_as(&alice, &["ls", "-l", "/home/alice"], &[])
            .stdout,
    )
    .unwrap();
    assert!(
        listing.contains("fifo") && listing.contains("sock") && listing.contains("link"),
        "{listing}"
    );
    let mut names: Vec<_> = fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dangling", "dir", "dirlink", "fifo", "sock"]);
    drop(mount);
}

#[test]
fn hard_links_name_one_file_in_several_places() {
    let (cluster, alice) = cluster(3);
    let mount = cluster.mount(&alice, &[]);
    let home = mount.at("home/alice");
    fs::create_dir(home.join("d")).unwrap();
    let (a, b, c) = (home.join("a"), home.join("d/b"), home.join("c"));
    fs::write(&a, b"one file").unwrap();
    let before = fs::metadata(&a).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    fs::hard_link(&a, &b).unwrap();
    fs::hard_link(&b, &c).unwrap();
    let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
    assert_eq!((ma.ino(), ma.nlink()), (mb.ino(), 3));
    assert!(ma.ctime_nsec() != before.ctime_nsec() || ma.ctime() > before.ctime());
    // One file: a write or a chmod through one name shows through all.
    fs::write(&b, b"written through b").unwrap();
    fs::set_permissions(&c, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::read(&a).unwrap(), b"written through b");
    assert_eq!(fs::metadata(&a).unwrap().mode() & 0o7777, 0o600);
    // An open file keeps working when the name it was opened by goes.
    let mut open = OpenOptions::new().append(true).open(&a).unwrap();
    fs::remove_file(&a).unwrap();
    open.write_all(b", then appended").unwrap();
    drop(open);
    assert_eq!(fs::read(&c).unwrap(), b"written through b, then appended");
    assert_eq!(fs::metadata(&c).unwrap().nlink(), 2);
    // The refusals of link(2).
    assert_eq!(errno_of(fs::hard_link(&b, &c)), libc::EEXIST);
    assert_eq!(
        errno_of(fs::hard_link(home.join("d"), home.join("e"))),
        libc::EPERM
    );
    assert_eq!(
        errno_of(fs::hard_link(home.join("none"), home.join("e"))),
        libc::ENOENT
    );
    // Renaming one name onto another of the same file changes nothing.
    fs::rename(&b, &c).unwrap();
    assert_eq!(fs::metadata(&b).unwrap().nlink(), 2);
    // Another client sees the names, and the last removal takes the file.
    let listing = String::from_utf8(
        cluster
            .cairn_as(&alice, &["stat", "/home/alice/d/b"], &[])
            .stdout,
    )
    .unwrap();
    assert!(listing.contains("links:    2"), "{listing}");
    fs::remove_file(&b).unwrap();
    std::thread::sleep(CACHE_TTL);
    assert_eq!(fs::metadata(&c).unwrap().nlink(), 1);
    fs::remove_file(&c).unwrap();
    assert_eq!(errno_of(fs::metadata(&c)), libc::ENOENT);
    let out = cluster.cairn_as(&alice, &["ls", "/home/alice"], &[]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "d/");
    drop(mount);
}

/// Whether file `id` is gone from the metadata service (as its admin sees).
fn gone_within(cluster: &Cluster, id: u64, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let out = cluster.cairn(&["stat", &format!("id:{id}")]);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains(&format!("no file or directory has id {id}")),
                "{err}"
            );
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_file_removed_while_open_lives_until_its_last_close() {
    let (cluster, alice) = cluster(3);
    let mount = cluster.mount(&alice, &[]);
    let home = mount.at("home/alice");
    let path = home.join("scratch");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    file.write_all(b"before the unlink").unwrap();
    let id = file.metadata().unwrap().ino();
    fs::remove_file(&path).unwrap();
    assert_eq!(errno_of(fs::metadata(&path)), libc::ENOENT);
    // Still readable and writable through the handle, with no name.
    file.write_all(b", and after").unwrap();
    file.sync_all().unwrap();
    assert_eq!(file.metadata().unwrap().nlink(), 0);
    let mut back = String::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_string(&mut back).unwrap();
    assert_eq!(back, "before the unlink, and after");
    let listing = cluster.cairn_as(&alice, &["ls", "/home/alice"], &[]);
    assert!(listing.stdout.is_empty(), "no name left: {listing:?}");
    assert!(
        !gone_within(&cluster, id, Duration::ZERO),
        "kept while open"
    );
    // The last close takes it.
    drop(file);
    assert!(gone_within(&cluster, id, Duration::from_secs(10)));

    // So does a rename over a file open here (an editor's save).
    let log = home.join("log");
    fs::write(&log, b"old contents").unwrap();
    let mut reader = File::open(&log).unwrap();
    let old_id = reader.metadata().unwrap().ino();
    fs::write(home.join("log.new"), b"new contents").unwrap();
    fs::rename(home.join("log.new"), &log).unwrap();
    assert_eq!(fs::read(&log).unwrap(), b"new contents");
    let mut back = String::new();
    reader.read_to_string(&mut back).unwrap();
    assert_eq!(back, "old contents");
    assert!(!gone_within(&cluster, old_id, Duration::ZERO));
    drop(reader);
    assert!(gone_within(&cluster, old_id, Duration::from_secs(10)));

    // A crashed mount's removed-while-open file goes when its session
    // ends (here at logout; otherwise when it expires).
    let held = home.join("held");
    let mut file = File::create(&held).unwrap();
    file.write_all(b"kept for the session").unwrap();
    file.sync_all().unwrap();
    let id = file.metadata().unwrap().ino();
    fs::remove_file(&held).unwrap();
    mount.kill();
    // Closed after the crash: the mount never hears of it.
    drop(file);
    assert!(
        !gone_within(&cluster, id, Duration::ZERO),
        "held by the session"
    );
    let out = cluster.cairn_as(&alice, &["logout"], &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(gone_within(&cluster, id, Duration::from_secs(10)));
}

#[test]
fn a_read_only_mount_refuses_changes() {
    let (cluster, alice) = cluster(3);
    let out = cluster.cairn_as(&alice, &["put", "-", "/home/alice/kept"], b"kept");
    assert!(out.status.success());
    let mount = cluster.mount(&alice, &["--read-only"]);
    assert_eq!(fs::read(mount.at("home/alice/kept")).unwrap(), b"kept");
    assert_eq!(
        errno_of(fs::write(mount.at("home/alice/new"), b"")),
        libc::EROFS
    );
    assert_eq!(
        errno_of(fs::remove_file(mount.at("home/alice/kept"))),
        libc::EROFS
    );
    assert!(mount.unmount().success());
}

/// A small random number generator with a fixed seed: the same run every time.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

/// fsx: random writes, reads, truncates, fsyncs and reopenings on a file
/// in the mount and on a local reference file; every read and the end
/// state agree, through the mount and through the CLI.
#[test]
fn fsx_random_operations_agree_with_a_local_file() {
    let (cluster, alice) = cluster(3);
    let mount = cluster.mount(&alice, &[]);
    let scratch = tempfile::tempdir().unwrap();
    let reference_path = scratch.path().join("reference");
    let tested_path = mount.at("home/alice/fsx");
    let open = |path: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .unwrap()
    };
    let mut reference = open(&reference_path);
    let mut tested = open(&tested_path);
    let mut rng = Lcg(0x5eed);
    let max_size = 4 * MIB as u64 + 17;
    for step in 0..600 {
        let size = reference.metadata().unwrap().len();
        match rng.next(100) {
            0..=44 => {
                let offset = rng.next(max_size);
                let len = 1 + rng.next(256 * 1024) as usize;
                let data = random_bytes(len, step);
                reference.write_all_at(&data, offset).unwrap();
                tested.write_all_at(&data, offset).unwrap();
            }
            45..=79 => {
                let offset = rng.next(size + 10);
                let len = rng.next(300 * 1024) as usize;
                let mut want = vec![0u8; len];
                let mut got = vec![0u8; len];
                let n_want = read_at_most(&reference, &mut want, offset);
                let n_got = read_at_most(&tested, &mut got, offset);
                assert_eq!(n_got, n_want, "step {step}: read length at {offset}");
                assert!(
                    got[..n_got] == want[..n_want],
                    "step {step}: read {len} at {offset}"
                );
            }
            80..=89 => {
                let new_size = rng.next(max_size);
                reference.set_len(new_size).unwrap();
                tested.set_len(new_size).unwrap();
            }
            90..=94 => tested.sync_all().unwrap(),
            _ => {
                drop(tested);
                tested = open(&tested_path);
                assert_eq!(
                    tested.metadata().unwrap().len(),
                    size,
                    "step {step}: size after reopen"
                );
            }
        }
    }
    drop(tested);
    let mut want = Vec::new();
    reference.seek(SeekFrom::Start(0)).unwrap();
    reference.read_to_end(&mut want).unwrap();
    assert!(
        fs::read(&tested_path).unwrap() == want,
        "the whole file through the mount"
    );
    assert!(
        cat(&cluster, &alice, "/home/alice/fsx") == want,
        "the whole file through the CLI"
    );
}

fn read_at_most(file: &File, buffer: &mut [u8], offset: u64) -> usize {
    let mut done = 0;
    while done < buffer.len() {
        match file
            .read_at(&mut buffer[done..], offset + done as u64)
            .unwrap()
        {
            0 => break,
            n => done += n,
        }
    }
    done
}

/// Close-to-open: what one mount closed, another sees when it next opens
/// (after the attribute cache's second).
#[test]
fn two_mounts_see_each_others_closed_files() {
    let (cluster, alice) = cluster(3);
    let one = cluster.mount(&alice, &[]);
    let two = cluster.mount(&alice, &[]);
    fs::write(one.at("home/alice/shared"), b"from one").unwrap();
    std::thread::sleep(CACHE_TTL);
    assert_eq!(fs::read(two.at("home/alice/shared")).unwrap(), b"from one");
    fs::write(two.at("home/alice/shared"), b"from two, longer").unwrap();
    std::thread::sleep(CACHE_TTL);
    assert_eq!(
        fs::read(one.at("home/alice/shared")).unwrap(),
        b"from two, longer"
    );
    fs::rename(one.at("home/alice/shared"), one.at("home/alice/moved")).unwrap();
    fs::create_dir(one.at("home/alice/dir")).unwrap();
    std::thread::sleep(CACHE_TTL);
    assert_eq!(
        errno_of(fs::metadata(two.at("home/alice/shared"))),
        libc::ENOENT
    );
    assert_eq!(
        fs::read(two.at("home/alice/moved")).unwrap(),
        b"from two, longer"
    );
    assert!(fs::metadata(two.at("home/alice/dir")).unwrap().is_dir());

    // A directory the other mount knows is moved and a new one takes its
    // name: each name leads to the right directory (the stale lookup is
    // answered ESTALE and the kernel looks the path up again).
    fs::create_dir_all(one.at("home/alice/d/sub")).unwrap();
    fs::write(one.at("home/alice/d/sub/f"), b"old").unwrap();
    std::thread::sleep(CACHE_TTL);
    assert_eq!(fs::read(two.at("home/alice/d/sub/f")).unwrap(), b"old");
    fs::rename(one.at("home/alice/d"), one.at("home/alice/d-old")).unwrap();
    fs::create_dir_all(one.at("home/alice/d/sub")).unwrap();
    fs::write(one.at("home/alice/d/sub/f"), b"new").unwrap();
    std::thread::sleep(CACHE_TTL);
    assert_eq!(fs::read(two.at("home/alice/d/sub/f")).unwrap(), b"new");
    assert_eq!(fs::read(two.at("home/alice/d-old/sub/f")).unwrap(), b"old");
    assert_eq!(
        fs::metadata(two.at("home/alice/d/sub")).unwrap().ino(),
        fs::metadata(one.at("home/alice/d/sub")).unwrap().ino()
    );

    // Writes that cannot be committed are refused to the writer (fsync,
    // and close, which commit, fail) and leave the file as it was.
    let guarded = one.at("home/alice/guarded");
    fs::write(&guarded, b"kept").unwrap();
    let mut file = OpenOptions::new().write(true).open(&guarded).unwrap();
    file.write_all(b"lost").unwrap();
    // Another client takes the write permission away meanwhile.
    fs::set_permissions(
        two.at("home/alice/guarded"),
        fs::Permissions::from_mode(0o444),
    )
    .unwrap();
    let synced = file.sync_all();
    assert_eq!(errno_of(synced), libc::EACCES);
    drop(file);
    assert_eq!(cat(&cluster, &alice, "/home/alice/guarded"), b"kept");
    drop(two);
    assert!(one.unmount().success());
}

/// Files written through the mount while a chunk server dies: every
/// write that closed without an error is whole afterwards.
#[test]
fn a_chunk_server_killed_during_writes_loses_no_closed_file() {
    let (mut cluster, alice) = cluster(4);
    let mount = cluster.mount(&alice, &[]);
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| {
            (
                format!("home/alice/w{i}"),
                random_bytes(3 * MIB + i * 1000, 100 + i as u64),
            )
        })
        .collect();
    let mut closed = Vec::new();
    for (i, (name, data)) in files.iter().enumerate() {
        if i == 4 {
            cluster.kill_chunk(1);
        }
        let written = (|| {
            let mut file = File::create(mount.at(name))?;
            file.write_all(data)?;
            file.sync_all()
        })();
        match written {
            Ok(()) => closed.push((name, data)),
            Err(e) => eprintln!("writing {name} failed while a node was down: {e}"),
        }
    }
    assert!(
        closed.len() >= 8,
        "writes go on past a dead node: {} closed",
        closed.len()
    );
    for (name, data) in &closed {
        assert!(
            fs::read(mount.at(name)).unwrap() == **data,
            "{name} through the mount"
        );
        assert!(
            cat(&cluster, &alice, &format!("/{name}")) == **data,
            "{name} through the CLI"
        );
    }
    assert!(mount.unmount().success());
}

/// Unmounting with files still being written commits them.
#[test]
fn sigterm_unmounts_and_keeps_what_was_written() {
    let (cluster, alice) = cluster(3);
    let mount = cluster.mount(&alice, &[]);
    fs::write(mount.at("home/alice/before"), b"closed before").unwrap();
    let path = mount.path.clone();
    assert!(mount.unmount().success(), "unmounted cleanly");
    assert!(!cairn_testkit::is_mounted(&path));
    assert_eq!(
        cat(&cluster, &alice, "/home/alice/before"),
        b"closed before"
    );
    let again: Mounted = cluster.mount(&alice, &[]);
    assert_eq!(
        fs::read(again.at("home/alice/before")).unwrap(),
        b"closed before"
    );
}

/// Runs `script` with sh as local user `uid` (group `gid`, no other
/// groups: util-linux's setpriv); its exit code and what it printed on
/// stderr.
fn sh_as(uid: u32, gid: u32, script: &str) -> (i32, String) {
    let out = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An admin's `--allow-other` mount acts as each calling process: what a
/// local uid makes is that uid's, and what it may not touch it cannot.
#[test]
fn an_admins_shared_mount_acts_as_each_caller() {
    let (cluster, _alice) = cluster(3);
    let mount = cluster.mount(&cluster.config, &["--allow-other"]);
    // Other local users must reach the mount point itself.
    let parent = mount.path.parent().unwrap();
    fs::set_permissions(parent, fs::Permissions::from_mode(0o755)).unwrap();
    let home = mount.at("home/alice");
    let alice_uid = fs::metadata(&home).unwrap().uid();
    let alice_gid = fs::metadata(&home).unwrap().gid();
    assert_ne!(alice_uid, 0);

    // Alice's local uid writes in her home: the file is hers.
    let made = home.join("from-local");
    let (code, err) = sh_as(
        alice_uid,
        alice_gid,
        &format!("echo hi > '{}'", made.display()),
    );
    assert_eq!(code, 0, "{err}");
    let meta = fs::metadata(&made).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (alice_uid, alice_gid));
    assert_eq!(fs::read(&made).unwrap(), b"hi\n");

    // A uid with no rights there is refused (home is 0700), and cannot
    // write at the root (0755, the cluster's).
    let (code, err) = sh_as(4242, 4242, &format!("cat '{}'", made.display()));
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");
    let (code, err) = sh_as(4242, 4242, &format!("mkdir '{}'", mount.at("x").display()));
    assert_ne!(code, 0);
    assert!(err.contains("Permission denied"), "{err}");
    // Once given a place, what it makes is its own, though no Cairn user
    // has that uid.
    fs::create_dir(mount.at("drop")).unwrap();
    fs::set_permissions(mount.at("drop"), fs::Permissions::from_mode(0o1777)).unwrap();
    let theirs = mount.at("drop/theirs");
    let (code, err) = sh_as(4242, 4242, &format!("echo x > '{}'", theirs.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::metadata(&theirs).unwrap().uid(), 4242);
    // The sticky directory keeps alice from removing it.
    let (code, _) = sh_as(
        alice_uid,
        alice_gid,
        &format!("rm -f '{}'", theirs.display()),
    );
    assert_ne!(code, 0);
    assert!(theirs.exists());
    // Root (this test) acts as an admin.
    fs::remove_file(&theirs).unwrap();
    // Another user's write to a set-uid file clears the bit (the kernel
    // asks first, with rights of its own), and succeeds.
    let tool = mount.at("drop/tool");
    fs::write(&tool, b"v1").unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o4777)).unwrap();
    let (code, err) = sh_as(4242, 4242, &format!("echo v2 >> '{}'", tool.display()));
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::metadata(&tool).unwrap().mode() & 0o7777, 0o777);
    assert_eq!(fs::read(&tool).unwrap(), b"v1v2\n");
}

/// What the mount refuses, it refuses with what to do.
#[test]
fn refusals_say_what_to_do() {
    let (cluster, _alice) = cluster(3);
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().to_string_lossy().into_owned();
    // A file is no mount point.
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let on_file = cluster.cairn(&["mount", &file.to_string_lossy()]);
    let said = String::from_utf8_lossy(&on_file.stderr);
    assert!(
        !on_file.status.success() && said.contains("not a directory"),
        "{said}"
    );
    // Unmounting what is not mounted.
    let unmounted = cluster.cairn(&["umount", &target]);
    let said = String::from_utf8_lossy(&unmounted.stderr);
    assert!(
        !unmounted.status.success() && said.contains("nothing is mounted"),
        "{said}"
    );
}

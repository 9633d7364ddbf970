//! The file commands as a person uses them: relative paths from the home,
//! the shell, byte ranges, extended attributes, recursive listings, names
//! that could forge output, completions, and the data directories of the
//! previous release brought up by this one.

use std::time::Duration;

use cairn_testkit::*;

#[test]
fn relative_paths_start_at_the_home_in_commands_and_at_the_working_directory_in_the_shell() {
    let cluster = Cluster::start(3);
    // One-shot commands: relative to /home/admin, where `ls` looks.
    let out = cluster.cairn_with_stdin(&["put", "-", "notes.txt"], b"one");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .ends_with(" /home/admin/notes.txt\n"));
    assert_eq!(cluster.ok(&["ls"]), "notes.txt\n");
    assert_eq!(get_bytes(&cluster, "/home/admin/notes.txt"), b"one");
    cluster.ok(&["mkdir", "-p", "projects/x"]);
    cluster.ok(&["mv", "notes.txt", "projects/"]);
    assert_eq!(get_bytes(&cluster, "projects/notes.txt"), b"one");
    assert_eq!(get_bytes(&cluster, "../admin/projects/notes.txt"), b"one");

    // The shell: cd moves where relative paths start; a script from stdin
    // runs line by line, errors do not stop it.
    let local = cluster.local_file("up.txt", b"uploaded");
    let script = format!(
        "pwd\n\
         cd projects\n\
         pwd\n\
         put {} .\n\
         ls\n\
         cat 'up.txt'\n\
         cd /nowhere\n\
         cd x\n\
         cp ../up.txt copy.txt\n\
         ls -l\n\
         cd\n\
         pwd\n",
        local.display()
    );
    let out = cluster.cairn_with_stdin(&["shell"], script.as_bytes());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "/home/admin");
    assert_eq!(lines[1], "/home/admin/projects");
    assert!(
        lines[2].ends_with(" /home/admin/projects/up.txt"),
        "{stdout}"
    );
    assert_eq!(lines[3..6], ["notes.txt", "up.txt", "x/"]);
    assert!(stdout.contains("uploaded"), "{stdout}");
    assert!(stderr.contains("/nowhere does not exist"), "{stderr}");
    assert!(stdout.contains("copy.txt"), "{stdout}");
    assert_eq!(lines.last(), Some(&"/home/admin"), "{stdout}");
    assert_eq!(
        get_bytes(&cluster, "/home/admin/projects/x/copy.txt"),
        b"uploaded"
    );
    // The status of a script is its last command's.
    assert!(out.status.success());
    let out = cluster.cairn_with_stdin(&["shell"], b"help\nls /missing\n");
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().contains("mkdir"));
}

#[test]
fn byte_ranges_extended_attributes_and_recursive_listings() {
    let cluster = Cluster::start_full(3, &["--chunk-size", "64KiB"], &[]);
    let data = random_bytes(300_000, 5);
    cluster.ok(&["mkdir", "/r"]);
    put_bytes(&cluster, &data, "/r/data");
    let out = cluster.cairn(&["cat", "/r/data", "--offset", "65530", "--length", "100"]);
    assert!(out.status.success());
    assert_eq!(out.stdout, &data[65_530..65_630]);
    let local = cluster.dir.path().join("tail");
    cluster.ok(&[
        "get",
        "/r/data",
        local.to_str().unwrap(),
        "--offset",
        "200000",
    ]);
    assert_eq!(std::fs::read(&local).unwrap(), &data[200_000..]);

    cluster.ok(&["xattr", "set", "/r/data", "user.color", "red"]);
    cluster.cairn_with_stdin(&["xattr", "set", "/r/data", "user.bin", "-"], &[0, 1, 2]);
    assert_eq!(
        cluster.ok(&["xattr", "get", "/r/data", "user.color"]),
        "red"
    );
    assert_eq!(
        cluster.ok(&["xattr", "list", "/r/data"]),
        "user.bin=0sAAEC\nuser.color=\"red\"\n"
    );
    let err = cluster.fails(&["xattr", "set", "/r/data", "user.color", "x", "--create"]);
    assert!(err.contains("already has the extended attribute"), "{err}");
    let err = cluster.fails(&["xattr", "set", "/r/data", "color", "x"]);
    assert!(err.contains("user."), "says which namespace: {err}");
    cluster.ok(&["xattr", "rm", "/r/data", "user.color"]);
    let err = cluster.fails(&["xattr", "get", "/r/data", "user.color"]);
    assert!(err.contains("no extended attribute user.color"), "{err}");

    cluster.ok(&["mkdir", "/r/a"]);
    cluster.ok(&["mkdir", "/r/a-b"]);
    put_bytes(&cluster, b"x", "/r/a/inner");
    put_bytes(&cluster, b"x", "/r/a.txt");
    assert_eq!(
        cluster.ok(&["ls", "-R", "/r"]),
        "/r/a-b/\n/r/a.txt\n/r/a/\n/r/a/inner\n/r/data\n"
    );
    let listing = cluster.json(&["ls", "--json", "-R", "/r"]);
    assert_eq!(listing["entries"].as_array().unwrap().len(), 5);
}

#[test]
fn ln_gives_a_file_more_names_and_rm_takes_them_one_by_one() {
    let cluster = Cluster::start(3);
    cluster.ok(&["mkdir", "/l"]);
    put_bytes(&cluster, b"linked", "/l/f");
    cluster.ok(&["ln", "/l/f", "/l/g"]);
    cluster.ok(&["mkdir", "/l/d"]);
    // Into a directory, under the file's own name, as ln(1).
    cluster.ok(&["ln", "/l/f", "/l/d"]);
    cluster.ok(&["ln", "-s", "../f", "/l/d/sym"]);
    let stat = cluster.json(&["stat", "--json", "/l/d/f"]);
    assert_eq!(stat["links"].as_u64(), Some(3));
    assert!(cluster.ok(&["stat", "/l/g"]).contains("links:    3"));
    assert_eq!(
        cluster.json(&["stat", "--json", "/l/d/sym"])["target"].as_str(),
        Some("../f")
    );
    let err = cluster.fails(&["ln", "/l/f", "/l/g"]);
    assert!(
        err.contains("already exists") && err.contains("remove it first"),
        "{err}"
    );
    let err = cluster.fails(&["ln", "/l/d", "/l/e"]);
    assert!(
        err.contains("is a directory") && err.contains("symbolic link"),
        "{err}"
    );
    cluster.ok(&["rm", "/l/f"]);
    cluster.ok(&["rm", "/l/d/f"]);
    assert_eq!(cluster.ok(&["cat", "/l/g"]), "linked");
    assert_eq!(
        cluster.json(&["stat", "--json", "/l/g"])["links"].as_u64(),
        Some(1)
    );
}

#[test]
fn names_cannot_forge_lines_in_text_output_and_json_keeps_them_exact() {
    let cluster = Cluster::start(3);
    cluster.ok(&["mkdir", "/shared"]);
    cluster.ok(&["chmod", "777", "/shared"]);
    let forged = "x\nfile rw-r--r-- admin    admin              1 v1    2026-01-01 00:00:00        1  passwords";
    put_bytes(&cluster, b"!", &format!("/shared/{forged}"));
    put_bytes(&cluster, b"!", "/shared/plain");
    let long = cluster.ok(&["ls", "-l", "/shared"]);
    assert_eq!(long.lines().count(), 2, "one line per entry: {long}");
    assert!(long.contains(r"$'x\nfile rw-r--r--"), "{long}");
    assert_eq!(cluster.ok(&["ls", "/shared"]).lines().count(), 2);
    let json = cluster.json(&["ls", "--json", "/shared"]);
    let names: Vec<&str> = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&forged), "{names:?}");
}

#[test]
fn completion_scripts_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = std::process::Command::new(cairn_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains("cairn"), "{shell}");
        assert!(script.contains("xattr"), "{shell} completes subcommands");
    }
    let out = std::process::Command::new(cairn_bin())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// A cluster of the release before format markers, numeric owners and
/// xattrs, brought up by this binary: its users log in with their
/// passwords, their files read back byte for byte with their owners, and
/// the namespace takes new work.
#[test]
fn the_data_of_the_previous_release_comes_up_whole() {
    let cluster = Cluster::start_from_data(&release_1_fixture(), "release-1 admin password");
    let alice = cluster.login_as("alice", "alice password");
    let as_alice = |args: &[&str], stdin: &[u8]| cluster.cairn_as(&alice, args, stdin);
    let out = as_alice(&["cat", "/shared/docs/big.txt"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, vec![b'x'; 300_000]);
    let out = as_alice(&["cat", "diary.txt"], b"");
    assert_eq!(out.stdout, b"private\n", "alice's home is where it was");
    assert_eq!(
        get_bytes(&cluster, "/shared/readme.txt"),
        b"hello from release 1\n"
    );
    let stat = cluster.json(&["stat", "--json", "/shared/docs"]);
    assert_eq!(
        (stat["owner"].as_str(), stat["group"].as_str()),
        (Some("alice"), Some("eng"))
    );
    assert_eq!(stat["uid"], 1000);
    // bob may not read alice's private file, as before.
    let bob = cluster.login_as("bob", "bob password 1");
    let out = cluster.cairn_as(&bob, &["cat", "/home/alice/diary.txt"], b"");
    assert!(!out.status.success());
    // New work: a put, an attribute, a removal.
    let out = as_alice(&["put", "-", "/shared/docs/new.txt"], b"new");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.ok(&["xattr", "set", "/shared/readme.txt", "user.tag", "old"]);
    cluster.ok(&["rm", "-r", "/shared/a"]);
    let fsck = cluster.json(&["fsck", "--json"]);
    assert_eq!(fsck["missing"], 0, "{fsck}");
    // And again after a restart (the upgrade ran once, the state is new).
    let mut cluster = cluster;
    cluster.stop_all();
    cluster.start_all();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get_bytes(&cluster, "/shared/docs/new.txt"), b"new");
    assert_eq!(
        cluster.ok(&["xattr", "get", "/shared/readme.txt", "user.tag"]),
        "old"
    );
}

//! Users, sessions, permissions and chunk capabilities, end to end: real
//! `cairn meta` and `cairn chunk` processes, and the `cairn` client run as
//! different users. Each refusal is checked for its status or message and
//! for leaving everything as it was.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use cairn_testkit::*;
use serde_json::Value;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs `cairn` as the user of `config`; must succeed.
fn ok_as(cluster: &Cluster, config: &Path, args: &[&str]) -> String {
    let out = cluster.cairn_as(config, args, &[]);
    assert!(out.status.success(), "cairn {args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `cairn` as the user of `config`; must fail. Returns stderr.
fn fails_as(cluster: &Cluster, config: &Path, args: &[&str]) -> String {
    let out = cluster.cairn_as(config, args, &[]);
    assert!(!out.status.success(), "cairn {args:?} should have failed");
    stderr(&out)
}

/// Adds `name` (with `--groups` when given) and logs them in.
fn add_user(cluster: &Cluster, name: &str, groups: &str) -> PathBuf {
    let password = format!("{name}'s password");
    let mut args = vec!["user", "add", name, "--password-stdin"];
    if !groups.is_empty() {
        args.extend(["--groups", groups]);
    }
    let out = cluster.cairn_with_stdin(&args, format!("{password}\n").as_bytes());
    assert!(out.status.success(), "user add {name}: {}", stderr(&out));
    cluster.login_as(name, &password)
}

fn put_as(cluster: &Cluster, config: &Path, data: &[u8], remote: &str) -> Output {
    cluster.cairn_as(config, &["put", "-", remote], data)
}

/// `GET path` on the metadata service with `Authorization: Bearer token`.
fn meta_get(cluster: &Cluster, path: &str, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let (code, body) = try_http_full(
        &cluster.metas[0].addr,
        "GET",
        path,
        &[("Authorization", &auth)],
        b"",
        Duration::from_secs(5),
    )
    .expect("the metadata service answers");
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn token_of(config: &Path) -> String {
    let text = std::fs::read_to_string(config).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    value["token"].as_str().unwrap().to_string()
}

#[test]
fn permission_bits_decide_who_reads_writes_and_searches() {
    let cluster = Cluster::start(3);
    let alice = add_user(&cluster, "alice", "eng");
    let bob = add_user(&cluster, "bob", "eng");
    let carol = add_user(&cluster, "carol", "");

    // Each user has a private home, and `ls` with no path lists it.
    assert!(
        put_as(&cluster, &alice, b"alice's notes", "/home/alice/notes")
            .status
            .success()
    );
    assert_eq!(ok_as(&cluster, &alice, &["ls"]), "notes\n");
    let home = cluster.json(&["stat", "--json", "/home/alice"]);
    assert_eq!(
        (home["owner"].as_str(), home["mode"].as_u64()),
        (Some("alice"), Some(0o700))
    );
    let err = fails_as(&cluster, &bob, &["cat", "/home/alice/notes"]);
    assert!(
        err.contains("permission denied") && err.contains("directory /home/alice"),
        "{err}"
    );

    // Search on the home, read for the group only.
    ok_as(&cluster, &alice, &["chmod", "711", "/home/alice"]);
    ok_as(&cluster, &alice, &["chown", ":eng", "/home/alice/notes"]);
    ok_as(&cluster, &alice, &["chmod", "640", "/home/alice/notes"]);
    assert_eq!(
        ok_as(&cluster, &bob, &["cat", "/home/alice/notes"]),
        "alice's notes",
        "group read"
    );
    let err = fails_as(&cluster, &carol, &["cat", "/home/alice/notes"]);
    assert!(
        err.contains("carol may not") && err.contains("read"),
        "other: {err}"
    );
    // Search without read: names cannot be listed.
    let err = fails_as(&cluster, &bob, &["ls", "/home/alice"]);
    assert!(err.contains("list /home/alice"), "{err}");
    // Write on the file is the owner's only.
    let err = String::from_utf8_lossy(
        &put_as(&cluster, &bob, b"bob was here", "/home/alice/notes").stderr,
    )
    .into_owned();
    assert!(err.contains("already exists"), "{err}");
    let err = String::from_utf8_lossy(
        &cluster
            .cairn_as(&bob, &["put", "--force", "-", "/home/alice/notes"], b"x")
            .stderr,
    )
    .into_owned();
    assert!(err.contains("permission denied"), "{err}");
    // Removing or renaming needs write on the directory.
    let err = fails_as(&cluster, &bob, &["rm", "/home/alice/notes"]);
    assert!(err.contains("write"), "{err}");
    let err = fails_as(&cluster, &bob, &["mv", "/home/alice/notes", "/home/bob/n"]);
    assert!(err.contains("permission denied"), "{err}");
    // Copying out needs read, and write where the copy goes.
    ok_as(
        &cluster,
        &bob,
        &["cp", "/home/alice/notes", "/home/bob/copy"],
    );
    assert_eq!(
        ok_as(&cluster, &bob, &["cat", "/home/bob/copy"]),
        "alice's notes"
    );
    // chmod is the owner's; chown to another user an admin's.
    let err = fails_as(&cluster, &bob, &["chmod", "777", "/home/alice/notes"]);
    assert!(err.contains("only the owner"), "{err}");
    let err = fails_as(&cluster, &alice, &["chown", "bob", "/home/alice/notes"]);
    assert!(err.contains("only an admin"), "{err}");
    cluster.ok(&["chown", "bob:bob", "/home/alice/notes"]);

    // Nothing the refusals touched changed.
    assert_eq!(get_bytes(&cluster, "/home/alice/notes"), b"alice's notes");
    let listing = cluster.ok(&["ls", "-l", "/home/alice"]);
    assert!(
        listing.contains("rw-r----- bob      bob") && listing.lines().count() == 1,
        "{listing}"
    );
}

#[test]
fn bad_and_stale_credentials_are_refused_with_a_way_forward() {
    let cluster = Cluster::start(3);
    let alice = add_user(&cluster, "alice", "");
    let before = cluster.ok(&["ls", "-l", "/home/alice"]);

    // No login at all.
    let nobody = cluster.dir.path().join("nobody.json");
    let err = fails_as(&cluster, &nobody, &["ls", "/"]);
    assert!(err.contains("cairn login"), "{err}");

    // A wrong password, named as such, and the same for an unknown user.
    let out = run_cairn(
        &cluster.meta_addr,
        &nobody,
        &["login", "--user", "alice", "--password-stdin"],
        b"not alice's password\n",
    );
    assert!(
        stderr(&out).contains("wrong user name or password"),
        "{}",
        stderr(&out)
    );
    assert!(!nobody.exists(), "a failed login saves nothing");

    // A forged token, and a well-formed one from no session.
    for token in ["forged", &"0".repeat(64)] {
        let (code, body) = meta_get(&cluster, "/v1/fs/list?path=/", token);
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("cairn login"), "{body}");
    }

    // A revoked token: logout ends the session on the server.
    let token = token_of(&alice);
    assert_eq!(meta_get(&cluster, "/v1/auth/whoami", &token).0, 200);
    ok_as(&cluster, &alice, &["logout"]);
    let (code, body) = meta_get(&cluster, "/v1/auth/whoami", &token);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("revoked"), "{body}");
    let err = fails_as(&cluster, &alice, &["ls"]);
    assert!(err.contains("cairn login"), "{err}");

    // An expired token.
    let short = cluster.dir.path().join("short.json");
    let out = run_cairn(
        &cluster.meta_addr,
        &short,
        &[
            "login",
            "--user",
            "alice",
            "--password-stdin",
            "--expires-in",
            "1s",
        ],
        b"alice's password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(1500));
    let err = fails_as(&cluster, &short, &["ls"]);
    assert!(
        err.contains("expired") && err.contains("cairn login"),
        "{err}"
    );

    // An admin ends every session of a user; a password change does too.
    let again = cluster.login_as("alice", "alice's password");
    ok_as(&cluster, &again, &["whoami"]);
    let out = cluster.ok(&["user", "revoke", "alice"]);
    assert!(out.contains("ended 1 session"), "{out}");
    fails_as(&cluster, &again, &["whoami"]);
    let again = cluster.login_as("alice", "alice's password");
    let out = cluster.cairn_with_stdin(
        &["user", "passwd", "alice", "--password-stdin"],
        b"alice's new password\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    fails_as(&cluster, &again, &["whoami"]);
    cluster.login_as("alice", "alice's new password");

    assert_eq!(cluster.ok(&["ls", "-l", "/home/alice"]), before);
}

#[test]
fn another_users_or_another_clusters_token_gives_no_access() {
    let cluster = Cluster::start(3);
    let alice = add_user(&cluster, "alice", "");
    let bob = add_user(&cluster, "bob", "");
    assert!(put_as(&cluster, &bob, b"bob's", "/home/bob/secret")
        .status
        .success());
    // Alice's token is alice: bob's files stay closed to it.
    let (code, body) = meta_get(
        &cluster,
        "/v1/fs/stat?path=/home/bob/secret",
        &token_of(&alice),
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("alice may not"), "{body}");
    // A session of another cluster is unknown here.
    let other = Cluster::start(1);
    let (code, body) = meta_get(&cluster, "/v1/auth/whoami", &token_of(&other.config));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("another cluster"), "{body}");
}

#[test]
fn user_management_and_cluster_changes_are_for_admins() {
    let cluster = Cluster::start(3);
    let alice = add_user(&cluster, "alice", "");
    let out = cluster.cairn_as(
        &alice,
        &["user", "add", "mallory", "--password-stdin"],
        b"mallory's password\n",
    );
    assert!(
        stderr(&out).contains("only an admin may add users"),
        "{}",
        stderr(&out)
    );
    for args in [
        &["user", "list"][..],
        &["user", "rm", "admin"],
        &["meta-admin", "snapshot"],
        &["node", "drain", &cluster.node_id(0)],
        &["fsck"],
    ] {
        let err = fails_as(&cluster, &alice, args);
        assert!(err.contains("only an admin"), "{args:?}: {err}");
    }
    let err = fails_as(&cluster, &alice, &["mkdir", "/top"]);
    assert!(err.contains("permission denied"), "{err}");
    // The last admin cannot be removed; other users can.
    let err = cluster.fails(&["user", "rm", "admin"]);
    assert!(err.contains("only admin"), "{err}");
    let users = cluster.json(&["user", "list", "--json"]);
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice"]);
    cluster.ok(&["user", "rm", "alice"]);
    let err = fails_as(&cluster, &alice, &["whoami"]);
    assert!(err.contains("cairn login"), "{err}");
    assert_eq!(
        cluster.status().unwrap()["nodes_up"],
        3,
        "no node was drained"
    );
}

#[test]
fn failed_logins_are_rate_limited_and_logged_without_secrets() {
    let cluster = Cluster::start(1);
    add_user(&cluster, "alice", "");
    let config = cluster.dir.path().join("guess.json");
    let mut last = String::new();
    for attempt in 0..6 {
        let out = run_cairn(
            &cluster.meta_addr,
            &config,
            &["login", "--user", "alice", "--password-stdin"],
            format!("guess number {attempt}\n").as_bytes(),
        );
        assert!(!out.status.success());
        last = stderr(&out);
    }
    assert!(
        last.contains("too many failed logins") && last.contains("wait"),
        "{last}"
    );
    // Even the right password waits out the window.
    let out = run_cairn(
        &cluster.meta_addr,
        &config,
        &["login", "--user", "alice", "--password-stdin"],
        b"alice's password\n",
    );
    assert!(
        stderr(&out).contains("too many failed logins"),
        "{}",
        stderr(&out)
    );
    let log = std::fs::read_to_string(cluster.member_log(0)).unwrap();
    assert!(
        log.contains("refused a login") && log.contains("wrong user name or password"),
        "the refusals are logged"
    );
    assert!(
        !log.contains("guess number") && !log.contains("alice's password"),
        "no password reaches the log"
    );
    let token = token_of(&cluster.config);
    assert!(!log.contains(&token), "no token reaches the log");
}

#[test]
fn chunk_servers_serve_a_chunk_only_with_a_capability_for_it() {
    let cluster = Cluster::start(3);
    let alice = add_user(&cluster, "alice", "");
    let bob = add_user(&cluster, "bob", "");
    assert!(
        put_as(&cluster, &alice, b"alice's private data", "/home/alice/p")
            .status
            .success()
    );
    assert!(put_as(&cluster, &bob, b"bob's shared data", "/home/bob/s")
        .status
        .success());
    ok_as(&cluster, &bob, &["chmod", "755", "/home/bob"]);
    // The admin sees the chunk ids. Opening a file to read it (a stat
    // with read=true, as `cairn get` makes) carries one capability per
    // chunk; a plain stat carries none.
    let private = chunk_ids(&cluster, "/home/alice/p")[0].clone();
    let open = |config: &Path, path: &str| {
        meta_get(
            &cluster,
            &format!("/v1/fs/stat?path={path}&read=true"),
            &token_of(config),
        )
    };
    let (code, body) = open(&bob, "/home/bob/s");
    assert_eq!(code, 200, "{body}");
    let shared: Value = serde_json::from_str(&body).unwrap();
    let shared_id = shared["chunks"][0]["id"].as_str().unwrap().to_string();
    let capability = shared["capabilities"][0].as_str().unwrap().to_string();
    let plain: Value =
        serde_json::from_str(&ok_as(&cluster, &bob, &["stat", "--json", "/home/bob/s"])).unwrap();
    assert!(plain.get("capabilities").is_none(), "{plain}");
    // Alice, who may read bob's file, gets one too; nobody gets one for
    // alice's private file but alice (and the admin).
    let (code, body) = open(&alice, "/home/bob/s");
    let alice_view: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(alice_view["capabilities"]
        .as_array()
        .is_some_and(|c| c.len() == 1));
    let (code, body) = open(&bob, "/home/alice/p");
    assert_eq!(code, 403, "{body}");

    let node = &cluster.chunks[0].addr;
    let get = |id: &str, headers: &[(&str, &str)]| {
        let (code, body) = try_http_full(
            node,
            "GET",
            &format!("/v1/chunks/{id}"),
            headers,
            b"",
            Duration::from_secs(5),
        )
        .expect("the chunk server answers");
        (code, String::from_utf8_lossy(&body).into_owned())
    };
    // Without a capability: refused, whoever knows the id.
    let (code, body) = get(&private, &[]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("capability"), "{body}");
    // With the capability for another chunk: refused.
    let (code, body) = get(&private, &[("x-cairn-capability", &capability)]);
    assert_eq!(code, 403, "{body}");
    // With a forged one: refused.
    let forged = format!("g.{}.{}", u64::MAX, "0".repeat(32));
    let (code, _) = get(&private, &[("x-cairn-capability", &forged)]);
    assert_eq!(code, 403);
    // With its own capability the shared chunk is served (by a node that holds it).
    let served = cluster.chunks.iter().any(|c| {
        try_http_full(
            &c.addr,
            "GET",
            &format!("/v1/chunks/{shared_id}"),
            &[("x-cairn-capability", &capability)],
            b"",
            Duration::from_secs(5),
        )
        .is_some_and(|(code, body)| code == 200 && body == b"bob's shared data")
    });
    assert!(served, "a capability for the chunk opens it");
    // Storing needs a put capability, and a read one does not do.
    let id = blake3::hash(b"planted").to_hex().to_string();
    for headers in [vec![], vec![("x-cairn-capability", capability.as_str())]] {
        let (code, _) = try_http_full(
            node,
            "PUT",
            &format!("/v1/chunks/{id}"),
            &headers,
            b"planted",
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(code == 401 || code == 403, "{code}");
    }
    assert!(!chunk_file(&cluster, 0, &id).exists(), "nothing was stored");
    // The presence call is for cluster processes and admins.
    let (code, _) = try_http_full(
        node,
        "POST",
        "/v1/chunks/has",
        &[],
        format!("{{\"ids\":[\"{private}\"]}}").as_bytes(),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 401);
    let log = std::fs::read_to_string(cluster.dir.path().join("chunk-0.log")).unwrap_or_default();
    assert!(log.contains("refused a chunk call"), "refusals are logged");
    // The admin's fsck (an admin capability) still checks everything.
    let report = cluster.json(&["fsck", "--json"]);
    assert_eq!(report["missing"], 0, "{report}");
}

/// `GET path` on the metadata service with the given headers.
fn meta_get_with(cluster: &Cluster, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    meta_call(cluster, "GET", path, headers, "")
}

#[test]
fn access_keys_are_their_users_and_only_cluster_processes_act_by_them() {
    let cluster = Cluster::start(1);
    let alice = add_user(&cluster, "alice", "");
    let bob = add_user(&cluster, "bob", "");
    let made: Value =
        serde_json::from_str(&ok_as(&cluster, &alice, &["key", "create", "--json"])).unwrap();
    let id = made["access_key_id"].as_str().unwrap().to_string();
    let secret = made["secret_access_key"].as_str().unwrap().to_string();
    assert_eq!(made["user"], "alice");
    assert!(ok_as(&cluster, &alice, &["key", "list"]).contains(&id));
    assert!(!ok_as(&cluster, &bob, &["key", "list"]).contains(&id));
    assert!(cluster.ok(&["key", "list", "--all"]).contains(&id));
    // Only one's own keys, unless an admin.
    let refused = fails_as(&cluster, &bob, &["key", "rm", &id]);
    assert!(refused.contains("permission denied"), "{refused}");
    let refused = fails_as(&cluster, &alice, &["key", "create", "--user", "bob"]);
    assert!(refused.contains("permission denied"), "{refused}");

    // A user may not read a secret, nor act by a key without the cluster
    // token; a cluster process may do both.
    let alice_auth = format!("Bearer {}", token_of(&alice));
    let secret_path = format!("/v1/keys/secret?id={id}");
    let (code, body) = meta_get_with(&cluster, &secret_path, &[("Authorization", &alice_auth)]);
    assert_eq!(code, 403, "{body}");
    let (code, body) = meta_get_with(
        &cluster,
        "/v1/auth/whoami",
        &[("Authorization", &alice_auth), ("x-cairn-access-key", &id)],
    );
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("cluster process"), "{body}");
    let (token_name, token) = cluster_token_header();
    let (code, body) = meta_get_with(&cluster, &secret_path, &[(token_name, &token)]);
    assert_eq!(code, 200, "{body}");
    let opened: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(opened["secret_access_key"].as_str(), Some(secret.as_str()));
    let acting = [
        (token_name, token.as_str()),
        ("x-cairn-access-key", id.as_str()),
    ];
    let (code, body) = meta_get_with(&cluster, "/v1/auth/whoami", &acting);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"user\":\"alice\""), "{body}");

    // A removed key stops at once, with what to do.
    ok_as(&cluster, &alice, &["key", "rm", &id]);
    let (code, body) = meta_get_with(&cluster, "/v1/auth/whoami", &acting);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("cairn key list"), "{body}");
}

/// `method path` with a JSON body (or none) and these headers.
fn meta_call(
    cluster: &Cluster,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let (code, body) = try_http_full(
        &cluster.metas[0].addr,
        method,
        path,
        headers,
        body.as_bytes(),
        Duration::from_secs(5),
    )
    .expect("the metadata service answers");
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn an_admins_session_acts_for_local_identities_and_no_other_may() {
    let cluster = Cluster::start(1);
    let alice = add_user(&cluster, "alice", "");
    let admin_auth = format!("Bearer {}", token_of(&cluster.config));
    let alice_auth = format!("Bearer {}", token_of(&alice));
    let json = ("content-type", "application/json");
    // Not an admin: refused, whatever identity is named.
    let (code, body) = meta_call(
        &cluster,
        "GET",
        "/v1/fs/stat?path=/",
        &[("Authorization", &alice_auth), ("x-cairn-act-as", "0:0")],
        "",
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not an admin"), "{body}");
    // A malformed identity says what the header holds.
    let (code, body) = meta_call(
        &cluster,
        "GET",
        "/v1/fs/stat?path=/",
        &[("Authorization", &admin_auth), ("x-cairn-act-as", "root")],
        "",
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("UID:GID"), "{body}");
    // An admin acting for uid 4242 has uid 4242's rights only ...
    let as_4242 = [
        ("Authorization", admin_auth.as_str()),
        ("x-cairn-act-as", "4242:4242,5000"),
        json,
    ];
    let (code, body) = meta_call(
        &cluster,
        "POST",
        "/v1/fs/mkdir",
        &as_4242,
        r#"{"path": "/x"}"#,
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("uid 4242"), "{body}");
    // ... and what it makes is uid 4242's, in its first group.
    cluster.ok(&["mkdir", "/open"]);
    cluster.ok(&["chmod", "1777", "/open"]);
    let (code, body) = meta_call(
        &cluster,
        "POST",
        "/v1/fs/mkdir",
        &as_4242,
        r#"{"path": "/open/d"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let stat = cluster.json(&["stat", "/open/d", "--json"]);
    assert_eq!(
        (stat["uid"].as_u64(), stat["gid"].as_u64()),
        (Some(4242), Some(4242))
    );
    // Sticky /open: alice may not remove uid 4242's directory.
    let refused = fails_as(&cluster, &alice, &["rm", "-r", "/open/d"]);
    assert!(refused.contains("sticky"), "{refused}");
}

//! `cairn web` against a real cluster, as a visitor without a browser
//! sees it (raw HTTP): logging in, the cookie's flags, CSRF refusals,
//! uploads of files and folders, listings that escape names, ranged
//! downloads across chunk boundaries, deletes, keys and buckets, and the
//! admin-only pages.
//! `browser.rs` drives a real Chromium through the same pages.

use cairn_testkit::{http_exchange, random_bytes, Answer, Cluster, WebServer, ADMIN_PASSWORD, MIB};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn form_body(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A visitor: the session cookie once logged in.
struct Visitor<'a> {
    web: &'a WebServer,
    cookie: String,
}

impl Visitor<'_> {
    fn log_in<'a>(web: &'a WebServer, user: &str, password: &str) -> Visitor<'a> {
        let body = form_body(&[("user", user), ("password", password), ("next", "/")]);
        let answer = http_exchange(&web.addr, "POST", "/login", &[FORM], body.as_bytes());
        assert_eq!(answer.status, 303, "{}", answer.text());
        let set_cookie = answer.header("set-cookie").expect("a session cookie");
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set_cookie.contains(flag), "{set_cookie}");
        }
        let cookie = set_cookie.split(';').next().unwrap().to_string();
        Visitor { web, cookie }
    }

    fn get(&self, path: &str) -> Answer {
        http_exchange(
            &self.web.addr,
            "GET",
            path,
            &[("Cookie", &self.cookie)],
            b"",
        )
    }

    fn get_with(&self, path: &str, header: (&str, &str)) -> Answer {
        http_exchange(
            &self.web.addr,
            "GET",
            path,
            &[("Cookie", &self.cookie), header],
            b"",
        )
    }

    fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = form_body(fields);
        http_exchange(
            &self.web.addr,
            "POST",
            path,
            &[("Cookie", &self.cookie), FORM],
            body.as_bytes(),
        )
    }

    /// The CSRF token the pages' forms carry.
    fn csrf(&self) -> String {
        let page = self.get("/keys").text();
        let at = page.find("name=\"csrf\" value=\"").expect("a form") + 19;
        page[at..at + 32].to_string()
    }

    /// Uploads `files` (name as the browser sends it, contents) to `dir`.
    fn upload(&self, dir: &str, files: &[(&str, &[u8])], csrf: &str) -> Answer {
        let boundary = "----cairn-test-boundary-7d3f";
        let mut body = Vec::new();
        for (name, contents) in files {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(contents);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let content_type = format!("multipart/form-data; boundary={boundary}");
        http_exchange(
            &self.web.addr,
            "POST",
            &format!("/upload?dir={}&csrf={csrf}", encode(dir)),
            &[("Cookie", &self.cookie), ("Content-Type", &content_type)],
            &body,
        )
    }
}

#[test]
fn a_visitor_logs_in_uploads_downloads_and_deletes() {
    let cluster = Cluster::start_with(3, &["--chunk-size", "1MiB"]);
    let out = cluster.cairn_with_stdin(
        &["user", "add", "alice", "--password-stdin"],
        b"alice-password\n",
    );
    assert!(out.status.success());
    let web = cluster.start_web();

    // Nothing without a login: to the login page, and back after it.
    let answer = http_exchange(&web.addr, "GET", "/files/home/alice", &[], b"");
    assert_eq!(answer.status, 303);
    assert_eq!(
        answer.header("location"),
        Some("/login?next=%2Ffiles%2Fhome%2Falice")
    );
    let wrong = form_body(&[("user", "alice"), ("password", "not-it")]);
    let answer = http_exchange(&web.addr, "POST", "/login", &[FORM], wrong.as_bytes());
    assert_eq!(answer.status, 401);
    assert!(answer.text().contains("Wrong user name or password"));
    // A login form posted from another site is refused.
    let body = form_body(&[("user", "alice"), ("password", "alice-password")]);
    let answer = http_exchange(
        &web.addr,
        "POST",
        "/login",
        &[FORM, ("Origin", "https://evil.example")],
        body.as_bytes(),
    );
    assert_eq!(answer.status, 403);
    let alice = Visitor::log_in(&web, "alice", "alice-password");
    let page = alice.get("/files/home/alice");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));

    // Uploads: files and a folder's files by relative path, streamed.
    let csrf = alice.csrf();
    let big = random_bytes(3 * MIB + 12_345, 9);
    let odd_name = "<img src=x onerror=alert(1)> & 'q'.txt";
    let answer = alice.upload(
        "/home/alice",
        &[
            ("big.bin", &big),
            (odd_name, b"escaped"),
            ("album/2026/photo.jpg", b"jpeg bytes"),
        ],
        &csrf,
    );
    assert_eq!(answer.status, 303, "{}", answer.text());
    assert_eq!(
        cluster.ok(&["cat", "/home/alice/album/2026/photo.jpg"]),
        "jpeg bytes"
    );
    // A second upload of the same name is refused unless replacing.
    let answer = alice.upload("/home/alice", &[("big.bin", b"x")], &csrf);
    assert_eq!(answer.status, 409);
    assert!(
        answer.text().contains("replace existing files"),
        "{}",
        answer.text()
    );
    // Without the CSRF token nothing is read or stored.
    let answer = alice.upload(
        "/home/alice",
        &[("forged.bin", b"x")],
        "0".repeat(32).as_str(),
    );
    assert_eq!(answer.status, 403);
    assert!(cluster
        .fails(&["stat", "/home/alice/forged.bin"])
        .contains("does not exist"));

    // The listing shows every name as text.
    let listing = alice.get("/files/home/alice").text();
    assert!(
        listing.contains("&lt;img src=x onerror=alert(1)&gt; &amp; 'q'.txt"),
        "{listing}"
    );
    assert!(!listing.contains("<img"), "a name became markup");
    assert!(listing.contains("big.bin") && listing.contains("album/"));

    // Downloads, whole and by range across a chunk boundary.
    let whole = alice.get("/download/home/alice/big.bin");
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, big);
    assert!(whole
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment"));
    let start = MIB - 100;
    let part = alice.get_with(
        "/download/home/alice/big.bin",
        ("Range", &format!("bytes={start}-{}", start + 299)),
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &big[start..start + 300]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes {start}-{}/{}", start + 299, big.len()).as_str())
    );
    let past = alice.get_with("/download/home/alice/big.bin", ("Range", "bytes=99999999-"));
    assert_eq!(past.status, 416);

    // A file's page: its metadata and chunks.
    let details = alice.get("/files/home/alice/big.bin").text();
    assert!(
        details.contains("Chunks (4)") && details.contains("rw-r--r--"),
        "{details}"
    );

    // Rename, mkdir, delete (a POST with the token; refused without).
    let answer = alice.post(
        "/rename",
        &[
            ("csrf", &csrf),
            ("from", "/home/alice/big.bin"),
            ("to", "/home/alice/moved.bin"),
        ],
    );
    assert_eq!(answer.status, 303);
    assert_eq!(
        answer.header("location"),
        Some("/files/home/alice/moved.bin")
    );
    let answer = alice.post(
        "/mkdir",
        &[("csrf", &csrf), ("dir", "/home/alice"), ("name", "new dir")],
    );
    assert_eq!(answer.status, 303);
    assert!(cluster
        .ok(&["stat", "/home/alice/new dir"])
        .contains("kind:     dir"));
    let answer = alice.post(
        "/delete",
        &[("csrf", "forged"), ("path", "/home/alice/moved.bin")],
    );
    assert_eq!(answer.status, 403);
    let confirm = alice.get("/delete?path=%2Fhome%2Falice%2Falbum").text();
    assert!(
        confirm.contains("holds 1 entries") || confirm.contains("holds 1 entr"),
        "{confirm}"
    );
    let answer = alice.post("/delete", &[("csrf", &csrf), ("path", "/home/alice/album")]);
    assert_eq!(answer.status, 303);
    assert!(cluster
        .fails(&["stat", "/home/alice/album"])
        .contains("does not exist"));

    // Another user's private home is the metadata service's to refuse.
    let answer = alice.get("/files/home/admin");
    assert_eq!(answer.status, 403, "{}", answer.text());
    // The cluster page is for admins.
    assert_eq!(alice.get("/cluster").status, 403);

    // Keys: made (the secret shown once), listed, revoked.
    let created = alice.post("/keys/create", &[("csrf", &csrf)]).text();
    assert!(created.contains("Secret access key"), "{created}");
    let at = created
        .find("<dd class=\"mono\">")
        .expect("the new key's id")
        + 17;
    let key_id = created[at..].split('<').next().unwrap().to_string();
    let keys = cluster.cairn_as(
        &cluster.login_as("alice", "alice-password"),
        &["key", "list"],
        &[],
    );
    assert!(
        String::from_utf8_lossy(&keys.stdout).contains(&key_id),
        "{keys:?}"
    );
    let answer = alice.post("/keys/revoke", &[("csrf", &csrf), ("id", &key_id)]);
    assert_eq!(answer.status, 303);
    assert!(!alice.get("/keys").text().contains(&key_id));

    // Buckets: made for alice (the server has the cluster secret), hers
    // alone, listed; a taken or malformed name is refused.
    let answer = alice.post(
        "/buckets/create",
        &[("csrf", &csrf), ("name", "alice-photos")],
    );
    assert_eq!(answer.status, 303, "{}", answer.text());
    let stat = cluster.json(&["stat", "--json", "/buckets/alice-photos"]);
    assert_eq!(
        (stat["owner"].as_str(), stat["mode"].as_u64()),
        (Some("alice"), Some(0o700))
    );
    assert!(alice.get("/keys").text().contains("alice-photos"));
    let again = alice.post(
        "/buckets/create",
        &[("csrf", &csrf), ("name", "alice-photos")],
    );
    assert_eq!(again.status, 409);
    assert!(
        again
            .text()
            .contains("you own a bucket of that name already"),
        "{}",
        again.text()
    );
    let bad = alice.post("/buckets/create", &[("csrf", &csrf), ("name", "No_Caps")]);
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("lowercase"), "{}", bad.text());

    // Logging out ends the session: the cookie no longer opens a page.
    let answer = alice.post("/logout", &[("csrf", &csrf)]);
    assert_eq!(answer.status, 303);
    assert_eq!(alice.get("/files/home/alice").status, 303);
}

#[test]
fn an_admin_sees_the_cluster_and_manages_users() {
    let cluster = Cluster::start(3);
    let web = cluster.start_web();
    let admin = Visitor::log_in(&web, "admin", ADMIN_PASSWORD);
    let csrf = admin.csrf();
    let page = admin.get("/cluster").text();
    assert!(
        page.contains("Healthy") && page.contains("3 of 3 storage nodes up"),
        "{page}"
    );
    assert!(page.contains("leader"), "{page}");
    let answer = admin.post(
        "/users/add",
        &[
            ("csrf", &csrf),
            ("name", "bob"),
            ("password", "bob-password"),
            ("groups", "eng"),
        ],
    );
    assert_eq!(answer.status, 303, "{}", answer.text());
    let bob = Visitor::log_in(&web, "bob", "bob-password");
    let answer = admin.post(
        "/users/password",
        &[
            ("csrf", &csrf),
            ("name", "bob"),
            ("password", "another-password"),
        ],
    );
    assert_eq!(answer.status, 303);
    // A new password ends bob's sessions.
    assert_eq!(bob.get("/files/").status, 303);
    let answer = admin.post("/users/remove", &[("csrf", &csrf), ("name", "bob")]);
    assert_eq!(answer.status, 303);
    assert!(!admin.get("/cluster").text().contains(">bob<"));
    // The health part alone, as the page's refresh asks for it.
    let fragment = admin.get("/cluster/health").text();
    assert!(fragment.starts_with("<section id=\"health\""), "{fragment}");
}

//! Bad input on the metadata API, sent raw by a logged-in admin: hostile
//! names, invalid UTF-8, malformed, truncated and oversized bodies, wrong
//! content lengths, huge headers. Each gets a 4xx with a clear message (or,
//! for a body that never finishes, no answer but a closed connection), the
//! server keeps serving, and nothing stored changes. The chunk API's own
//! cases (hash mismatches, cut-short and oversized chunks) are in `e2e.rs`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cairn_testkit::*;
use serde_json::Value;

/// Everything a client can see of the namespace and the users.
fn state(cluster: &Cluster) -> String {
    let tree = cluster.ok(&["ls", "-l", "/"]);
    let homes = cluster.ok(&["ls", "-l", "/home"]);
    let users = cluster.ok(&["user", "list", "--json"]);
    let status = cluster.status().expect("status answers");
    format!(
        "{tree}{homes}{users}{} files {} dirs",
        status["file_count"], status["dir_count"]
    )
}

fn token(cluster: &Cluster) -> String {
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&cluster.config).unwrap()).unwrap();
    config["token"].as_str().unwrap().to_string()
}

/// One request with the admin's token; the status and body.
fn send(cluster: &Cluster, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let auth = format!("Bearer {}", token(cluster));
    let (code, body) = try_http_full(
        &cluster.metas[0].addr,
        method,
        path,
        &[("Authorization", &auth)],
        body,
        Duration::from_secs(10),
    )
    .unwrap_or_else(|| panic!("{method} {path}: no answer"));
    (code, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn every_bad_request_gets_a_clear_4xx_and_changes_nothing() {
    let cluster = Cluster::start(1);
    cluster.ok(&["mkdir", "/keep"]);
    let before = state(&cluster);
    let long_name = format!("/{}", "n".repeat(10_000));
    let cases: Vec<(&str, String, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/v1/fs/mkdir".into(),
            br#"{"path": "/keep/../x"}"#.to_vec(),
            400,
            "\"..\" is not allowed",
        ),
        (
            "POST",
            "/v1/fs/mkdir".into(),
            br#"{"path": "/a\u0000b"}"#.to_vec(),
            400,
            "NUL",
        ),
        (
            "POST",
            "/v1/fs/mkdir".into(),
            format!(r#"{{"path": "{long_name}"}}"#).into_bytes(),
            400,
            "4096",
        ),
        (
            "POST",
            "/v1/fs/mkdir".into(),
            format!(r#"{{"path": "/keep{}"}}"#, &long_name[..300]).into_bytes(),
            400,
            "at most 255 bytes",
        ),
        (
            "POST",
            "/v1/fs/mkdir".into(),
            b"{\"path\": \"/\xff\xfe\"}".to_vec(),
            400,
            "bad request body",
        ),
        (
            "GET",
            "/v1/fs/stat?path=%FF%FE".into(),
            vec![],
            400,
            "bad query string",
        ),
        (
            "GET",
            "/v1/fs/stat?path=/keep&id=3".into(),
            vec![],
            400,
            "exactly one",
        ),
        (
            "POST",
            "/v1/fs/mkdir".into(),
            br#"{"path": 7}"#.to_vec(),
            400,
            "bad request body",
        ),
        (
            "POST",
            "/v1/fs/mkdir".into(),
            b"{not json".to_vec(),
            400,
            "bad request body",
        ),
        (
            "POST",
            "/v1/fs/commit".into(),
            br#"{"path": "/f", "size_bytes":"#.to_vec(),
            400,
            "bad request body",
        ),
        (
            "POST",
            "/v1/fs/rename".into(),
            br#"{"src": "/keep", "dst": "/x/../y"}"#.to_vec(),
            400,
            "\"..\" is not allowed",
        ),
        (
            "POST",
            "/v1/fs/remove".into(),
            br#"{"path": "/"}"#.to_vec(),
            400,
            "root",
        ),
        (
            "POST",
            "/v1/fs/chmod".into(),
            br#"{"path": "/keep", "mode": 4096}"#.to_vec(),
            400,
            "7777",
        ),
        (
            "POST",
            "/v1/users/add".into(),
            br#"{"name": "../evil", "password": "long enough"}"#.to_vec(),
            400,
            "invalid user name",
        ),
        (
            "POST",
            "/v1/users/add".into(),
            br#"{"name": "eve", "password": "short"}"#.to_vec(),
            400,
            "8 to 1024 bytes",
        ),
        (
            "POST",
            "/v1/auth/login".into(),
            br#"{"user": "a\u0000b", "password": "x"}"#.to_vec(),
            400,
            "invalid user name",
        ),
        (
            "POST",
            "/v1/fs/commit".into(),
            br#"{"path": "/f", "size_bytes": 9, "chunks": [], "digest": "00"}"#.to_vec(),
            400,
            "bad request body",
        ),
        (
            "POST",
            "/v1/auth/login".into(),
            br#"{"user": "admin", "password": "whatever", "expires_in_secs": 0}"#.to_vec(),
            400,
            "a session lasts 1 s to 90 days",
        ),
        (
            "GET",
            "/v1/no/such/route".into(),
            vec![],
            404,
            "no such API route",
        ),
        // Cursors that are not the `next` of a page, pages of nothing.
        (
            "GET",
            "/v1/fs/list?path=/&after=a/b".into(),
            vec![],
            400,
            "bad cursor",
        ),
        (
            "GET",
            "/v1/fs/walk?path=/&after=../x".into(),
            vec![],
            400,
            "bad cursor",
        ),
        (
            "GET",
            "/v1/fs/list?path=/&limit=-1".into(),
            vec![],
            400,
            "bad query string",
        ),
        // Extended attributes: no namespace, too large, not base64.
        (
            "POST",
            "/v1/fs/xattr/set".into(),
            br#"{"path": "/keep", "name": "color", "value": "cmVk"}"#.to_vec(),
            400,
            "user.",
        ),
        (
            "POST",
            "/v1/fs/xattr/set".into(),
            format!(
                r#"{{"path": "/keep", "name": "user.big", "value": "{}"}}"#,
                "A".repeat(100_000)
            )
            .into_bytes(),
            413,
            "limit is 65536",
        ),
        (
            "POST",
            "/v1/fs/xattr/set".into(),
            br#"{"path": "/keep", "name": "user.x", "value": "not base64!"}"#.to_vec(),
            400,
            "base64",
        ),
        (
            "GET",
            "/v1/fs/xattrs?path=/keep&name=system.posix_acl_access".into(),
            vec![],
            400,
            "not supported",
        ),
        (
            "GET",
            "/v1/users?limit=x".into(),
            vec![],
            400,
            "bad query string",
        ),
    ];
    for (method, path, body, status, message) in &cases {
        let (code, answer) = send(&cluster, method, path, body);
        assert_eq!(code, *status, "{method} {path}: {answer}");
        let error: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|_| panic!("{method} {path}: not a JSON error: {answer}"));
        let text = error["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{method} {path}: {text}");
        assert!(
            text.len() < 1000,
            "{method} {path}: a short message, not an echo: {}",
            text.len()
        );
    }
    // A bad request id header.
    let auth = format!("Bearer {}", token(&cluster));
    let (code, _) = try_http_full(
        &cluster.metas[0].addr,
        "POST",
        "/v1/fs/mkdir",
        &[("Authorization", &auth), ("x-cairn-request-id", "nope")],
        br#"{"path": "/z"}"#,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(code, 400);

    // A body over the 48 MiB limit is refused as too large.
    let huge = vec![b' '; 49 << 20];
    let (code, answer) = send(&cluster, "POST", "/v1/fs/commit", &huge);
    assert_eq!(code, 413, "{answer}");

    // A body shorter than its Content-Length, then the connection closes:
    // nothing is answered with success, nothing applies.
    let addr = &cluster.metas[0].addr;
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/fs/mkdir HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"path\": \"/cut\""
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(!response.starts_with("HTTP/1.1 2"), "{response}");

    // Headers far past 64 KiB: refused before any handler runs.
    let mut stream = TcpStream::connect(addr).unwrap();
    let padding = "x".repeat(300 * 1024);
    let head = format!("GET /v1/health HTTP/1.1\r\nHost: {addr}\r\nX-Padding: {padding}\r\n\r\n");
    let _ = stream.write_all(head.as_bytes());
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 431"),
        "{}",
        &response[..response.len().min(200)]
    );

    // Still serving, and nothing changed.
    assert_eq!(state(&cluster), before);
    let log = std::fs::read_to_string(cluster.member_log(0)).unwrap();
    assert!(
        log.contains("rejected a request") && log.contains("invalid_name"),
        "rejections are logged with their reason"
    );
    assert!(!log.contains(&token(&cluster)), "no token in the log");
}

//! The accept loop on loopback: TLS with a private CA, plain HTTP refused
//! on a TLS port with what to do, a foreign CA refused, the connection
//! limit, and the peer address handed to handlers.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::routing::get;
use axum::Router;
use cairn_transport::{pki, ClientTls, Limits, ServerTls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn app() -> Router {
    Router::new().route(
        "/who",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    )
}

/// Starts a server; returns its address and a sender that stops it.
async fn start(
    tls: Option<ServerTls>,
    limits: Limits,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = cairn_transport::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(cairn_transport::serve(
        listener,
        app(),
        tls,
        limits,
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop)
}

#[tokio::test]
async fn tls_with_the_cluster_ca_works_and_everything_else_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::ensure_dev_pki(&dir.path().join("tls"), &["127.0.0.1", "localhost"]).unwrap();
    let tls = ServerTls::load(&pki.server_cert, &pki.server_key).unwrap();
    let (addr, _stop) = start(Some(tls), Limits::default()).await;

    let client = ClientTls::from_ca_file(&pki.ca_cert).unwrap();
    let http = client.client_builder().build().unwrap();
    let answer = http
        .get(format!("{}/who", client.base_url(&addr)))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.unwrap(),
        "127.0.0.1",
        "the handler sees the peer"
    );

    // Plain HTTP to the TLS port: a plain answer that says to pass --ca.
    let plain = ClientTls::plain()
        .client_builder()
        .build()
        .unwrap()
        .get(format!("http://{addr}/who"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    let body = plain.text().await.unwrap();
    assert!(body.contains("--ca"), "{body}");

    // A client trusting another CA refuses the server's certificate.
    let other = pki::ensure_dev_pki(&dir.path().join("other"), &["127.0.0.1"]).unwrap();
    let stranger = ClientTls::from_ca_file(&other.ca_cert).unwrap();
    let refused = stranger
        .client_builder()
        .build()
        .unwrap()
        .get(format!("https://{addr}/who"))
        .send()
        .await;
    assert!(refused.is_err(), "a certificate from another CA is refused");

    // Made once: a second call keeps the same CA.
    let before = std::fs::read(&pki.ca_cert).unwrap();
    pki::ensure_dev_pki(&dir.path().join("tls"), &["127.0.0.1"]).unwrap();
    assert_eq!(std::fs::read(&pki.ca_cert).unwrap(), before);
    use std::os::unix::fs::PermissionsExt;
    let key_mode = std::fs::metadata(&pki.server_key)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
}

#[tokio::test]
async fn bad_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let err = format!("{:#}", ClientTls::from_ca_file(&junk).unwrap_err());
    assert!(err.contains("junk.pem"), "{err}");
    let err = ServerTls::load(&junk, &junk).err().unwrap();
    assert!(format!("{err:#}").contains("junk.pem"), "{err:#}");
    let missing = dir.path().join("missing.pem");
    let err = format!("{:#}", ClientTls::from_ca_file(&missing).unwrap_err());
    assert!(err.contains("missing.pem") && err.contains("--ca"), "{err}");
}

#[tokio::test]
async fn connections_past_the_limit_are_closed_and_slow_headers_time_out() {
    let limits = Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _stop) = start(None, limits).await;
    // Two idle connections take both slots.
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /who HTTP/1.1\r\n").await.unwrap();
        idle.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A third is closed without an answer.
    let mut third = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = third
        .write_all(b"GET /who HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer)).await;
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "closed, not left hanging"
    );
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // The idle ones never finish their headers: they are dropped, and the
    // slots serve again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let plain = ClientTls::plain().client_builder().build().unwrap();
    let answer = plain
        .get(format!("http://{addr}/who"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    drop(idle);
}

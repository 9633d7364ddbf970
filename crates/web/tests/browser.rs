//! The web page in a real headless Chromium (Debian's `chromium`, driven
//! by Playwright from PyPI; `.ci/run` installs both): log in, upload a
//! 50 MiB file, see it listed, download it byte for byte, delete it, and
//! see a killed storage node shown as down on the cluster page.
//! Screenshots of the pages are saved under `target/web-screenshots/`.
//! A missing browser or driver fails the test with what to install: it
//! never passes by skipping.

use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_testkit::{random_bytes, Cluster, ADMIN_PASSWORD, MIB};

fn python() -> String {
    std::env::var("CAIRN_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

fn chromium() -> String {
    std::env::var("CAIRN_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("web-screenshots")
}

#[test]
fn a_browser_uploads_downloads_deletes_and_sees_a_node_go_down() {
    let has_playwright = Command::new(python())
        .args(["-c", "import playwright"])
        .output()
        .is_ok_and(|out| out.status.success());
    assert!(
        has_playwright,
        "Playwright is needed for the browser test: `pip install playwright` (as .ci/run does in its \
         venv), or set CAIRN_TEST_PYTHON to a Python that has it"
    );
    assert!(
        Path::new(&chromium()).exists(),
        "Chromium is needed for the browser test: `apt install chromium` (as .ci/run does), or set \
         CAIRN_TEST_CHROMIUM to its path"
    );
    let mut cluster = Cluster::start_with(3, &["--down-after", "2s"]);
    let web = cluster.start_web();
    let upload = cluster.dir.path().join("fifty-mib.bin");
    std::fs::write(&upload, random_bytes(50 * MIB, 14)).unwrap();
    let shots = screenshots_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/visit.py");
    let web_log = cluster.dir.path().join("web.log");
    let visit = |phase: &str, down_node: &str| {
        let out = Command::new(python())
            .arg(&script)
            .arg(phase)
            .env("WEB_URL", &web.url)
            .env("WEB_USER", "admin")
            .env("WEB_PASSWORD", ADMIN_PASSWORD)
            .env("UPLOAD", &upload)
            .env("SHOTS", &shots)
            .env("CHROMIUM", chromium())
            .env("DOWN_NODE", down_node)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the browser's {phase} visit failed (web log in {}):\n--- stdout\n{}\n--- stderr\n{}",
            web_log.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    visit("files", "");
    assert!(
        cluster
            .fails(&["stat", "/home/admin/fifty-mib.bin"])
            .contains("does not exist"),
        "deleted through the page"
    );
    let down = cluster.chunks[2].addr.clone();
    cluster.kill_chunk(2);
    visit("cluster", &down);
    for shot in ["login", "listing", "details", "cluster"] {
        assert!(
            shots.join(format!("{shot}.png")).exists(),
            "screenshot {shot}"
        );
    }
}

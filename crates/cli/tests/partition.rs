//! A real network partition of the metadata group: each member runs in a
//! network namespace of its own, joined to the others through veth pairs
//! on a bridge in a hub namespace; cutting a member's link really drops
//! its traffic. Needs root and iproute2 (`ip`), as CI has.
//!
//! Every namespace is made by this test and named after its process id,
//! and the addresses (10.231.0.0/24) exist only inside them.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cairn_testkit::cairn_bin;
use serde_json::Value;

const MEMBERS: usize = 3;
const PORT: u16 = 7700;
const LIMIT: Duration = Duration::from_secs(60);
/// Writes sent at once to the cut-off leader: more than one, so some wait
/// in its write queue behind the first and share its failure.
const MINORITY_WRITES: usize = 6;

/// The namespaces and the processes in them; dropping it kills the
/// processes and deletes the namespaces (and with them the links).
struct Net {
    prefix: String,
    created: Vec<String>,
    children: Vec<Option<Child>>,
    dir: tempfile::TempDir,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` ({e}); this test needs iproute2 and root"));
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root to create network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn member_ns(&self, i: usize) -> String {
        self.ns(&format!("m{}", i + 1))
    }

    fn addr(i: usize) -> String {
        format!("10.231.0.{}:{PORT}", i + 1)
    }

    fn all_addrs() -> String {
        (0..MEMBERS).map(Net::addr).collect::<Vec<_>>().join(",")
    }

    /// The hub with its bridge, a namespace per member and one for
    /// clients on the majority side, all linked to the bridge.
    fn build() -> Net {
        let mut net = Net {
            prefix: format!("cairn{}", std::process::id()),
            created: Vec::new(),
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        let hub = net.ns("hub");
        ip(&["netns", "add", &hub]);
        net.created.push(hub.clone());
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        let spokes: Vec<(String, String)> = (0..MEMBERS)
            .map(|i| (format!("m{}", i + 1), format!("10.231.0.{}/24", i + 1)))
            .chain([("c".to_string(), "10.231.0.100/24".to_string())])
            .collect();
        for (name, cidr) in spokes {
            let ns = net.ns(&name);
            ip(&["netns", "add", &ns]);
            net.created.push(ns.clone());
            let hub_end = format!("h-{name}");
            ip(&[
                "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &hub_end,
                "netns", &hub,
            ]);
            ip(&["-n", &hub, "link", "set", &hub_end, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &hub_end, "up"]);
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn start_members(&mut self) {
        let peers = (0..MEMBERS)
            .map(|i| format!("{}={}", i + 1, Net::addr(i)))
            .collect::<Vec<_>>()
            .join(",");
        let secret = self.dir.path().join("cluster.secret");
        cairn_testkit::write_secret(&secret, "the partition test's secret");
        let password = self.dir.path().join("admin.password");
        cairn_testkit::write_secret(&password, cairn_testkit::ADMIN_PASSWORD);
        for i in 0..MEMBERS {
            let data_dir = self.dir.path().join(format!("meta-{}", i + 1));
            let log =
                std::fs::File::create(self.dir.path().join(format!("meta-{}.log", i + 1))).unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", &self.member_ns(i), cairn_bin(), "meta"])
                .args(["--data-dir", data_dir.to_str().unwrap()])
                .args(["--listen", &Net::addr(i), "--id", &(i + 1).to_string()])
                .args(["--peers", &peers])
                .args(["--cluster-secret-file", secret.to_str().unwrap()])
                .args(["--admin-password-file", password.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            self.children.push(Some(child));
        }
    }

    /// `cairn` run inside namespace `ns`, as the admin.
    fn cairn(&self, ns: &str, meta: &str, args: &[&str]) -> Output {
        self.cairn_with_stdin(ns, meta, args, Stdio::null())
    }

    fn cairn_with_stdin(&self, ns: &str, meta: &str, args: &[&str], stdin: Stdio) -> Output {
        let config = self.dir.path().join("client.json");
        Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                cairn_bin(),
                "--meta",
                meta,
                "--config",
                config.to_str().unwrap(),
                "--failover-timeout",
                "8s",
            ])
            .args(args)
            .env_remove("CAIRN_TOKEN")
            .stdin(stdin)
            .output()
            .unwrap()
    }

    /// Logs in as the admin from the client side, once the group made it.
    fn login(&self) {
        let deadline = Instant::now() + LIMIT;
        loop {
            let password = std::fs::File::open(self.dir.path().join("admin.password")).unwrap();
            let out = self.cairn_with_stdin(
                &self.ns("c"),
                &Net::all_addrs(),
                &["login", "--user", "admin", "--password-stdin"],
                Stdio::from(password),
            );
            if out.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cannot log in: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A client command on the majority side, which must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cairn(&self.ns("c"), &Net::all_addrs(), args);
        assert!(
            out.status.success(),
            "cairn {args:?}: {}; logs in {}",
            String::from_utf8_lossy(&out.stderr),
            self.dir.path().display()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The member the group says leads, asked from the client side.
    fn leader(&self) -> Option<usize> {
        let out = self.cairn(
            &self.ns("c"),
            &Net::all_addrs(),
            &["meta-admin", "members", "--json"],
        );
        let members: Value = serde_json::from_slice(&out.stdout).ok()?;
        let leader = members.as_array()?.iter().find(|m| m["leader"] == true)?;
        Some(leader["id"].as_u64()? as usize - 1)
    }

    fn wait_leader(&self) -> usize {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(i) = self.leader() {
                return i;
            }
            assert!(
                Instant::now() < deadline,
                "no leader; logs in {}",
                self.dir.path().display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Cuts (or restores) member `i`'s only link: nothing reaches it or
    /// leaves it, but processes inside its namespace still reach it.
    fn set_link(&self, i: usize, up: bool) {
        let hub = self.ns("hub");
        let hub_end = format!("h-m{}", i + 1);
        ip(&[
            "-n",
            &hub,
            "link",
            "set",
            &hub_end,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.created.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn names(listing: &str) -> BTreeSet<String> {
    let value: Value = serde_json::from_str(listing).unwrap();
    value["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .filter(|name| name != "home")
        .collect()
}

#[test]
fn a_partitioned_leader_refuses_writes_while_the_majority_serves_and_it_catches_up_after() {
    assert!(Path::new(cairn_bin()).exists());
    let mut net = Net::build();
    net.start_members();
    net.login();
    let old = net.wait_leader();
    net.ok(&["mkdir", "/before"]);

    // Cut the leader off from everyone.
    net.set_link(old, false);
    let cut_at = Instant::now();
    // The majority elects a leader and keeps serving.
    net.ok(&["mkdir", "/during"]);
    let served_after = cut_at.elapsed();
    let new = net.wait_leader();
    assert_ne!(new, old);

    // The cut-off member, asked from its own side, refuses to write and
    // says why; it still answers stale reads. Several writes at once: the
    // first is proposed and waits for a majority, those queued behind it
    // are answered with its failure. Every one is refused, none hangs, and
    // none appears later (the final listing below is exact).
    let minority = net.member_ns(old);
    let own = Net::addr(old);
    let refusals: Vec<String> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..MINORITY_WRITES)
            .map(|k| {
                let (net, minority, own) = (&net, &minority, &own);
                scope.spawn(move || {
                    let path = format!("/minority-{k}");
                    let out = net.cairn(minority, own, &["mkdir", &path]);
                    assert!(!out.status.success(), "the minority side accepted {path}");
                    String::from_utf8_lossy(&out.stderr).into_owned()
                })
            })
            .collect();
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for err in &refusals {
        assert!(err.contains("majority"), "unclear refusal: {err}");
    }
    let err = &refusals[0];
    let out = net.cairn(&minority, &own, &["ls", "--json", "/"]);
    assert!(
        !out.status.success(),
        "the minority side served a consistent read"
    );
    let out = net.cairn(&minority, &own, &["--stale-ok", "ls", "--json", "/"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stale = names(&String::from_utf8(out.stdout).unwrap());
    assert!(
        stale.contains("before") && !stale.contains("during"),
        "{stale:?}"
    );

    // Heal: it catches up, and the refused write never appears.
    net.set_link(old, true);
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = net.cairn(&minority, &own, &["--stale-ok", "ls", "--json", "/"]);
        if out.status.success() && names(&String::from_utf8_lossy(&out.stdout)).contains("during") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the healed member did not catch up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    net.ok(&["mkdir", "/after"]);
    let expected: BTreeSet<String> = ["before", "during", "after"].map(String::from).into();
    assert_eq!(names(&net.ok(&["ls", "--json", "/"])), expected);
    eprintln!(
        "partition: the majority served a write {} ms after the leader was cut off; the minority said: {}",
        served_after.as_millis(),
        err.trim()
    );
}

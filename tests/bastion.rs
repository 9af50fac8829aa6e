//! Boxes behind bastions, in network namespaces: the target is unreachable from the
//! client except through one or two ProxyJump hops, and builds through them produce
//! the local build's objects.
//!
//! Layout (no namespace forwards packets; the client's namespace routes the test
//! subnet nowhere else):
//!
//! ```text
//! client 10.N.1.1 ─veth─ 10.N.1.2 jump1 10.N.2.1 ─veth─ 10.N.2.2 jump2 10.N.3.1 ─veth─ 10.N.3.2 target
//! ```

mod common;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use common::{Scratch, compile_locally, compile_via, project_copy, run, ssh_stanza, sshcc, stderr};
use sshcc::throwaway_box::ThrowawayBox;

const ALLOWLIST: &str = "/usr/bin/x86_64-linux-gnu-gcc\n/usr/bin/gcc\n";

fn ip(args: &[&str]) {
    let output = run(Command::new("ip").args(args));
    assert!(output.status.success(), "ip {args:?}: {}", stderr(&output));
}

/// Network namespaces and links that disappear with the test.
struct Network {
    prefix: String,
    subnet: u8,
}

impl Network {
    fn new() -> Self {
        let id = std::process::id();
        let network = Network {
            prefix: format!("scc{}", id % 100_000),
            subnet: 200 + (id % 50) as u8,
        };
        network.teardown();
        for name in ["j1", "j2", "t"] {
            ip(&["netns", "add", &network.ns(name)]);
            ip(&["-n", &network.ns(name), "link", "set", "lo", "up"]);
        }
        network.link("root", "j1", 1);
        network.link("j1", "j2", 2);
        network.link("j2", "t", 3);
        // Nothing for the test subnet may leave this machine.
        ip(&[
            "route",
            "add",
            "unreachable",
            &format!("10.{}.0.0/16", network.subnet),
        ]);
        network
    }

    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn address(&self, segment: u8, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.subnet, segment, host)
    }

    /// A veth pair between `left` (".1") and `right` (".2") on segment `segment`.
    fn link(&self, left: &str, right: &str, segment: u8) {
        let (a, b) = (
            format!("{}v{segment}a", self.prefix),
            format!("{}v{segment}b", self.prefix),
        );
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        for (end, side, host) in [(&a, left, 1), (&b, right, 2)] {
            let address = format!("{}/30", self.address(segment, host));
            if side == "root" {
                ip(&["addr", "add", &address, "dev", end]);
                ip(&["link", "set", end, "up"]);
            } else {
                let ns = self.ns(side);
                ip(&["link", "set", end, "netns", &ns]);
                ip(&["-n", &ns, "addr", "add", &address, "dev", end]);
                ip(&["-n", &ns, "link", "set", end, "up"]);
            }
        }
    }

    fn teardown(&self) {
        for name in ["j1", "j2", "t"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(name)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &format!("{}v1a", self.prefix)])
            .output();
        let _ = Command::new("ip")
            .args([
                "route",
                "del",
                "unreachable",
                &format!("10.{}.0.0/16", self.subnet),
            ])
            .output();
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[test]
fn builds_reach_a_box_only_through_one_or_two_bastions() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let network = Network::new();
    let scratch = Scratch::new();
    let list = scratch.path().join("list");
    std::fs::write(&list, ALLOWLIST).unwrap();
    let list = list.to_str().unwrap();
    let start = |name: &str, address: Ipv4Addr| {
        ThrowawayBox::builder()
            .env("DISTCC_CMDLIST", list)
            .in_netns(network.ns(name), address)
            .start()
            .unwrap_or_else(|err| panic!("box in {name}: {err:#}"))
    };
    let jump1 = start("j1", network.address(1, 2));
    let jump2 = start("j2", network.address(2, 2));
    let target = start("t", network.address(3, 2));

    let config: PathBuf = scratch.path().join("ssh_config");
    std::fs::write(
        &config,
        [
            ssh_stanza(&jump1, "jump1", "ConnectTimeout 5"),
            ssh_stanza(&jump2, "jump2", "ProxyJump jump1"),
            ssh_stanza(&target, "target", "ProxyJump jump1,jump2"),
            ssh_stanza(&target, "target-direct", "ConnectTimeout 3"),
        ]
        .concat(),
    )
    .unwrap();
    let project = project_copy();
    let dir = project.path();
    compile_locally(dir, "gcc", &["-O2"], "geometry.c", "local.o");

    // The target really is out of reach without the bastions.
    let direct = run(Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["target-direct", "true"]));
    assert!(
        !direct.status.success(),
        "the target must not be reachable directly"
    );
    let output = compile_via(&config, "target-direct", dir, scratch.path());
    assert_eq!(output.status.code(), Some(116), "{}", stderr(&output));

    for alias in ["jump2", "target"] {
        let _ = std::fs::remove_file(dir.join("g.o"));
        let output = compile_via(&config, alias, dir, scratch.path());
        assert!(output.status.success(), "via {alias}: {}", stderr(&output));
        assert_eq!(
            std::fs::read(dir.join("g.o")).unwrap(),
            std::fs::read(dir.join("local.o")).unwrap(),
            "via {alias}"
        );
    }

    // Through one daemon, both boxes behind jump1 share one connection to it, and
    // the second box reaches jump2 over the connection the first one opened.
    let logins = |b: &ThrowawayBox| b.log().matches("Accepted publickey").count();
    let (jump1_before, jump2_before) = (logins(&jump1), logins(&jump2));
    for alias in ["jump2", "target", "jump2", "target"] {
        let output = run(scratch
            .sshcc()
            .current_dir(dir)
            .args(["gcc", "-O2", "-c", "geometry.c", "-o", "g.o"])
            .env("SSHCC_HOSTS", format!("@{alias}/4:{}", sshcc().display()))
            .env("SSHCC_SSH_CONFIG", &config)
            .env("DISTCC_FALLBACK", "0"));
        assert!(output.status.success(), "via {alias}: {}", stderr(&output));
    }
    let stopped = run(scratch.sshcc().arg("--stop"));
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert_eq!(logins(&jump1) - jump1_before, 1, "{}", jump1.log());
    assert_eq!(logins(&jump2) - jump2_before, 2, "{}", jump2.log());
}

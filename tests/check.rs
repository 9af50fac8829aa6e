//! `sshcc check` against real boxes (OpenSSH sshd on loopback, the real gcc): a box
//! whose compilers are the local ones, a box whose gcc is another build, and a host
//! nothing answers on.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{private_command, run, ssh_stanza, sshcc, stderr, write_script};
use sshcc::throwaway_box::ThrowawayBox;

/// `sshcc check` with `hosts` reached through `ssh_config`, the private directories
/// (caches) of `scratch`, no config.toml, and `env` added.
fn check(hosts: &str, ssh_config: &Path, scratch: &Path, env: &[(&str, &str)]) -> Output {
    check_with(&[], hosts, ssh_config, scratch, env)
}

/// `sshcc check --json`, parsed.
fn check_json(hosts: &str, ssh_config: &Path, scratch: &Path) -> serde_json::Value {
    let output = check_with(&["--json"], hosts, ssh_config, scratch, &[]);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("not JSON ({err}): {}\n{}", stdout(&output), stderr(&output)))
}

fn check_with(
    args: &[&str],
    hosts: &str,
    ssh_config: &Path,
    scratch: &Path,
    env: &[(&str, &str)],
) -> Output {
    let mut command = private_command(sshcc(), scratch);
    command
        .arg("check")
        .args(args)
        .env("SSHCC_HOSTS", hosts)
        .env("SSHCC_SSH_CONFIG", ssh_config)
        .env("SSHCC_CONFIG", scratch.join("no-config.toml"))
        .env_remove("SSHCC_TOOLCHAIN_CHECK");
    for (key, value) in env {
        command.env(key, value);
    }
    run(&mut command)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A box whose allowlist is `list` (with a fingerprint cache of its own, as every
/// box has).
fn start_box(list: &Path) -> ThrowawayBox {
    ThrowawayBox::builder()
        .env("DISTCC_CMDLIST", list.to_str().unwrap())
        .start()
        .unwrap()
}

#[test]
fn a_box_with_the_local_compilers_checks_out() {
    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path();
    let list = scratch.join("allowlist");
    std::fs::write(&list, "/usr/bin/gcc\n/usr/bin/x86_64-linux-gnu-gcc\n").unwrap();
    let build_box = start_box(&list);
    let hosts = format!("@box/4:{} localhost/2", sshcc().display());

    let output = check(&hosts, build_box.ssh_config(), scratch, &[]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}\n{}", stderr(&output));
    for expected in [
        format!("@box/4:{} (ssh, 4 slots)", sshcc().display()),
        format!("key {}", build_box.client_key().display()),
        "host key   known_hosts".to_string(),
        format!("sshcc {}", env!("CARGO_PKG_VERSION")),
        format!("{} (toolchain_check strict)", list.display()),
        "/usr/bin/gcc                   match (".to_string(),
        "/usr/bin/x86_64-linux-gnu-gcc  match (".to_string(),
        "localhost/2 (local, 2 slots)".to_string(),
        "nice 5, job lifetime 1800 s, max input 256 MiB".to_string(),
        "sandbox    landlock (ABI".to_string(),
        "served     0 jobs (0 ok, 0 failed, 0 refused; 0 cancelled), 0.0 s compiling; 0 running now"
            .to_string(),
        "all ok".to_string(),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in:\n{text}");
    }

    let report = check_json(&hosts, build_box.ssh_config(), scratch);
    assert_eq!(report["ok"], true, "{report:#}");
    let host = &report["hosts"][0];
    assert_eq!(host["kind"], "ssh");
    assert_eq!(host["slots"], 4);
    assert_eq!(host["ok"], true);
    assert!(host["error"].is_null());
    assert!(host["connect_ms"].is_u64() && host["box_info_ms"].is_u64());
    assert!(
        host["auth_method"].as_str().unwrap().starts_with("key "),
        "{host:#}"
    );
    assert_eq!(host["host_key"], "known_hosts");
    assert_eq!(host["remote"]["sshcc_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(host["remote"]["allowlist"], list.to_str().unwrap());
    assert_eq!(host["remote"]["limits"]["nice"], 5);
    assert!(host["remote"]["limits"]["jobs"].as_u64().unwrap() >= 3);
    assert_eq!(host["toolchain_check"], "strict");
    let compilers = host["compilers"].as_array().unwrap();
    assert_eq!(compilers.len(), 2);
    for compiler in compilers {
        assert_eq!(compiler["status"], "match", "{compiler:#}");
        assert_eq!(compiler["local"]["digest"], compiler["remote"]["digest"]);
    }
    assert_eq!(report["hosts"][1]["kind"], "local");

    // The box counts what it serves, for every session (here: a compile through the
    // daemon's `--mux`, and a request for a compiler it does not list through
    // `--inetd`).
    let project = common::project_copy();
    let output = common::compile_via(build_box.ssh_config(), "box", project.path(), scratch);
    assert!(output.status.success(), "{}", stderr(&output));
    let sshcc = sshcc();
    let refused = common::distcc_over_ssh(
        build_box.ssh(),
        &[sshcc.to_str().unwrap(), "--inetd"],
        &["bash", "-c", "x.c"],
        b"",
    );
    assert_eq!(refused.status >> 8, 110);
    let report = check_json(&hosts, build_box.ssh_config(), scratch);
    let counters = &report["hosts"][0]["remote"]["counters"];
    assert_eq!(counters["jobs"], 2, "{counters:#}");
    assert_eq!(counters["succeeded"], 1, "{counters:#}");
    assert_eq!(counters["refused"], 1, "{counters:#}");
    assert_eq!(counters["running"], 0, "{counters:#}");
    assert!(counters["compile_ms"].as_u64().unwrap() > 0, "{counters:#}");
}

#[test]
fn another_build_of_gcc_on_the_box_is_a_mismatch() {
    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path();
    // The same compiler underneath, but it says it is another version.
    let fake = scratch.join("other-gcc/x86_64-linux-gnu-gcc");
    write_script(
        &fake,
        "case \"$1\" in --version) echo 'gcc (Other) 99.1.0'; exit 0;; esac\n\
         exec /usr/bin/x86_64-linux-gnu-gcc \"$@\"",
    );
    let list = scratch.join("allowlist");
    std::fs::write(&list, format!("{}\n", fake.display())).unwrap();
    let build_box = start_box(&list);
    let hosts = format!("@box/4:{}", sshcc().display());
    let local_version = run(Command::new("gcc").arg("-dumpfullversion"));
    let local_version = String::from_utf8_lossy(&local_version.stdout)
        .trim()
        .to_string();

    let output = check(&hosts, build_box.ssh_config(), scratch, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}\n{}", stderr(&output));
    let row = text
        .lines()
        .find(|line| line.contains(&fake.display().to_string()))
        .unwrap_or_else(|| panic!("no row for {}:\n{text}", fake.display()));
    assert!(
        row.contains("mismatch: version") && row.contains("99.1.0") && row.contains(&local_version),
        "{text}"
    );
    assert!(
        text.contains("PROBLEM: 1 compiler does not match"),
        "{text}"
    );

    // Switched off for this host, the difference is not a problem.
    let output = check(
        &hosts,
        build_box.ssh_config(),
        scratch,
        &[("SSHCC_TOOLCHAIN_CHECK", "off")],
    );
    let text = stdout(&output);
    assert!(output.status.success(), "{text}\n{}", stderr(&output));
    assert!(text.contains("not checked"), "{text}");
}

#[test]
fn a_dead_host_is_an_error_row_beside_a_good_one() {
    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path();
    let list = scratch.join("allowlist");
    std::fs::write(&list, "/usr/bin/gcc\n").unwrap();
    let build_box = start_box(&list);
    // A port nobody listens on once the listener is gone.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = scratch.join("ssh_config");
    std::fs::write(
        &config,
        ssh_stanza(&build_box, "box", "")
            + &format!(
                "Host nonexistent\n  HostName 127.0.0.1\n  Port {port}\n  ConnectTimeout 3\n  \
                 BatchMode yes\n  UserKnownHostsFile {}\n",
                build_box.known_hosts().display()
            ),
    )
    .unwrap();
    let hosts = format!(
        "@box/4:{sshcc} @nonexistent/4:{sshcc}",
        sshcc = sshcc().display()
    );

    let output = check(&hosts, &config, scratch, &[]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}\n{}", stderr(&output));
    let dead = text
        .split("\n\n")
        .find(|block| block.starts_with("@nonexistent/4"))
        .unwrap_or_else(|| panic!("no block for @nonexistent:\n{text}"));
    assert!(
        dead.contains("UNUSABLE: cannot connect to ")
            && dead.contains(&format!("@127.0.0.1:{port}: "))
            && dead.contains("refused"),
        "{text}"
    );
    assert!(
        text.contains("2 host(s) checked: 1 with problems"),
        "{text}"
    );

    let report = check_json(&hosts, &config, scratch);
    assert_eq!(report["ok"], false);
    assert_eq!(report["hosts"][0]["ok"], true, "{report:#}");
    assert_eq!(report["hosts"][1]["ok"], false);
    assert!(
        report["hosts"][1]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect")
    );
}

//! Targets resolved from ssh_config (HostKeyAlias, several UserKnownHostsFiles): our
//! verdict on the resolved target against OpenSSH's on the same config.

use crate::oracle::*;

#[test]
fn resolved_targets_agree_with_openssh() {
    let env = Env::new();
    let p = env.port();
    let h = &env.host;
    let o = &env.other;
    let here = format!("[127.0.0.1]:{p}");
    let path = |name: &str| env.dir.path().join(name);

    let mut report = Report::default();
    // Files whose text is `None` are not created.
    let mut check = |name: &str, files: &[(&str, Option<String>)], extra: &str, want: Decision| {
        let mut names = Vec::new();
        for (file, text) in files {
            let path = match text {
                Some(text) => env.write(file, text),
                None => path(file),
            };
            names.push(path.display().to_string());
        }
        let config = env.config(
            &format!("{name}.config"),
            &format!("  UserKnownHostsFile {}\n{extra}", names.join(" ")),
        );
        let ours = env.ours_with_config(&config);
        let theirs = env.openssh_with_config(&config);
        report.record(name, &ours, &theirs, &want);
    };

    check(
        "config_plain",
        &[("c_plain", Some(format!("{here} {h}\n")))],
        "",
        Decision::Trusted,
    );
    // HostKeyAlias is looked up verbatim, without the port, and case-insensitively.
    check(
        "alias",
        &[("c_alias", Some(format!("buildbox {h}\n")))],
        "  HostKeyAlias BuildBox\n",
        Decision::Trusted,
    );
    check(
        "alias_mixed_case_file",
        &[("c_alias_case", Some(format!("BuildBox {h}\n")))],
        "  HostKeyAlias buildbox\n",
        Decision::Trusted,
    );
    check(
        "alias_with_port_form",
        &[("c_alias_port", Some(format!("[buildbox]:{p} {h}\n")))],
        "  HostKeyAlias buildbox\n",
        Decision::Unknown,
    );
    check(
        "alias_ignores_hostname",
        &[("c_alias_host", Some(format!("{here} {h}\n")))],
        "  HostKeyAlias buildbox\n",
        Decision::Unknown,
    );
    check(
        "alias_changed",
        &[("c_alias_changed", Some(format!("buildbox {o}\n")))],
        "  HostKeyAlias buildbox\n",
        Decision::Changed {
            path: path("c_alias_changed"),
            line: 1,
        },
    );
    // Several UserKnownHostsFiles are consulted together.
    check(
        "two_files_second_trusts",
        &[
            ("c_two_a", Some(format!("{here} {o}\n"))),
            ("c_two_b", Some(format!("{here} {h}\n"))),
        ],
        "",
        Decision::Trusted,
    );
    check(
        "two_files_changed_in_second",
        &[
            ("c_two_c", Some(String::new())),
            ("c_two_d", Some(format!("# x\n{here} {o}\n"))),
        ],
        "",
        Decision::Changed {
            path: path("c_two_d"),
            line: 2,
        },
    );
    check(
        "two_files_revoked_in_second",
        &[
            ("c_two_e", Some(format!("{here} {h}\n"))),
            ("c_two_f", Some(format!("@revoked * {h}\n"))),
        ],
        "",
        Decision::Revoked,
    );
    check(
        "missing_file_then_good",
        &[
            ("c_missing", None),
            ("c_two_g", Some(format!("{here} {h}\n"))),
        ],
        "",
        Decision::Trusted,
    );

    report.assert_agreement();
}

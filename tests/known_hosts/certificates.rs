//! Host certificates (`@cert-authority`): our verdict against OpenSSH's.

use std::fs;

use crate::oracle::*;
use sshcc::throwaway_box::{CertificateRequest, ThrowawayBox};

#[test]
fn host_certificates_agree_with_openssh() {
    let dir = tempfile::tempdir().unwrap();
    let ca = keygen(dir.path(), "ca", "ed25519");
    let other_ca = keygen(dir.path(), "other_ca", "ed25519");
    let request = |principals: Option<&str>, validity: &str| CertificateRequest {
        ca_key: dir.path().join("ca"),
        principals: principals.map(str::to_owned),
        validity: validity.to_owned(),
    };
    let start = |request: CertificateRequest| {
        ThrowawayBox::builder()
            .host_certificate(request)
            .start()
            .expect("starting a box with a host certificate")
    };
    let certified = start(request(Some("127.0.0.1,build.example"), "always:forever"));
    let anyone = start(request(None, "always:forever"));
    let expired = start(request(Some("127.0.0.1"), "-3d:-1d"));
    let plain_line = |b: &ThrowawayBox| fs::read_to_string(b.known_hosts()).unwrap();

    let mut report = Report::default();
    let mut check =
        |name: &str, b: &ThrowawayBox, known_hosts: String, extra: &str, want: Decision| {
            let file = dir.path().join(format!("{name}.known_hosts"));
            fs::write(&file, known_hosts).unwrap();
            let config = dir.path().join(format!("{name}.config"));
            let extra = format!("  UserKnownHostsFile {}\n{extra}", file.display());
            fs::write(&config, kbox_config(b, &extra)).unwrap();
            let ours = ours_connecting(&config, &[]);
            let theirs = openssh_with_config(&config);
            report.record(name, &ours, &theirs, &want);
        };
    let here = |b: &ThrowawayBox| format!("[127.0.0.1]:{}", b.port());
    let c = &certified;

    check(
        "ca_for_host",
        c,
        format!("@cert-authority {} {ca}\n", here(c)),
        "",
        Decision::Trusted,
    );
    check(
        "ca_wildcard",
        c,
        format!("@cert-authority * {ca}\n"),
        "",
        Decision::Trusted,
    );
    check(
        "ca_other_host",
        c,
        format!("@cert-authority 10.* {ca}\n"),
        "",
        Decision::Unknown,
    );
    check(
        "other_ca",
        c,
        format!("@cert-authority * {other_ca}\n"),
        "",
        Decision::Unknown,
    );
    check(
        "other_ca_plain_known",
        c,
        format!("@cert-authority * {other_ca}\n{}", plain_line(c)),
        "",
        Decision::Trusted,
    );
    check(
        "ca_revoked",
        c,
        format!("@cert-authority * {ca}\n@revoked * {ca}\n"),
        "",
        Decision::Revoked,
    );
    check(
        "alias_is_principal",
        c,
        format!("@cert-authority * {ca}\n"),
        "  HostKeyAlias build.example\n",
        Decision::Trusted,
    );
    // A certificate for other names: judged by its plain key, as OpenSSH does.
    check(
        "alias_not_principal",
        c,
        format!("@cert-authority * {ca}\n"),
        "  HostKeyAlias elsewhere.example\n",
        Decision::Unknown,
    );
    let anywhere = format!("@cert-authority * {ca}\n");
    check(
        "no_principals",
        &anyone,
        anywhere.clone(),
        "  HostKeyAlias x.example\n",
        Decision::Trusted,
    );
    check("expired", &expired, anywhere.clone(), "", Decision::Unknown);
    check(
        "expired_plain_known",
        &expired,
        format!("{anywhere}{}", plain_line(&expired)),
        "",
        Decision::Trusted,
    );
    report.assert_agreement();
}

//! Host lists (`DISTCC_HOSTS`, hosts files): any text must parse or be refused without
//! a panic, and a parsed list must answer `-j`, `--show-hosts` and `--randomize`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sshcc::hosts::{self, HostKind};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(mut list) = hosts::parse(&text) else {
        return;
    };
    let total = list.total_slots();
    let shown = list.show_hosts();
    assert_eq!(shown.lines().count(), list.hosts.len(), "{shown:?}");
    for host in &list.hosts {
        assert!(!host.text.is_empty(), "empty entry in {list:?}");
        assert!(host.slots >= 1 && host.slots <= i32::MAX as u32, "{host:?}");
        assert!(!host.cpp || host.lzo, ",cpp without ,lzo: {host:?}");
        match &host.kind {
            HostKind::Local => {}
            HostKind::Ssh { host: name, .. } => assert!(!name.is_empty(), "{host:?}"),
            HostKind::Tcp { host: name, port } => {
                assert!(!name.is_empty() && *port != 0, "{host:?}")
            }
            HostKind::Reapi { authority, .. } => {
                assert!(!authority.is_empty(), "{host:?}");
                assert!(!host.lzo && !host.cpp, "{host:?}");
                let url = host.kind.reapi_url().expect("a REAPI entry has a URL");
                assert!(host.text.starts_with(&url), "{host:?}");
            }
        }
    }
    let before = list.hosts.clone();
    list.shuffle(u64::from(total) ^ data.len() as u64);
    assert_eq!(list.total_slots(), total);
    assert_eq!(list.hosts.len(), before.len());
    assert!(
        before.iter().all(|host| list.hosts.contains(host)),
        "shuffle lost a host"
    );
});

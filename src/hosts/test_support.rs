//! Shorthands the host-list tests share: the one entry a text parses to, the kinds of
//! entry, and the entries' texts in list order.

use super::{HostKind, HostList, HostSpec, parse};

pub(super) fn one(text: &str) -> HostSpec {
    let list = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
    assert_eq!(list.hosts.len(), 1, "{text:?}: {list:?}");
    list.hosts.into_iter().next().unwrap()
}

pub(super) fn tcp(host: &str, port: u16) -> HostKind {
    HostKind::Tcp {
        host: host.into(),
        port,
    }
}

pub(super) fn ssh(user: Option<&str>, host: &str, command: Option<&str>) -> HostKind {
    HostKind::Ssh {
        user: user.map(Into::into),
        host: host.into(),
        command: command.map(Into::into),
    }
}

pub(super) fn texts(list: &HostList) -> Vec<&str> {
    list.hosts.iter().map(|h| h.text.as_str()).collect()
}

//! `sshcc::ssh::known_hosts` against OpenSSH itself: for a range of known_hosts files,
//! our [`KnownHosts::verify`] must reach the decision that OpenSSH's client reaches when
//! it connects to a real sshd (a throwaway box on 127.0.0.1) with strict checking.
//!
//! The config-driven cases also run `sshcc::ssh::config::resolve` on the same ssh_config
//! that OpenSSH uses, so HostKeyAlias and several UserKnownHostsFiles are covered end to
//! end.//!
//! One test binary, in groups: plain known_hosts files (`verify`), targets resolved from
//! ssh_config (`resolve`), lines sshcc learns (`learn`), host certificates
//! (`certificates`) and `StrictHostKeyChecking no` (`unchecked`); the environment and
//! the comparison with OpenSSH they share are in `oracle`.

#[path = "known_hosts/oracle.rs"]
mod oracle;

#[path = "known_hosts/certificates.rs"]
mod certificates;
#[path = "known_hosts/learn.rs"]
mod learn;
#[path = "known_hosts/resolve.rs"]
mod resolve;
#[path = "known_hosts/unchecked.rs"]
mod unchecked;
#[path = "known_hosts/verify.rs"]
mod verify;

//! What each network (loopback, through the delay proxies, behind the bastion) offers the
//! routes: distccd's port, the host entry, an ssh_config per SSH route and the proxies
//! that count its traffic.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use sshcc::throwaway_box::ThrowawayBox;

use crate::bastion;
use crate::proxy::DelayProxy;
use crate::route::Via;

/// One-way delay of the proxy (round trip twice this).
pub const DELAY: Duration = Duration::from_millis(10);

/// Everything one network (loopback, delayed or behind the bastion) offers the routes.
pub struct Network {
    /// Where distcc finds distccd (the daemon, or a proxy in front of it); 0 where no
    /// distcc TCP route goes (behind the bastion).
    pub tcp_port: u16,
    /// The `Host` the SSH routes name, and the job slots of its host entry.
    pub host: &'static str,
    pub slots: usize,
    /// ssh_config for per-job ssh, for the ControlMaster, and for sshcc; on loopback
    /// all three are the box's own, behind the proxy each has its own proxy.
    pub ssh_config: PathBuf,
    pub master_config: PathBuf,
    pub sshcc_config: PathBuf,
    /// `SSHCC_RUNTIME_DIR` of this network's sshcc daemon.
    pub runtime_dir: PathBuf,
    /// The proxies the client connects to.
    pub proxies: Option<Proxies>,
    /// Behind the bastion: the proxies the bastion connects to (in front of the box).
    pub second_hop: Option<Proxies>,
    /// Behind the bastion: the bastion itself.
    pub bastion_box: Option<ThrowawayBox>,
}

pub struct Proxies {
    /// `None` where no distcc TCP route goes.
    pub tcp: Option<DelayProxy>,
    pub ssh: DelayProxy,
    pub master: DelayProxy,
    pub sshcc: DelayProxy,
}

impl Proxies {
    pub fn of(&self, via: Via) -> Option<&DelayProxy> {
        match via {
            Via::Local => None,
            Via::DistccTcp => self.tcp.as_ref(),
            Via::DistccSsh => Some(&self.ssh),
            Via::DistccSshMaster => Some(&self.master),
            Via::Sshcc => Some(&self.sshcc),
        }
    }
}

/// Section 6's network: the bastion box, a delay proxy per SSH route in front of it and
/// one in front of the build box, and an ssh_config per route naming `target` with
/// `ProxyJump bastion` (see [`bastion`](crate::bastion)).
pub fn bastion_network(
    target: &ThrowawayBox,
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    login_user: Option<&str>,
    user: &str,
) -> Result<Network> {
    let bastion_box = bastion::start(login_user)?;
    let proxies = |to: u16| -> Result<Proxies> {
        Ok(Proxies {
            tcp: None,
            ssh: DelayProxy::start(runtime, to, DELAY)?,
            master: DelayProxy::start(runtime, to, DELAY)?,
            sshcc: DelayProxy::start(runtime, to, DELAY)?,
        })
    };
    let first = proxies(bastion_box.port())?;
    let second = proxies(target.port())?;
    let config = |name: &str, via: Via| -> Result<PathBuf> {
        let port = |p: &Proxies| p.of(via).map(DelayProxy::port).expect("an SSH route");
        bastion::ssh_config(
            &bastion_box,
            target,
            dir,
            name,
            port(&first),
            port(&second),
            user,
        )
    };
    Ok(Network {
        tcp_port: 0,
        host: bastion::TARGET_HOST,
        slots: 1,
        ssh_config: config("ssh", Via::DistccSsh)?,
        master_config: config("master", Via::DistccSshMaster)?,
        sshcc_config: config("sshcc", Via::Sshcc)?,
        runtime_dir: dir.join("rt-bastion"),
        proxies: Some(first),
        second_hop: Some(second),
        bastion_box: Some(bastion_box),
    })
}

/// An ssh_config reaching the box through the proxy on `port`, with a known_hosts file
/// holding the box's real host key under `[127.0.0.1]:<port>`.
pub fn proxied_ssh_config(
    build_box: &ThrowawayBox,
    dir: &Path,
    name: &str,
    port: u16,
    user: &str,
) -> Result<PathBuf> {
    let key = bastion::host_key(build_box)?;
    let known_hosts = dir.join(format!("known_hosts-{name}"));
    fs::write(&known_hosts, format!("[127.0.0.1]:{port} {key}\n"))?;
    let config = dir.join(format!("ssh_config-{name}"));
    fs::write(
        &config,
        format!(
            "Host box\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {key_file}\n  \
             IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n  StrictHostKeyChecking yes\n  \
             BatchMode yes\n  LogLevel ERROR\n",
            key_file = build_box.client_key().display(),
            known_hosts = known_hosts.display(),
        ),
    )?;
    Ok(config)
}

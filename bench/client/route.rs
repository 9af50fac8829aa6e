//! The paths the benchmark compares: how the compiler is reached ([`Via`]), over which
//! network ([`Net`]), and which routes each section times.

/// Debian's distcc client (and sshcc) send `gcc` as the target-prefixed name.
/// Job slots of every remote host entry, and make's `-j` for the distributed builds.
pub const SLOTS: usize = 4;
/// make's `-j` for the local build: one job per core.
const LOCAL_JOBS: usize = 2;

/// How the compiler is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// gcc on this machine.
    Local,
    /// distcc → `distccd --daemon` over TCP.
    DistccTcp,
    /// distcc → a new `ssh` per job → `distccd --inetd`.
    DistccSsh,
    /// distcc → `ssh` through an already open OpenSSH ControlMaster → `distccd --inetd`.
    DistccSshMaster,
    /// `sshcc gcc` → the warm per-user daemon → one `sshcc --mux` channel.
    Sshcc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    Loopback,
    /// Through a [`DelayProxy`](crate::proxy::DelayProxy).
    Delayed,
    /// To the host `target` (the box) with `ProxyJump bastion`: client → proxy →
    /// bastion's sshd, then bastion → proxy → the box's sshd (section 6).
    Bastion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub via: Via,
    pub net: Net,
    /// distcc's `,lzo` (protocol 2).
    pub lzo: bool,
}

impl Route {
    pub const fn new(via: Via, net: Net) -> Self {
        Route {
            via,
            net,
            lzo: false,
        }
    }

    const fn lzo(self) -> Self {
        Route { lzo: true, ..self }
    }

    pub fn label(self) -> String {
        let base = match self.via {
            Via::Local => "local gcc",
            Via::DistccTcp => "distcc → TCP → `distccd --daemon`",
            Via::DistccSsh => "distcc → ssh per job → `distccd --inetd`",
            Via::DistccSshMaster => "distcc → ssh via ControlMaster → `distccd --inetd`",
            Via::Sshcc => "sshcc → daemon → one `sshcc --mux` channel",
        };
        let mut label = base.to_owned();
        if self.lzo {
            label.push_str(", lzo");
        }
        match self.net {
            Net::Delayed if self.via != Via::Local => label.push_str(" (20 ms RTT)"),
            Net::Bastion => label.push_str(" via bastion (2 hops × 20 ms RTT)"),
            _ => {}
        }
        label
    }

    /// make's `-j` for this route.
    pub fn jobs(self) -> usize {
        if self.via == Via::Local {
            LOCAL_JOBS
        } else {
            SLOTS
        }
    }
}

pub const TINY_LOOPBACK: [Route; 5] = [
    Route::new(Via::Local, Net::Loopback),
    Route::new(Via::DistccTcp, Net::Loopback),
    Route::new(Via::DistccSsh, Net::Loopback),
    Route::new(Via::DistccSshMaster, Net::Loopback),
    Route::new(Via::Sshcc, Net::Loopback),
];
pub const TINY_DELAYED: [Route; 4] = [
    Route::new(Via::DistccTcp, Net::Delayed),
    Route::new(Via::DistccSsh, Net::Delayed),
    Route::new(Via::DistccSshMaster, Net::Delayed),
    Route::new(Via::Sshcc, Net::Delayed),
];
/// Section 6: the reference is distcc TCP through one delayed hop.
pub const TINY_BASTION: [Route; 5] = [
    Route::new(Via::Local, Net::Loopback),
    Route::new(Via::DistccTcp, Net::Delayed),
    Route::new(Via::DistccSsh, Net::Bastion),
    Route::new(Via::DistccSshMaster, Net::Bastion),
    Route::new(Via::Sshcc, Net::Bastion),
];
pub const BUILD_ROUTES: [Route; 4] = [
    Route::new(Via::Local, Net::Loopback),
    Route::new(Via::DistccTcp, Net::Loopback),
    Route::new(Via::DistccSsh, Net::Loopback),
    Route::new(Via::Sshcc, Net::Loopback),
];
pub const BYTES_ROUTES: [Route; 4] = [
    Route::new(Via::DistccTcp, Net::Delayed),
    Route::new(Via::DistccTcp, Net::Delayed).lzo(),
    Route::new(Via::DistccSsh, Net::Delayed).lzo(),
    Route::new(Via::Sshcc, Net::Delayed),
];

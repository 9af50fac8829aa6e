//! Confines the compiler with Landlock, so that what the argument rules miss cannot reach
//! the box's files either.
//!
//! Argument rules can only refuse what they recognise, and some reads are not arguments at
//! all: `asm(".incbin \"/home/build/.ssh/id_ed25519\"")` makes the assembler copy any file
//! the account can read into the object the client gets back. Under Landlock the compiler
//! may read and run only the system's program directories and its own installation, may
//! write only inside the job directory, and may not open TCP connections; the kernel
//! enforces it on the compiler and everything it starts (cc1, as), and it cannot be undone.
//!
//! The ruleset is built in the serving process (opening paths allocates) and applied by
//! a short-lived thread that then starts the compiler (`server::job`), which inherits it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::settings::{BoxSettings, SandboxMode};

/// Directories the compiler may read and run from, whatever it is: programs, shared
/// libraries, locales. `/etc` is not among them; only the loader's cache is.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/libx32",
    "/bin",
    "/sbin",
    "/opt",
    "/etc/ld.so.cache",
];

/// Devices a compiler opens for writing (diagnostics to /dev/null) or reading.
const DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/urandom"];

mod abi {
    //! Landlock's user-space ABI (linux/landlock.h).
    pub const CREATE_RULESET_VERSION: u32 = 1;
    pub const RULE_PATH_BENEATH: libc::c_int = 1;

    pub const EXECUTE: u64 = 1 << 0;
    pub const WRITE_FILE: u64 = 1 << 1;
    pub const READ_FILE: u64 = 1 << 2;
    pub const READ_DIR: u64 = 1 << 3;
    /// Every right of ABI 1: removing and making files, directories, links, devices.
    pub const ALL_V1: u64 = (1 << 13) - 1;
    pub const REFER: u64 = 1 << 13;
    pub const TRUNCATE: u64 = 1 << 14;
    pub const IOCTL_DEV: u64 = 1 << 15;
    /// Rights that apply to a file (as opposed to a directory) rule.
    pub const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

    pub const NET_BIND_TCP: u64 = 1 << 0;
    pub const NET_CONNECT_TCP: u64 = 1 << 1;
    pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
    pub const SCOPE_SIGNAL: u64 = 1 << 1;

    #[repr(C)]
    pub struct RulesetAttr {
        pub handled_access_fs: u64,
        pub handled_access_net: u64,
        pub scoped: u64,
    }

    #[repr(C, packed)]
    pub struct PathBeneathAttr {
        pub allowed_access: u64,
        pub parent_fd: i32,
    }
}

/// A ruleset ready to be applied to one job's compiler.
#[derive(Debug)]
pub struct Confinement {
    ruleset: OwnedFd,
}

/// What the box's kernel offers, for `--box-info` and warnings; asked once per
/// process, since a `--mux` worker serves many jobs and the kernel does not change.
pub fn kernel_abi() -> Result<u32, String> {
    static ABI: std::sync::OnceLock<Result<u32, String>> = std::sync::OnceLock::new();
    ABI.get_or_init(query_kernel_abi).clone()
}

fn query_kernel_abi() -> Result<u32, String> {
    // SAFETY: the version query takes no attribute pointer and has no side effects.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<abi::RulesetAttr>(),
            0usize,
            abi::CREATE_RULESET_VERSION,
        )
    };
    if version < 1 {
        let err = std::io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ENOSYS) => "this kernel has no Landlock".to_string(),
            Some(libc::EOPNOTSUPP) => "Landlock is disabled in this kernel (lsm=)".to_string(),
            _ => format!("Landlock unavailable: {err}"),
        });
    }
    Ok(version as u32)
}

/// How this box confines jobs, in words (for `--box-info`).
pub fn describe(mode: SandboxMode) -> String {
    match (mode, kernel_abi()) {
        (SandboxMode::Off, _) => "off".to_string(),
        (_, Ok(version)) => format!("landlock (ABI {version})"),
        (SandboxMode::Auto, Err(why)) => format!("none: {why}"),
        (SandboxMode::Required, Err(why)) => {
            format!("required but unavailable ({why}): jobs are refused")
        }
    }
}

impl Confinement {
    /// Builds the ruleset for running `compiler` (its real path) in `job_dir`, with the
    /// box owner's extra directories. `Ok(None)` when confinement is off or, in `Auto`
    /// mode, unsupported here.
    pub fn prepare(
        settings: &BoxSettings,
        compiler: &Path,
        job_dir: &Path,
    ) -> Result<Option<Self>, String> {
        let mode = settings.sandbox;
        if mode == SandboxMode::Off {
            return Ok(None);
        }
        let version = match kernel_abi() {
            Ok(version) => version,
            Err(why) if mode == SandboxMode::Auto => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "{why}; compilers run unconfined (SSHCC_SANDBOX=required refuses instead)"
                    );
                });
                return Ok(None);
            }
            Err(why) => return Err(format!("the sandbox is required but {why}")),
        };
        let mut handled_fs = abi::ALL_V1;
        if version >= 2 {
            handled_fs |= abi::REFER;
        }
        if version >= 3 {
            handled_fs |= abi::TRUNCATE;
        }
        if version >= 5 {
            handled_fs |= abi::IOCTL_DEV;
        }
        let attr = abi::RulesetAttr {
            handled_access_fs: handled_fs,
            handled_access_net: if version >= 4 {
                abi::NET_BIND_TCP | abi::NET_CONNECT_TCP
            } else {
                0
            },
            scoped: if version >= 6 {
                abi::SCOPE_ABSTRACT_UNIX_SOCKET | abi::SCOPE_SIGNAL
            } else {
                0
            },
        };
        // SAFETY: `attr` is a valid, fully initialised struct of the size we pass; older
        // kernels accept the larger struct because the fields they lack are zero.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const abi::RulesetAttr,
                std::mem::size_of::<abi::RulesetAttr>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(format!(
                "cannot create a Landlock ruleset: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: the kernel just returned this descriptor to us and nobody else owns it.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let confinement = Confinement { ruleset };

        let read_only = abi::EXECUTE | abi::READ_FILE | abi::READ_DIR;
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let installation = installation_dir(compiler, home.as_deref());
        let readable = SYSTEM_READ
            .iter()
            .map(PathBuf::from)
            .chain(installation)
            .chain(settings.sandbox_allow.iter().cloned());
        for path in readable {
            confinement.allow(&path, read_only & handled_fs)?;
        }
        let device =
            (abi::READ_FILE | abi::WRITE_FILE | abi::TRUNCATE | abi::IOCTL_DEV) & handled_fs;
        for path in DEVICES {
            confinement.allow(Path::new(path), device)?;
        }
        for path in
            std::iter::once(job_dir).chain(settings.sandbox_write.iter().map(PathBuf::as_path))
        {
            confinement.allow(path, handled_fs)?;
        }
        Ok(Some(confinement))
    }

    /// Lets the confined process use `access` beneath `path`; a path that does not exist
    /// grants nothing and is skipped.
    fn allow(&self, path: &Path, access: u64) -> Result<(), String> {
        let Ok(name) = CString::new(path.as_os_str().as_bytes()) else {
            return Err(format!("{} contains a NUL byte", path.display()));
        };
        // SAFETY: `name` is a valid C string; O_PATH opens without reading anything.
        let fd = unsafe { libc::open(name.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            return Ok(());
        }
        // SAFETY: we own the descriptor open(2) just returned.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let access = if path.is_dir() {
            access
        } else {
            access & abi::FILE_RIGHTS
        };
        let rule = abi::PathBeneathAttr {
            allowed_access: access,
            parent_fd: fd.as_raw_fd(),
        };
        // SAFETY: both descriptors are open and `rule` is the packed struct the rule type
        // expects.
        let added = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.ruleset.as_raw_fd(),
                abi::RULE_PATH_BENEATH,
                &rule as *const abi::PathBeneathAttr,
                0u32,
            )
        };
        if added < 0 {
            return Err(format!(
                "cannot allow {} in the sandbox: {}",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Confines the calling thread, and all it starts, for good (`no_new_privs` and the
    /// Landlock domain are per thread). Only for a thread that starts the compiler and ends.
    pub fn apply_to_current_thread(&self) -> std::io::Result<()> {
        // SAFETY: prctl and landlock_restrict_self take plain integers; the ruleset
        // descriptor is open (it is closed on exec, in the child).
        unsafe {
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::syscall(
                libc::SYS_landlock_restrict_self,
                self.ruleset.as_raw_fd(),
                0u32,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// The directory a compiler was installed under (`/opt/gcc-arm/bin/arm-none-eabi-gcc` →
/// `/opt/gcc-arm`), where its cc1, as and headers live. Never `/` or a home directory:
/// a compiler in `~/bin` gets `~/bin` only.
fn installation_dir(compiler: &Path, home: Option<&Path>) -> Option<PathBuf> {
    let real = std::fs::canonicalize(compiler).ok()?;
    let bin = real.parent()?.to_path_buf();
    let prefix = bin.parent()?;
    let too_wide = prefix.parent().is_none()
        || home.is_some_and(|home| prefix == home || home.starts_with(prefix));
    Some(if too_wide { bin } else { prefix.to_path_buf() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installation_dir_is_the_prefix_but_never_too_wide() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("gcc-arm/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("arm-none-eabi-gcc"), "").unwrap();
        assert_eq!(
            installation_dir(&bin.join("arm-none-eabi-gcc"), None),
            Some(std::fs::canonicalize(dir.path().join("gcc-arm")).unwrap())
        );
        // A compiler directly in a home-like directory's subdirectory: its prefix would
        // be the home directory itself.
        std::fs::write(dir.path().join("cc"), "").unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            installation_dir(&dir.path().join("cc"), canonical.parent()),
            Some(canonical)
        );
    }
}

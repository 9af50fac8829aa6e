//! What only libc knows about this machine and account: the passwd entry (`$USER` and
//! `$HOME` are often unset in CI and containers), the host name, the clock as Unix
//! seconds, and `flock(2)` locks.

use std::ffi::CStr;

/// Login name and home directory of `uid` from the passwd database.
pub fn passwd_entry(uid: libc::uid_t) -> Option<(String, String)> {
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: an all-zero passwd is a valid value to be overwritten.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer refers to live, writable memory of the advertised size;
        // the strings written into `buf` are only read while `buf` is alive.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || result.is_null() {
            return None;
        }
        // SAFETY: on success both fields point to NUL-terminated strings in `buf`.
        let (name, dir) = unsafe { (CStr::from_ptr(pwd.pw_name), CStr::from_ptr(pwd.pw_dir)) };
        return Some((
            name.to_string_lossy().into_owned(),
            dir.to_string_lossy().into_owned(),
        ));
    }
}

/// This machine's host name (empty if it cannot be read).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..len]).into_owned()
}

/// The current Unix time in seconds.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// How [`flock`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockWait {
    /// Block until the lock is ours.
    Block,
    /// Return `Ok(false)` at once when another holder has it.
    Try,
}

/// Takes an `flock(2)` lock on `file`, exclusive or shared; released when every
/// descriptor of this open file is closed, so also when the process dies. Returns
/// whether the lock was taken (always `true` with [`LockWait::Block`]).
pub fn flock(file: &std::fs::File, exclusive: bool, wait: LockWait) -> std::io::Result<bool> {
    let mut operation = if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    };
    if wait == LockWait::Try {
        operation |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: flock(2) on a descriptor `file` owns for the duration of the call.
        if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(file), operation) } == 0 {
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if wait == LockWait::Try => return Ok(false),
            _ => return Err(err),
        }
    }
}

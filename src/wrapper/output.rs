//! Delivering a remote compile's results as a local compile would: the compiler's
//! output and messages, then the object and side files, each complete or absent.

use std::io::Write;
use std::path::Path;

use crate::compiler::args::Distributable;
use crate::protocol::Response;

/// Prints the box's output and messages as the compiler would have.
pub(super) fn report(response: &Response) {
    let _ = std::io::stdout().write_all(&response.stdout);
    let _ = std::io::stderr().write_all(&response.stderr);
}

/// Writes the results of a successful remote compile.
pub(super) fn deliver(response: &Response, scan: &Distributable) -> u8 {
    report(response);
    match write_atomically(Path::new(&scan.output), &response.object) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("sshcc: cannot write {}: {err}", scan.output);
            1
        }
    }
}

/// Writes `data` to `path` through a temporary file in the same directory and a rename,
/// so an interrupted build never leaves a truncated object that make would trust.
pub(super) fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    // `-o /dev/null` and friends are written to, never replaced.
    if std::fs::metadata(path).is_ok_and(|meta| !meta.is_file()) {
        return std::fs::write(path, data);
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".sshcc-")
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)?;
    temp.write_all(data)?;
    temp.persist(path).map_err(|err| err.error)?;
    Ok(())
}

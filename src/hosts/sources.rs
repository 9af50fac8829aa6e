//! Where the host list comes from: `SSHCC_HOSTS`, `DISTCC_HOSTS`, then the hosts files
//! in sshcc's order, and the source named in messages.

use std::io;
use std::path::{Path, PathBuf};

use super::error::{HostSource, HostsError};
use super::list::HostList;
use super::scanner::parse;

/// The system-wide hosts file, the last place looked at (Debian's `${sysconfdir}`).
pub const SYSTEM_HOSTS_FILE: &str = "/etc/distcc/hosts";

/// Loads the host list in sshcc's order: `SSHCC_HOSTS`, else `DISTCC_HOSTS` (either one,
/// once set, wins even when empty, which means "no hosts" as in distcc), else
/// `$XDG_CONFIG_HOME/sshcc/hosts` (default `~/.config/sshcc/hosts`), else
/// `$DISTCC_DIR/hosts` (default `~/.distcc/hosts`), else `/etc/distcc/hosts`. Returns
/// `Ok(None)` when no source exists. A file that exists but cannot be read is an error
/// rather than skipped, so a permissions mistake does not silently change where jobs go.
///
/// The environment is read through `lookup` so tests need not change the process
/// environment; pass [`process_env`] for the real one.
pub fn load(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<(HostList, HostSource)>, HostsError> {
    load_from(lookup, Path::new(SYSTEM_HOSTS_FILE))
}

/// Reads one variable of this process's environment for [`load`]. A value that is not
/// UTF-8 is converted lossily instead of being treated as unset, which would silently
/// fall through to the hosts files.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
}

fn load_from(
    lookup: impl Fn(&str) -> Option<String>,
    system_file: &Path,
) -> Result<Option<(HostList, HostSource)>, HostsError> {
    let in_source = |origin: HostSource| {
        move |error| HostsError::InSource {
            origin,
            error: Box::new(error),
        }
    };
    for name in ["SSHCC_HOSTS", "DISTCC_HOSTS"] {
        if let Some(text) = lookup(name) {
            let origin = HostSource::Env(name);
            let list = parse(&text).map_err(in_source(origin.clone()))?;
            return Ok(Some((list, origin)));
        }
    }
    for path in host_files(&lookup, system_file) {
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                continue;
            }
            Err(source) => return Err(HostsError::Read { path, source }),
        };
        // A Latin-1 comment must not make the whole file unusable; distcc never looks at
        // the encoding either.
        let text = String::from_utf8_lossy(&bytes);
        let origin = HostSource::File(path);
        let list = parse(&text).map_err(in_source(origin.clone()))?;
        return Ok(Some((list, origin)));
    }
    Ok(None)
}

/// The candidate hosts files, in order.
fn host_files(lookup: &impl Fn(&str) -> Option<String>, system_file: &Path) -> Vec<PathBuf> {
    let home = lookup("HOME");
    let mut files = Vec::new();
    // The XDG spec says an empty or relative XDG_CONFIG_HOME is to be ignored.
    let xdg = lookup("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute());
    match (xdg, &home) {
        (Some(dir), _) => files.push(dir.join("sshcc/hosts")),
        (None, Some(home)) => files.push(PathBuf::from(format!("{home}/.config/sshcc/hosts"))),
        (None, None) => {}
    }
    // Spelled as distcc's asprintf("%s/hosts") so that odd values mean the same file.
    match (lookup("DISTCC_DIR"), &home) {
        (Some(dir), _) => files.push(PathBuf::from(format!("{dir}/hosts"))),
        (None, Some(home)) => files.push(PathBuf::from(format!("{home}/.distcc/hosts"))),
        (None, None) => {}
    }
    files.push(system_file.to_path_buf());
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit_code::ExitCode;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    struct Dirs {
        _tmp: tempfile::TempDir,
        home: PathBuf,
        xdg: PathBuf,
        distcc_dir: PathBuf,
        system: PathBuf,
    }

    impl Dirs {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let dirs = Dirs {
                home: tmp.path().join("home"),
                xdg: tmp.path().join("xdg"),
                distcc_dir: tmp.path().join("distcc"),
                system: tmp.path().join("etc/distcc/hosts"),
                _tmp: tmp,
            };
            std::fs::create_dir_all(&dirs.home).unwrap();
            dirs
        }

        fn write(&self, path: &Path, text: &str) -> PathBuf {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
            path.to_path_buf()
        }

        fn load(
            &self,
            vars: &[(&str, &str)],
        ) -> Result<Option<(HostList, HostSource)>, HostsError> {
            load_from(env(vars), &self.system)
        }
    }

    fn loaded(result: Result<Option<(HostList, HostSource)>, HostsError>) -> (String, HostSource) {
        let (list, source) = result.unwrap().expect("a host list");
        (list.show_hosts(), source)
    }

    #[test]
    fn load_prefers_sshcc_hosts_then_distcc_hosts() {
        let d = Dirs::new();
        let home = d.home.to_str().unwrap();
        d.write(&d.home.join(".config/sshcc/hosts"), "file");
        let both = [("SSHCC_HOSTS", "s"), ("DISTCC_HOSTS", "d"), ("HOME", home)];
        assert_eq!(
            loaded(d.load(&both)),
            ("s\n".into(), HostSource::Env("SSHCC_HOSTS"))
        );
        assert_eq!(
            loaded(d.load(&both[1..])),
            ("d\n".into(), HostSource::Env("DISTCC_HOSTS"))
        );
    }

    #[test]
    fn empty_variable_means_no_hosts_and_stops_the_search() {
        let d = Dirs::new();
        let home = d.home.to_str().unwrap();
        d.write(&d.home.join(".config/sshcc/hosts"), "file");
        for name in ["SSHCC_HOSTS", "DISTCC_HOSTS"] {
            let (list, source) = d.load(&[(name, ""), ("HOME", home)]).unwrap().unwrap();
            assert!(list.hosts.is_empty());
            assert_eq!(source, HostSource::Env(name));
        }
    }

    #[test]
    fn load_file_order() {
        let d = Dirs::new();
        let home = d.home.to_str().unwrap();
        let xdg = d.xdg.to_str().unwrap();
        let distcc_dir = d.distcc_dir.to_str().unwrap();
        let vars = [
            ("HOME", home),
            ("XDG_CONFIG_HOME", xdg),
            ("DISTCC_DIR", distcc_dir),
        ];
        assert!(d.load(&vars).unwrap().is_none());

        let system = d.write(&d.system, "sys");
        assert_eq!(
            loaded(d.load(&vars)),
            ("sys\n".into(), HostSource::File(system))
        );

        let home_distcc = d.write(&d.home.join(".distcc/hosts"), "homedistcc");
        let ddir = d.write(&d.distcc_dir.join("hosts"), "distccdir");
        assert_eq!(
            loaded(d.load(&vars)),
            ("distccdir\n".into(), HostSource::File(ddir))
        );
        assert_eq!(
            loaded(d.load(&vars[..2])),
            ("homedistcc\n".into(), HostSource::File(home_distcc))
        );

        let home_config = d.write(&d.home.join(".config/sshcc/hosts"), "homeconfig");
        let without_xdg = [("HOME", home), ("DISTCC_DIR", distcc_dir)];
        assert_eq!(
            loaded(d.load(&without_xdg)),
            ("homeconfig\n".into(), HostSource::File(home_config.clone()))
        );
        // XDG_CONFIG_HOME replaces ~/.config rather than adding to it.
        assert_eq!(loaded(d.load(&vars)).0, "distccdir\n");
        let xdg_file = d.write(&d.xdg.join("sshcc/hosts"), "xdg # comment\n");
        assert_eq!(
            loaded(d.load(&vars)),
            ("xdg\n".into(), HostSource::File(xdg_file))
        );
        // A relative XDG_CONFIG_HOME is ignored, per the XDG spec.
        let relative = [("HOME", home), ("XDG_CONFIG_HOME", "rel")];
        assert_eq!(
            loaded(d.load(&relative)),
            ("homeconfig\n".into(), HostSource::File(home_config))
        );
    }

    #[test]
    fn load_without_home_uses_the_system_file() {
        let d = Dirs::new();
        let system = d.write(&d.system, "sys");
        assert_eq!(
            loaded(d.load(&[])),
            ("sys\n".into(), HostSource::File(system))
        );
    }

    #[test]
    fn load_names_the_source_of_a_parse_error() {
        let d = Dirs::new();
        let err = d.load(&[("DISTCC_HOSTS", "a,zip")]).unwrap_err();
        assert_eq!(err.exit_code(), ExitCode::BadHostSpec);
        assert!(err.to_string().starts_with("$DISTCC_HOSTS: "), "{err}");
        let system = d.write(&d.system, "a,cpp");
        let err = d.load(&[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{}: ", system.display())),
            "{err}"
        );
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let d = Dirs::new();
        // A directory where the file should be cannot be read, even as root.
        std::fs::create_dir_all(d.distcc_dir.join("hosts")).unwrap();
        let err = d
            .load(&[("DISTCC_DIR", d.distcc_dir.to_str().unwrap())])
            .unwrap_err();
        assert!(matches!(err, HostsError::Read { .. }), "{err:?}");
        assert_eq!(err.exit_code(), ExitCode::IoError);
    }

    #[test]
    fn non_utf8_file_still_loads() {
        let d = Dirs::new();
        std::fs::create_dir_all(d.system.parent().unwrap()).unwrap();
        std::fs::write(&d.system, b"# B\xfcro\nbox/3\n").unwrap();
        let (list, _) = d.load(&[]).unwrap().unwrap();
        assert_eq!(list.total_slots(), 3);
    }
}

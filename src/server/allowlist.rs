//! The box's compiler allowlist: distcc's `DISTCC_CMDLIST` with its NUMWORDS matching
//! (distcc.md §4.2), except that it fails closed.
//!
//! distccd lets every compiler run when the list is missing or unreadable; sshcc refuses
//! the job instead and says which compiler and which list file were involved, because the
//! list is often the only thing standing between a build key and a shell.

use std::path::{Path, PathBuf};

/// Names the environment variables as users know them from distcc.
pub const LIST_VARIABLE: &str = "DISTCC_CMDLIST";
pub const NUMWORDS_VARIABLE: &str = "DISTCC_CMDLIST_NUMWORDS";

/// Why a compiler may not run.
#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    #[error(
        "no compiler allowlist: {LIST_VARIABLE} is not set and {} does not exist; \
         list the compilers this box may run there, one full path per line",
        path.display()
    )]
    NoList { path: PathBuf },
    #[error("{LIST_VARIABLE} is set but empty; point it at a file listing the allowed compilers")]
    EmptyVariable,
    #[error("cannot read the compiler allowlist {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{NUMWORDS_VARIABLE}={value:?} is not a number")]
    BadNumwords { value: String },
    #[error("cannot find the home directory to locate ~/.distcc/{LIST_VARIABLE}")]
    NoHome,
    #[error(
        "compiler {compiler:?} is not in the allowlist {} (matching its last {numwords} \
         path word(s) as {key:?}); add the compiler's full path to that file",
        path.display()
    )]
    NotListed {
        compiler: String,
        key: String,
        numwords: usize,
        path: PathBuf,
    },
}

/// A loaded allowlist.
#[derive(Debug, Clone)]
pub struct Allowlist {
    path: PathBuf,
    entries: Vec<String>,
    numwords: usize,
}

impl Allowlist {
    /// Loads the list the way distccd finds it: `DISTCC_CMDLIST`, else
    /// `~/.distcc/DISTCC_CMDLIST`; `DISTCC_CMDLIST_NUMWORDS` defaults to 1.
    pub fn from_env() -> Result<Self, AllowlistError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Allowlist::from_env`] with the environment supplied by the caller.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AllowlistError> {
        let numwords = match lookup(NUMWORDS_VARIABLE) {
            None => 1,
            Some(value) => value
                .trim()
                .parse()
                .map_err(|_| AllowlistError::BadNumwords { value })?,
        };
        let (path, explicit) = match lookup(LIST_VARIABLE) {
            Some(value) if value.is_empty() => return Err(AllowlistError::EmptyVariable),
            Some(value) => (PathBuf::from(value), true),
            None => {
                let home = lookup("HOME")
                    .filter(|h| !h.is_empty())
                    .ok_or(AllowlistError::NoHome)?;
                (Path::new(&home).join(".distcc").join(LIST_VARIABLE), false)
            }
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Self::parse(path, &text, numwords)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !explicit => {
                Err(AllowlistError::NoList { path })
            }
            Err(source) => Err(AllowlistError::Unreadable { path, source }),
        }
    }

    /// Builds a list from file contents. One full compiler path per line; unlike distcc,
    /// blank lines and `#` comments are skipped and surrounding whitespace is ignored, so a
    /// commented file cannot accidentally allow a "compiler" named after a comment.
    pub fn parse(path: PathBuf, text: &str, numwords: usize) -> Self {
        let entries = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(String::from)
            .collect();
        Allowlist {
            path,
            entries,
            numwords,
        }
    }

    /// The entries, in file order.
    pub fn entries(&self) -> &[String] {
        &self.entries
    }

    /// The file the list came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Maps a requested compiler to the full path to run: the first entry whose last
    /// NUMWORDS `/`-separated words equal the request's.
    pub fn resolve(&self, requested: &str) -> Result<&str, AllowlistError> {
        let key = match_key(requested, self.numwords);
        self.entries
            .iter()
            .find(|entry| match_key(entry, self.numwords) == key)
            .map(String::as_str)
            .ok_or_else(|| AllowlistError::NotListed {
                compiler: requested.to_string(),
                key: key.to_string(),
                numwords: self.numwords,
                path: self.path.clone(),
            })
    }
}

/// distcc's key: the text after the `numwords`-th `/` counted from the end. The first
/// character is never examined, so a leading `/` alone does not count, and a string with
/// fewer slashes is its own key; NUMWORDS 0 therefore compares whole strings.
fn match_key(command: &str, numwords: usize) -> &str {
    let mut remaining = numwords;
    for (index, byte) in command.bytes().enumerate().skip(1).rev() {
        if byte == b'/' {
            remaining = remaining.saturating_sub(1);
            if remaining == 0 && numwords > 0 {
                return &command[index + 1..];
            }
        }
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "/usr/lib/ccache/arm-none-eabi-g++\n# a comment /usr/bin/evil\n\n\
                        /usr/bin/x86_64-linux-gnu-gcc-12\n/opt/i686-x/gcc\n";

    fn list(numwords: usize) -> Allowlist {
        Allowlist::parse("/box/.distcc/DISTCC_CMDLIST".into(), LIST, numwords)
    }

    #[test]
    fn keys_follow_distcc() {
        assert_eq!(match_key("/usr/bin/gcc", 1), "gcc");
        assert_eq!(match_key("/usr/bin/gcc", 2), "bin/gcc");
        assert_eq!(match_key("gcc", 2), "gcc");
        assert_eq!(match_key("/gcc", 1), "/gcc");
        assert_eq!(match_key("/usr/bin/gcc", 0), "/usr/bin/gcc");
    }

    #[test]
    fn numwords_one_maps_names_and_foreign_paths_to_the_listed_path() {
        let list = list(1);
        assert_eq!(
            list.resolve("arm-none-eabi-g++").unwrap(),
            "/usr/lib/ccache/arm-none-eabi-g++"
        );
        assert_eq!(
            list.resolve("/weird/place/x86_64-linux-gnu-gcc-12")
                .unwrap(),
            "/usr/bin/x86_64-linux-gnu-gcc-12"
        );
        assert!(list.resolve("evil").is_err(), "comments are not entries");
        let err = list.resolve("bash").unwrap_err().to_string();
        assert!(
            err.contains("\"bash\"") && err.contains("/box/.distcc/DISTCC_CMDLIST"),
            "{err}"
        );
    }

    #[test]
    fn numwords_two_needs_the_directory_too() {
        let list = list(2);
        assert_eq!(
            list.resolve("/elsewhere/i686-x/gcc").unwrap(),
            "/opt/i686-x/gcc"
        );
        assert!(list.resolve("gcc").is_err());
        assert!(list.resolve("/usr/bin/gcc").is_err());
    }

    #[test]
    fn missing_unreadable_and_malformed_settings_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_str().unwrap().to_string();
        let env = |vars: Vec<(&'static str, String)>| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.clone())
            }
        };
        assert!(matches!(
            Allowlist::from_lookup(env(vec![("HOME", home.clone())])),
            Err(AllowlistError::NoList { .. })
        ));
        assert!(matches!(
            Allowlist::from_lookup(env(vec![(LIST_VARIABLE, format!("{home}/absent"))])),
            Err(AllowlistError::Unreadable { .. })
        ));
        assert!(matches!(
            Allowlist::from_lookup(env(vec![(LIST_VARIABLE, home.clone())])),
            Err(AllowlistError::Unreadable { .. })
        ));
        assert!(matches!(
            Allowlist::from_lookup(env(vec![(LIST_VARIABLE, String::new())])),
            Err(AllowlistError::EmptyVariable)
        ));
        assert!(matches!(
            Allowlist::from_lookup(env(vec![(NUMWORDS_VARIABLE, "two".into())])),
            Err(AllowlistError::BadNumwords { .. })
        ));
        std::fs::create_dir(dir.path().join(".distcc")).unwrap();
        std::fs::write(dir.path().join(".distcc/DISTCC_CMDLIST"), "/usr/bin/gcc\n").unwrap();
        let list = Allowlist::from_lookup(env(vec![("HOME", home)])).unwrap();
        assert_eq!(list.resolve("gcc").unwrap(), "/usr/bin/gcc");
    }
}

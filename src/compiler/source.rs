//! File-name rules shared with distcc (`src/filename.c`): what is a source file, what is
//! already preprocessed, and which extension a preprocessed file must carry so the
//! compiler keeps the language.

/// The extension: the text after the last `.` of the whole path, as distcc takes it.
pub fn extension(path: &str) -> Option<&str> {
    path.rfind('.').map(|dot| &path[dot + 1..])
}

/// Whether `path` names a source file distcc would distribute. `.s`/`.S` are not: distcc
/// only assembles remotely when built with `ENABLE_REMOTE_ASSEMBLE`.
pub fn is_source(path: &str) -> bool {
    matches!(
        extension(path),
        Some(
            "i" | "ii"
                | "c"
                | "cc"
                | "cpp"
                | "cxx"
                | "cp"
                | "c++"
                | "C"
                | "m"
                | "mm"
                | "mi"
                | "mii"
                | "M"
        )
    )
}

/// Whether `path` is already preprocessed (then it is sent as is).
pub fn is_preprocessed(path: &str) -> bool {
    matches!(extension(path), Some("i" | "ii" | "mi" | "mii"))
}

/// The extension a preprocessed copy of `path` needs (`dcc_preproc_exten`): the compiler
/// picks the language from it, so C must stay `.i` and C++ `.ii`.
pub fn preprocessed_extension(path: &str) -> &'static str {
    match extension(path) {
        Some("c" | "i") => "i",
        Some("cc" | "cpp" | "cxx" | "cp" | "c++" | "C" | "ii") => "ii",
        Some("m" | "mi") => "mi",
        Some("mm" | "M" | "mii") => "mii",
        Some(ext) if ext.eq_ignore_ascii_case("s") => "s",
        _ => "tmp",
    }
}

/// Whether `path` names an object file (`dcc_is_object`).
pub fn is_object(path: &str) -> bool {
    extension(path) == Some("o")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_is_kept_through_preprocessing() {
        assert_eq!(preprocessed_extension("dir.v2/a.c"), "i");
        assert_eq!(preprocessed_extension("a.C"), "ii");
        assert_eq!(preprocessed_extension("a.c++"), "ii");
        assert_eq!(preprocessed_extension("a.mm"), "mii");
        assert_eq!(preprocessed_extension("a.S"), "s");
        assert_eq!(preprocessed_extension("Makefile"), "tmp");
        assert!(is_source("x.cpp") && !is_source("x.s") && !is_source("x.h"));
        assert!(is_preprocessed("x.ii") && !is_preprocessed("x.c"));
        assert_eq!(extension("dir.d/file"), Some("d/file"));
    }
}

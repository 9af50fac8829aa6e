//! The tokio runtime every role runs on (box worker, daemon, `check`, `--stop`), built
//! one way so they all behave alike.

/// A multi-threaded runtime with I/O and timers enabled.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

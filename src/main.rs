fn main() -> std::process::ExitCode {
    sshcc::cli::run(std::env::args_os().collect())
}

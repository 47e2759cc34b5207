//! The `xaa-broker` binary: see `cli` for the commands.

fn main() -> std::process::ExitCode {
    xaa_broker::cli::main()
}

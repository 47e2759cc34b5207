//! The `xaa-broker` binary: see `cli` for the commands.

/// mimalloc: per-thread heaps with cheap cross-thread frees. A request
/// allocates on one worker and its spans and audit record are freed on
/// another thread (the exporter, the audit sink); glibc's arenas made
/// that a measurable share of every exchange (operations.md, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    xaa_broker::cli::main()
}

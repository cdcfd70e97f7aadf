//! `twinset`: one binary for the kubectl-style verbs, the control plane, the node
//! agent and the local cluster (`up` / `down`).
mod args;
mod client;
mod cluster_files;
mod commands;
mod logging;
mod manifests;
mod print;
mod procs;
mod report;
mod signals;
mod watch;

use clap::Parser as _;
use std::process::ExitCode;

/// jemalloc rather than the system allocator: it gives freed memory back to the
/// system, so the control plane's footprint comes down after a burst (2 000 watch
/// streams closing, a large snapshot sent) instead of staying at its peak.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    logging::init(cli.command.is_server_role());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report::eprint_error(&err);
            ExitCode::FAILURE
        }
    }
}

//! `escrow-proxy`: parse the command line, set up logging, call the library, map its error to
//! an exit code. The commands themselves live in `escrow_proxy::cli`.

use std::process::ExitCode;

use clap::Parser;
use escrow_proxy::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    escrow_proxy::logging::init(cli.log_format);
    escrow_proxy::logging::install_panic_hook();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let env = std::env::vars().collect();
    let result = runtime.block_on(escrow_proxy::cli::run(cli.command, &env));
    // After a forced stop, blocking work still running (a file write) gets a moment; the process
    // ends regardless (dropping the runtime would wait for it without bound).
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

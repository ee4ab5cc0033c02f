//! `portico-operator`: see [`portico_operator::runtime`].

use std::process::ExitCode;

use clap::Parser;
use portico_operator::runtime::{Options, init_logging, run, shutdown_signal};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // `portico-operator migrate-report ...`: a report, not the operator.
    if std::env::args().nth(1).as_deref() == Some("migrate-report") {
        let options =
            portico_operator::migrate::ReportOptions::parse_from(std::env::args().skip(1));
        return match portico_operator::migrate::run(options).await {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(3),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let options = Options::parse();
    init_logging(&options);
    let result = match shutdown_signal() {
        Ok(stop) => run(options, stop).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "portico-operator failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `portico-operator`: see [`portico_operator::runtime`].

use std::process::ExitCode;

use clap::Parser;
use portico_operator::runtime::{Options, init_logging, run, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
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

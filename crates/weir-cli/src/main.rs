//! The `weir` command. One subcommand per file; this file holds only the command line
//! and the dispatch. Data goes to stdout, diagnostics (logs) to stderr.

mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Weir: a Kafka-like partitioned log service.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

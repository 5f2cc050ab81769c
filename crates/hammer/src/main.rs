//! The `hammer` command line. Subcommands live in `cmd/`; this file only
//! parses flags and maps the outcome to an exit code. It sits on top of
//! every other crate: `hammer-lab`, `hammer-engine` and `hammer-core` for
//! the load and the method, `mandelweb` (on `hammer-diag`) for the built-in
//! target; nothing sits above it.

mod cli;
mod cmd;
mod demo;
mod live;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let outcome = match cli.command {
        cli::Command::Attack(args) => cmd::attack::run(*args),
        cli::Command::Report(args) => cmd::report::run(args),
        cli::Command::Lab(args) => cmd::lab::run(*args),
        cli::Command::Mandelweb { args } => {
            let argv = std::iter::once("mandelweb".into()).chain(args);
            mandelweb::app::main_from(argv).map(|()| cmd::Exit::Ok)
        }
    };
    match outcome {
        Ok(exit) => ExitCode::from(exit as u8),
        Err(e) if e.downcast_ref::<cmd::BadInput>().is_some() => {
            eprintln!("hammer: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("hammer: {e:#}");
            ExitCode::from(1)
        }
    }
}

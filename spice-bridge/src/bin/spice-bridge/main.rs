//! `spice-bridge`: the daemon that plugs the QXL display into an unmodified VMM over
//! vfio-user and serves its screen to Spice clients. `--help` documents every flag.

mod cli;
mod qxl;
mod vfio;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cmd = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spice-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        cli::Command::Help => {
            print!("{}", cli::HELP);
            ExitCode::SUCCESS
        }
        cli::Command::Version => {
            println!("spice-bridge {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        cli::Command::Run(_opts) => {
            eprintln!("spice-bridge: the daemon is not wired yet (work in progress)");
            ExitCode::from(1)
        }
    }
}

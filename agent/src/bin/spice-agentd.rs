//! `spice-agentd`: the system part of the Spice guest agent (wiring only; see
//! `spice_agent::daemon`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use spice_agent::daemon::{self, DaemonOptions};

/// Spice guest agent, system daemon: owns the VDI port and the uinput tablet, serves the session
/// agents over a Unix socket.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// The agent's virtio port.
    #[arg(long, default_value = spice_agent::port::DEFAULT_PATH)]
    port: PathBuf,
    /// The socket session agents connect to.
    #[arg(long, default_value = spice_agent::ipc::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Largest message taken from the host or a session, in bytes.
    #[arg(long, default_value_t = 128 * 1024 * 1024)]
    max_message: u32,
    /// Most session agents connected at once.
    #[arg(long, default_value_t = 16)]
    max_sessions: usize,
    /// Refuse file transfers from the client.
    #[arg(long)]
    disable_file_xfer: bool,
    /// Debug logging.
    #[arg(short, long)]
    debug: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    spice_agent::init_logging(args.debug);
    let opts = DaemonOptions {
        port: args.port,
        socket: args.socket,
        max_message: args.max_message,
        max_sessions: args.max_sessions.max(1),
        file_xfer_disabled: args.disable_file_xfer,
    };
    match daemon::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spice-agentd: {e}");
            ExitCode::FAILURE
        }
    }
}

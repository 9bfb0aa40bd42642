//! `spice-agent`: the per-session part of the Spice guest agent (wiring only; see
//! `spice_agent::session`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use spice_agent::session::{self, SessionOptions};

/// Spice guest agent, session part: clipboard, resolution and file transfer for this graphical
/// session, through spice-agentd.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// spice-agentd's socket.
    #[arg(long, default_value = spice_agent::ipc::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// X display (default: $DISPLAY).
    #[arg(long)]
    display: Option<String>,
    /// Where transferred files go (default: the XDG download folder).
    #[arg(long)]
    download_dir: Option<PathBuf>,
    /// Do not bridge the clipboard.
    #[arg(long)]
    no_clipboard: bool,
    /// Largest clipboard taken or given, in bytes.
    #[arg(long, default_value_t = 128 * 1024 * 1024)]
    max_clipboard: usize,
    /// Seconds to keep trying to reach spice-agentd at start.
    #[arg(long, default_value_t = 60)]
    connect_timeout: u64,
    /// Debug logging.
    #[arg(short, long)]
    debug: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    spice_agent::init_logging(args.debug);
    let opts = SessionOptions {
        socket: args.socket,
        display: args.display,
        download_dir: args.download_dir,
        clipboard: !args.no_clipboard,
        max_clipboard: args.max_clipboard,
        connect_timeout: Duration::from_secs(args.connect_timeout),
    };
    match session::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spice-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! `spice-bridge`: the daemon that plugs the QXL display into an unmodified VMM over
//! vfio-user and serves its screen to Spice clients. `--help` documents every flag.
//!
//! Threads: the vfio-user server (register accesses; one VMM connection at a time, the next
//! one accepted after a disconnect), the device worker (drains rings), the bridge (device
//! events → display model) and the tokio runtime serving Spice clients.

mod bridge;
mod cli;
mod control;
mod qxl;
mod vfio;

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use qxl_device::{QxlConfig, QxlDevice};
use spice_bridge::input::{NullAgent, NullInput};
use spice_bridge::link::TicketPolicy;
use spice_bridge::server::{ImageCompression, Server, ServerConfig};
use spice_bridge::wire::display::cap;
use spice_bridge::DisplayModel;
use tracing::{error, info, warn};

const MIB: u64 = 1 << 20;

fn main() -> ExitCode {
    let cmd = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("spice-bridge: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = match cmd {
        cli::Command::Help => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        cli::Command::Version => {
            println!("spice-bridge {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        cli::Command::Run(o) => o,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match run(*opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("spice-bridge: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// The display capabilities announced in the QXL ROM while a Spice display client is connected.
/// spice-server announces those of its clients, because it forwards guest commands to them; here
/// the device's own renderer consumes every command and clients get rendered pixels, so these are
/// the renderer's: client monitors configs, COMPOSITE and A8 surfaces (Xorg's qxl driver uses
/// the last two only when announced).
const CLIENT_DISPLAY_CAPS: u8 =
    1 << cap::MONITORS_CONFIG | 1 << cap::COMPOSITE | 1 << cap::A8_SURFACE;

/// Writes `client_present` and [`CLIENT_DISPLAY_CAPS`] into the ROM (QXL_INTERRUPT_CLIENT).
fn set_client_present(func: &Mutex<qxl::QxlFunction>, present: bool) {
    let caps = if present { CLIENT_DISPLAY_CAPS } else { 0 };
    func.lock()
        .unwrap_or_else(|p| p.into_inner())
        .dev
        .set_client_capabilities(present, &[caps]);
    info!(
        present,
        caps, "display client presence announced to the guest"
    );
}

fn run(opts: cli::Options) -> anyhow::Result<()> {
    if opts.qxl_socket.exists() {
        anyhow::bail!(
            "--qxl-socket {}: path exists (another daemon running? remove it first)",
            opts.qxl_socket.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;

    // Spice first: clients can link before any VMM connects.
    let model = DisplayModel::new();
    let server_cfg = ServerConfig {
        listen: opts.spice_addr,
        ticket: match &opts.ticketing {
            cli::Ticketing::Password(p) => TicketPolicy::Password {
                password: p.clone(),
                expires: None,
            },
            cli::Ticketing::Disabled => TicketPolicy::Disabled,
        },
        name: Some(opts.name.clone()),
        uuid: None,
        client_mouse: false,
        compression: ImageCompression::Lz,
    };
    let server = rt
        .block_on(Server::start(
            server_cfg,
            model.clone(),
            Arc::new(NullInput),
            Arc::new(NullAgent),
        ))
        .with_context(|| format!("spice server on {}", opts.spice_addr))?;
    let addr = server.local_addr();
    info!("spice://{}:{}", addr.ip(), addr.port());

    // The device.
    let intx = Arc::new(vfio::Intx::default());
    let wake = Arc::new(qxl::Wake::default());
    let (ev_tx, ev_rx) = std::sync::mpsc::channel();
    let cfg = QxlConfig {
        vga: !opts.secondary,
        ram_size: u64::from(opts.ram_mib) * MIB,
        vram_size: u64::from(opts.vram_mib) * MIB,
        vgamem_size: u64::from(opts.vgamem_mib) * MIB,
        ..QxlConfig::default()
    };
    let dev = QxlDevice::new(cfg, Arc::new(qxl::IntxLine(intx.clone())), Box::new(ev_tx))
        .context("QXL device")?;
    let func = Arc::new(Mutex::new(qxl::QxlFunction::new(dev, wake.clone())));
    let stop = Arc::new(AtomicBool::new(false));

    {
        let (func, wake, stop) = (func.clone(), wake.clone(), stop.clone());
        std::thread::Builder::new()
            .name("qxl-worker".into())
            .spawn(move || qxl::run_worker(func, wake, stop, Duration::from_millis(50)))
            .context("worker thread")?;
    }
    {
        let bridge = bridge::Bridge::new(model.clone(), func.clone());
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("bridge".into())
            .spawn(move || bridge.run(ev_rx, stop))
            .context("bridge thread")?;
    }

    // vfio-user: serve one VMM at a time; after a disconnect reset the device and accept again.
    let bars = {
        use vfio::PciFunction;
        func.lock().unwrap_or_else(|p| p.into_inner()).bars()
    };
    let (regions, irqs) = vfio::server_tables(&bars, !opts.no_mmap);
    let vfu = vfio::Server::new(&opts.qxl_socket, irqs, regions)
        .with_context(|| format!("--qxl-socket {}", opts.qxl_socket.display()))?;
    info!(
        socket = %opts.qxl_socket.display(),
        mmap = !opts.no_mmap,
        "vfio-user QXL device ready"
    );
    {
        let func = func.clone();
        let intx = intx.clone();
        std::thread::Builder::new()
            .name("vfio-user".into())
            .spawn(move || loop {
                let mut backend = vfio::VfioBackend::new(func.clone(), intx.clone());
                match vfu.run(&mut backend) {
                    Ok(_) => info!(
                        interrupts = intx.fired(),
                        "VMM disconnected; waiting for the next one"
                    ),
                    Err(e) => warn!("VMM connection ended: {e}"),
                }
                intx.set_level(false);
                use vfio::PciFunction;
                func.lock().unwrap_or_else(|p| p.into_inner()).reset();
            })
            .context("vfio-user thread")?;
    }

    if let Some(path) = &opts.control_socket {
        if path.exists() {
            anyhow::bail!("--control-socket {}: path exists", path.display());
        }
        let listener = std::os::unix::net::UnixListener::bind(path)
            .with_context(|| format!("--control-socket {}", path.display()))?;
        let func = func.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || control::serve(listener, func))
            .context("control thread")?;
    }

    // Run until SIGINT/SIGTERM, then remove the socket and stop. Meanwhile tell the guest,
    // as spice-server does, whether a display client is connected and what it can take.
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut present = false;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {
                    info!("SIGINT: shutting down");
                    break;
                }
                _ = term.recv() => {
                    info!("SIGTERM: shutting down");
                    break;
                }
                _ = tick.tick() => {
                    if server.has_display() != present {
                        present = !present;
                        set_client_present(&func, present);
                    }
                }
            }
        }
        server.shutdown().await;
        Ok::<(), std::io::Error>(())
    })
    .context("signal handling")?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    wake.wake();
    let _ = std::fs::remove_file(&opts.qxl_socket);
    if let Some(path) = &opts.control_socket {
        let _ = std::fs::remove_file(path);
    }
    info!("stopped");
    // The vfio-user thread may be blocked in accept(); leave without joining it.
    std::process::exit(0);
}

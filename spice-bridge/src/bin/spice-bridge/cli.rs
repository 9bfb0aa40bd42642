//! Command line of the `spice-bridge` daemon. Bad flags and unreadable files are reported in
//! one line and the process exits with status 2.

use std::net::SocketAddr;
use std::path::PathBuf;

/// The help text printed by `--help`.
pub const HELP: &str = "\
spice-bridge: serves an emulated QXL display device to a VMM over vfio-user and its screen to
Spice clients (remote-viewer, spicy, GNOME Boxes).

USAGE:
    spice-bridge (--password-file FILE | --disable-ticketing) --qxl-socket PATH [OPTIONS]

    At least one device socket (--qxl-socket, --vdi-socket or an input socket) is needed;
    without --qxl-socket clients get no display, only the agent and the input devices.

OPTIONS:
    --spice-addr ADDR:PORT   where Spice clients connect (default 127.0.0.1:5930)
    --password-file FILE     Spice ticket (password) is the first line of FILE (max 60 bytes)
    --disable-ticketing      accept clients without a password
    --qxl-socket PATH        vfio-user socket the VMM connects to (created; removed on exit)
    --qxl-no-mmap            offer every BAR trapped (no mmap): the fast mode under QEMU TCG
    --qxl-ram-mib N          size of the QXL RAM BAR (BAR0) in MiB, power of two (default 64)
    --qxl-vram-mib N         size of the QXL VRAM BAR (BAR1) in MiB, power of two (default 64)
    --qxl-vgamem-mib N       surface-0 / VGA framebuffer area in MiB, power of two (default 16)
    --qxl-secondary          present class 0x0380 (secondary display) instead of VGA 0x0300
    --keyboard-socket PATH   vhost-user socket of a virtio-input keyboard (QEMU:
                             -device vhost-user-input-pci; guest RAM must be shared memory)
    --tablet-socket PATH     vhost-user socket of a virtio-input tablet (absolute pointer):
                             client mouse mode is offered while the guest's driver runs it
    --mouse-socket PATH      vhost-user socket of a virtio-input relative mouse (server mouse
                             mode)
    --vdi-socket PATH        vhost-user socket of the VDI port: a virtio-console (id 3) with
                             MULTIPORT whose port 1 is com.redhat.spice.0, the Spice agent
                             channel (clipboard, resolution, client mouse through
                             spice-vdagent). QEMU 11: -device vhost-user-test-device-pci,
                             chardev=ID,virtio-id=3,num_vqs=2*(PORTS+2),config_size=12
                             (PORTS = 1 + the --vdi-port count; shared guest RAM)
    --vdi-port NAME=PATH     (repeatable; needs --vdi-socket) a further named port (ids 2, 3,
                             ... in order), e.g. org.qemu.guest_agent.0=/run/qga.sock: the
                             daemon listens on the Unix socket PATH, one peer at a time, and
                             passes bytes both ways; the guest sees the host side open while
                             a peer is connected
    --control-socket PATH    line-based control socket (\"monitors WxH[+X+Y] ...\", \"status\")
    --name NAME              VM name shown by clients (default \"spice-bridge\")
    -h, --help               print this help
    -V, --version            print the version

ENVIRONMENT:
    RUST_LOG                 log filter for the stderr log (default \"info\")

SIGNALS:
    SIGINT/SIGTERM           shut down cleanly and remove the socket
";

/// Name of the VDI port that carries the Spice agent.
pub const AGENT_PORT: &str = "com.redhat.spice.0";
/// Most ports of the VDI port, the agent's included (`vdi_port::console::MAX_PORTS`).
pub const MAX_VDI_PORTS: usize = vdi_port::console::MAX_PORTS;

/// How clients authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ticketing {
    /// Clients must present this password.
    Password(String),
    /// Any client is accepted.
    Disabled,
}

/// Parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Spice listening address.
    pub spice_addr: SocketAddr,
    /// Authentication.
    pub ticketing: Ticketing,
    /// vfio-user socket path (no QXL device without it).
    pub qxl_socket: Option<PathBuf>,
    /// Offer every BAR trapped.
    pub no_mmap: bool,
    /// RAM BAR size in MiB.
    pub ram_mib: u32,
    /// VRAM BAR size in MiB.
    pub vram_mib: u32,
    /// vgamem (surface-0 area) in MiB.
    pub vgamem_mib: u32,
    /// Secondary (0x0380) instead of VGA class.
    pub secondary: bool,
    /// VM name.
    pub name: String,
    /// Control socket path.
    pub control_socket: Option<PathBuf>,
    /// vhost-user sockets of the virtio-input devices.
    pub input: InputSockets,
    /// vhost-user socket of the VDI port (virtio-console).
    pub vdi_socket: Option<PathBuf>,
    /// Further named ports of the VDI port and the Unix sockets they are bridged to.
    pub vdi_ports: Vec<(String, PathBuf)>,
}

/// Where the virtio-input devices are served over vhost-user (each optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InputSockets {
    /// keyboard
    pub keyboard: Option<PathBuf>,
    /// absolute tablet (client mouse mode)
    pub tablet: Option<PathBuf>,
    /// relative mouse (server mouse mode)
    pub mouse: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Run the daemon.
    Run(Box<Options>),
    /// Print help and exit 0.
    Help,
    /// Print the version and exit 0.
    Version,
}

/// Parses `args` (without the program name). Errors are one-line messages.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut it = args.into_iter();
    let mut spice_addr: SocketAddr = "127.0.0.1:5930".parse().map_err(|_| "internal")?;
    let mut password_file: Option<PathBuf> = None;
    let mut disable_ticketing = false;
    let mut qxl_socket = None;
    let mut no_mmap = false;
    let mut ram_mib = 64;
    let mut vram_mib = 64;
    let mut vgamem_mib = 16;
    let mut secondary = false;
    let mut name = "spice-bridge".to_string();
    let mut control_socket = None;
    let mut input = InputSockets::default();
    let mut vdi_socket = None;
    let mut vdi_ports: Vec<(String, PathBuf)> = Vec::new();

    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let value = |it: &mut I::IntoIter| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--spice-addr" => {
                let v = value(&mut it)?;
                spice_addr = v
                    .parse()
                    .map_err(|_| format!("--spice-addr: '{v}' is not ADDR:PORT"))?;
            }
            "--password-file" => password_file = Some(PathBuf::from(value(&mut it)?)),
            "--disable-ticketing" => disable_ticketing = true,
            "--qxl-socket" => qxl_socket = Some(PathBuf::from(value(&mut it)?)),
            "--qxl-no-mmap" => no_mmap = true,
            "--qxl-ram-mib" => ram_mib = mib(&flag, &value(&mut it)?, 2, 2048)?,
            "--qxl-vram-mib" => vram_mib = mib(&flag, &value(&mut it)?, 1, 2048)?,
            "--qxl-vgamem-mib" => vgamem_mib = mib(&flag, &value(&mut it)?, 8, 256)?,
            "--qxl-secondary" => secondary = true,
            "--name" => name = value(&mut it)?,
            "--control-socket" => control_socket = Some(PathBuf::from(value(&mut it)?)),
            "--keyboard-socket" => input.keyboard = Some(PathBuf::from(value(&mut it)?)),
            "--tablet-socket" => input.tablet = Some(PathBuf::from(value(&mut it)?)),
            "--mouse-socket" => input.mouse = Some(PathBuf::from(value(&mut it)?)),
            "--vdi-socket" => vdi_socket = Some(PathBuf::from(value(&mut it)?)),
            "--vdi-port" => {
                let v = value(&mut it)?;
                let (name, path) = v
                    .split_once('=')
                    .filter(|(n, p)| !n.is_empty() && !p.is_empty())
                    .ok_or_else(|| format!("--vdi-port: '{v}' is not NAME=PATH"))?;
                if name == AGENT_PORT || vdi_ports.iter().any(|(n, _)| n == name) {
                    return Err(format!("--vdi-port: port name '{name}' used twice"));
                }
                if name.len() > 255 || name.contains(['/', '\0']) {
                    return Err(format!("--vdi-port: bad port name '{name}'"));
                }
                vdi_ports.push((name.to_string(), PathBuf::from(path)));
            }
            other => return Err(format!("unknown argument '{other}' (see --help)")),
        }
    }

    let ticketing = match (password_file, disable_ticketing) {
        (Some(_), true) => {
            return Err("--password-file and --disable-ticketing exclude each other".into())
        }
        (None, false) => {
            return Err("give --password-file FILE or --disable-ticketing".into());
        }
        (None, true) => Ticketing::Disabled,
        (Some(path), false) => Ticketing::Password(read_password(&path)?),
    };
    if qxl_socket.is_none() && vdi_socket.is_none() && input == InputSockets::default() {
        return Err("give at least one device socket (--qxl-socket, --vdi-socket, --keyboard-socket, --tablet-socket, --mouse-socket)".into());
    }
    if !vdi_ports.is_empty() && vdi_socket.is_none() {
        return Err("--vdi-port needs --vdi-socket".into());
    }
    if vdi_ports.len() + 1 > MAX_VDI_PORTS {
        return Err(format!("at most {} --vdi-port ports", MAX_VDI_PORTS - 1));
    }
    if control_socket.is_some() && qxl_socket.is_none() {
        return Err("--control-socket needs --qxl-socket".into());
    }
    let mut paths = vec![];
    paths.extend(qxl_socket.iter().map(|p| ("--qxl-socket", p)));
    paths.extend(vdi_socket.iter().map(|p| ("--vdi-socket", p)));
    paths.extend(vdi_ports.iter().map(|(_, p)| ("--vdi-port", p)));
    paths.extend(control_socket.iter().map(|p| ("--control-socket", p)));
    paths.extend(input.keyboard.iter().map(|p| ("--keyboard-socket", p)));
    paths.extend(input.tablet.iter().map(|p| ("--tablet-socket", p)));
    paths.extend(input.mouse.iter().map(|p| ("--mouse-socket", p)));
    for (i, (fa, a)) in paths.iter().enumerate() {
        if let Some((fb, _)) = paths[..i].iter().find(|(_, b)| b == a) {
            return Err(format!("{fa} and {fb} name the same path {}", a.display()));
        }
    }
    if u64::from(vgamem_mib) * 2 > u64::from(ram_mib) {
        return Err(format!(
            "--qxl-ram-mib {ram_mib} must be at least twice --qxl-vgamem-mib {vgamem_mib}"
        ));
    }
    Ok(Command::Run(Box::new(Options {
        spice_addr,
        ticketing,
        qxl_socket,
        no_mmap,
        ram_mib,
        vram_mib,
        vgamem_mib,
        secondary,
        name,
        control_socket,
        input,
        vdi_socket,
        vdi_ports,
    })))
}

fn mib(flag: &str, v: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: u32 = v
        .parse()
        .map_err(|_| format!("{flag}: '{v}' is not a number"))?;
    if !n.is_power_of_two() || n < min || n > max {
        return Err(format!(
            "{flag}: {n} must be a power of two between {min} and {max}"
        ));
    }
    Ok(n)
}

fn read_password(path: &PathBuf) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--password-file {}: {e}", path.display()))?;
    let pw = text.lines().next().unwrap_or("").to_string();
    if pw.len() > 60 {
        return Err(format!(
            "--password-file {}: password longer than 60 bytes (the Spice limit)",
            path.display()
        ));
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn minimal_command_line() {
        let Command::Run(o) = p(&["--qxl-socket", "/tmp/q", "--disable-ticketing"]).unwrap() else {
            panic!("expected run")
        };
        assert_eq!(o.spice_addr.port(), 5930);
        assert_eq!(o.ticketing, Ticketing::Disabled);
        assert_eq!((o.ram_mib, o.vram_mib, o.vgamem_mib), (64, 64, 16));
        assert_eq!(o.input, InputSockets::default());
        assert_eq!(
            o.qxl_socket.as_deref(),
            Some(std::path::Path::new("/tmp/q"))
        );
    }

    #[test]
    fn input_sockets() {
        let Command::Run(o) = p(&[
            "--qxl-socket=/q",
            "--disable-ticketing",
            "--keyboard-socket",
            "/k",
            "--tablet-socket=/t",
            "--mouse-socket",
            "/m",
        ])
        .unwrap() else {
            panic!("expected run")
        };
        assert_eq!(
            o.input.keyboard.as_deref(),
            Some(std::path::Path::new("/k"))
        );
        assert_eq!(o.input.tablet.as_deref(), Some(std::path::Path::new("/t")));
        assert_eq!(o.input.mouse.as_deref(), Some(std::path::Path::new("/m")));
        let e = p(&[
            "--qxl-socket=/q",
            "--disable-ticketing",
            "--keyboard-socket=/q",
        ])
        .unwrap_err();
        assert!(e.contains("same path"), "{e}");
    }

    #[test]
    fn vdi_port_and_its_named_ports() {
        let Command::Run(o) = p(&[
            "--disable-ticketing",
            "--vdi-socket",
            "/v",
            "--vdi-port",
            "org.qemu.guest_agent.0=/qga",
            "--vdi-port=org.spice-space.webdav.0=/dav",
        ])
        .unwrap() else {
            panic!("expected run")
        };
        assert_eq!(o.qxl_socket, None);
        assert_eq!(o.vdi_socket.as_deref(), Some(std::path::Path::new("/v")));
        assert_eq!(
            o.vdi_ports,
            [
                ("org.qemu.guest_agent.0".to_string(), PathBuf::from("/qga")),
                (
                    "org.spice-space.webdav.0".to_string(),
                    PathBuf::from("/dav")
                )
            ]
        );
    }

    #[test]
    fn bad_flags_are_one_line_errors() {
        for args in [
            &["--bogus"][..],
            &["--qxl-socket", "/s"][..],
            &[
                "--qxl-socket",
                "/s",
                "--disable-ticketing",
                "--qxl-ram-mib",
                "48",
            ][..],
            &[
                "--qxl-socket",
                "/s",
                "--disable-ticketing",
                "--spice-addr",
                "x",
            ][..],
            &["--qxl-socket", "/s", "--password-file", "/nonexistent/pw"][..],
            &[
                "--qxl-socket",
                "/s",
                "--disable-ticketing",
                "--qxl-ram-mib",
                "16",
            ][..],
            &["--disable-ticketing"][..],
            &["--disable-ticketing", "--vdi-port", "a=/x"][..],
            &[
                "--disable-ticketing",
                "--vdi-socket=/v",
                "--vdi-port",
                "com.redhat.spice.0=/x",
            ][..],
            &[
                "--disable-ticketing",
                "--vdi-socket=/v",
                "--vdi-port",
                "noeq",
            ][..],
            &["--disable-ticketing", "--vdi-socket=/v", "--vdi-port=a=/v"][..],
            &[
                "--disable-ticketing",
                "--vdi-socket=/v",
                "--control-socket=/c",
            ][..],
        ] {
            let e = p(args).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn password_file_first_line() {
        let dir = std::env::temp_dir().join(format!("sb-cli-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\nignored\n").unwrap();
        let Command::Run(o) =
            p(&["--qxl-socket=/s", "--password-file", dir.to_str().unwrap()]).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.ticketing, Ticketing::Password("s3cret".into()));
        let _ = std::fs::remove_file(dir);
    }
}

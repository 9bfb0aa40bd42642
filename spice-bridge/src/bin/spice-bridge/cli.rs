//! Command line of the `spice-bridge` daemon, on clap. Bad flags and unreadable files are
//! reported and the process exits with status 2.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Parser};
use spice_bridge::server::{
    ConnectionLimits, ImageCompression, JpegWan, StreamingVideo, VideoCodec,
};
use spice_bridge::tls::{ChannelSecurity, Security};

/// Name of the VDI port that carries the Spice agent.
pub const AGENT_PORT: &str = "com.redhat.spice.0";
/// Most ports of the VDI port, the agent's included (`vdi_port::console::MAX_PORTS`).
pub const MAX_VDI_PORTS: usize = vdi_port::console::MAX_PORTS;

const AFTER_HELP: &str = "\
At least one device socket (--qxl-socket, --vdi-socket or an input socket) is needed; without
--qxl-socket clients get no display, only the agent and the input devices.

Environment:
  RUST_LOG  log filter for the stderr log (default \"info\")

Connection limits (what an idle or slow connection flood can hold):
  A connection must finish the Spice link stage (header, link message, ticket) within
  --link-timeout. At most --max-pending-connections connections may be in the link stage;
  accepting one more closes the OLDEST of them, so idle sockets are evicted rather than new
  clients refused. Linked channels have their own limit, --max-linked-channels (a client
  session uses 4). Counters: the control socket's \"stats\" command.

Signals:
  SIGINT/SIGTERM  shut down cleanly and remove the sockets";

/// The flags as clap parses them; [`parse`] checks what spans flags and builds [`Options`].
#[derive(Parser, Debug)]
#[command(
    name = "spice-bridge",
    version,
    about = "Serves an emulated QXL display, virtio-input devices and the VDI port to a VMM \
             (vfio-user, vhost-user) and the guest's screen to Spice clients (remote-viewer, \
             spicy, GNOME Boxes).",
    after_help = AFTER_HELP,
    override_usage = "spice-bridge (--password-file FILE | --disable-ticketing) DEVICE-SOCKET... [OPTIONS]",
    group(ArgGroup::new("device").required(true).multiple(true)
        .args(["qxl_socket", "vdi_socket", "keyboard_socket", "tablet_socket", "mouse_socket"])),
    group(ArgGroup::new("auth").required(true).args(["password_file", "disable_ticketing"])),
)]
struct Args {
    /// Where Spice clients connect.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:5930")]
    spice_addr: SocketAddr,
    /// Spice ticket (password): the first line of FILE (at most 60 bytes).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Accept clients without a password.
    #[arg(long)]
    disable_ticketing: bool,
    /// A TLS port for Spice clients (QEMU's tls-port), beside --spice-addr.
    #[arg(long, value_name = "ADDR:PORT", requires = "x509_dir")]
    tls_addr: Option<SocketAddr>,
    /// Certificates of the TLS port, laid out as QEMU's x509-dir: ca-cert.pem,
    /// server-cert.pem, server-key.pem.
    #[arg(long, value_name = "DIR", requires = "tls_addr")]
    x509_dir: Option<PathBuf>,
    /// A channel that must use the TLS port (repeatable): main, display, inputs, cursor,
    /// playback, record, smartcard, usbredir, port, webdav, or default (every channel not
    /// named otherwise). On the plain port it is refused with NEED_SECURED and spice-gtk
    /// reconnects it over TLS.
    #[arg(long, value_name = "CHANNEL", requires = "tls_addr")]
    tls_channel: Vec<String>,
    /// A channel that must use the plain port (repeatable; names as --tls-channel).
    #[arg(long, value_name = "CHANNEL")]
    plaintext_channel: Vec<String>,
    /// vfio-user socket of the QXL display device (created; removed on exit).
    #[arg(long, value_name = "PATH")]
    qxl_socket: Option<PathBuf>,
    /// Offer every BAR trapped (no mmap): the fast mode under QEMU TCG.
    #[arg(long = "qxl-no-mmap")]
    no_mmap: bool,
    /// Size of the QXL RAM BAR (BAR0) in MiB, a power of two.
    #[arg(long = "qxl-ram-mib", value_name = "N", default_value_t = 64, value_parser = ram_mib)]
    ram_mib: u32,
    /// Size of the QXL VRAM BAR (BAR1) in MiB, a power of two.
    #[arg(long = "qxl-vram-mib", value_name = "N", default_value_t = 64, value_parser = vram_mib)]
    vram_mib: u32,
    /// Surface-0 / VGA framebuffer area in MiB, a power of two.
    #[arg(long = "qxl-vgamem-mib", value_name = "N", default_value_t = 16, value_parser = vgamem_mib)]
    vgamem_mib: u32,
    /// Present class 0x0380 (secondary display) instead of VGA 0x0300.
    #[arg(long = "qxl-secondary")]
    secondary: bool,
    /// vhost-user socket of a virtio-input keyboard (QEMU: -device vhost-user-input-pci; guest
    /// RAM must be shared memory).
    #[arg(long, value_name = "PATH")]
    keyboard_socket: Option<PathBuf>,
    /// vhost-user socket of a virtio-input tablet (absolute pointer): client mouse mode is
    /// offered while the guest's driver runs it.
    #[arg(long, value_name = "PATH")]
    tablet_socket: Option<PathBuf>,
    /// vhost-user socket of a virtio-input relative mouse (server mouse mode).
    #[arg(long, value_name = "PATH")]
    mouse_socket: Option<PathBuf>,
    /// vhost-user socket of the VDI port: a virtio-console (id 3) with MULTIPORT whose port 1
    /// is com.redhat.spice.0, the Spice agent channel (clipboard, resolution, client mouse
    /// through spice-vdagent). QEMU 11: vhost-user-test-device-pci with virtio-id=3,
    /// num_vqs=2*(PORTS+2), config_size=12 (PORTS = 1 + the --vdi-port count; shared guest
    /// RAM).
    #[arg(long, value_name = "PATH")]
    vdi_socket: Option<PathBuf>,
    /// A further named port of the VDI port (repeatable; ids 2, 3, ... in order), e.g.
    /// org.qemu.guest_agent.0=/run/qga.sock: the daemon listens on the Unix socket PATH, one
    /// peer at a time, and passes bytes both ways; the guest sees the host side open while a
    /// peer is connected.
    #[arg(long = "vdi-port", value_name = "NAME=PATH", requires = "vdi_socket", value_parser = named_port)]
    vdi_ports: Vec<(String, PathBuf)>,
    /// Line-based control socket ("monitors WxH[+X+Y] ...", "status").
    #[arg(long, value_name = "PATH", requires = "qxl_socket")]
    control_socket: Option<PathBuf>,
    /// VM name shown by clients.
    #[arg(long, default_value = "spice-bridge")]
    name: String,
    /// Seconds a Spice connection may take from accept to a completed link (ticket
    /// included); slower connections are closed.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    link_timeout: u64,
    /// Spice connections kept in the link stage (not yet authenticated) at once; when full,
    /// the oldest is closed to admit a new one.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::DEFAULT_MAX_PENDING as u64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    max_pending_connections: u64,
    /// Linked Spice channels kept at once (a client session uses 4); links beyond it are
    /// refused with a link error.
    #[arg(long, value_name = "N", default_value_t = ConnectionLimits::DEFAULT_MAX_LINKED as u64,
          value_parser = clap::value_parser!(u64).range(4..=4096))]
    max_linked_channels: u64,
    /// Image compression, as QEMU's -spice image-compression names it: off, auto_glz
    /// (QUIC for photo-like pictures, GLZ for the others to a client with a GLZ window, LZ
    /// otherwise), auto_lz (QUIC or LZ), quic, glz (GLZ, else LZ), lz, lz4 (LZ for a client
    /// without LZ4). With auto_*, glz, lz and lz4, pictures of at most 256 colours go as
    /// LZ_PLT to clients that decode it (spice-gtk). Default auto_glz, as QEMU's.
    #[arg(long, value_name = "MODE", default_value = "auto_glz", value_parser = image_compression)]
    image_compression: ImageCompression,
    /// Lossy JPEG (quality 85) instead of QUIC for photo-like pictures, as QEMU's -spice
    /// jpeg-wan-compression: always, never, or auto (only to a client whose link the main
    /// channel's network test finds under 10 Mbit/s, as QEMU).
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = wan_compression)]
    jpeg_wan_compression: JpegWan,
    /// GLZ pictures deflated with zlib on top (ZLIB_GLZ_RGB), where smaller, as QEMU's -spice
    /// zlib-glz-wan-compression: always, never, or auto (on a link under 10 Mbit/s).
    #[arg(long, value_name = "WHEN", default_value = "auto", value_parser = wan_compression)]
    zlib_glz_wan_compression: JpegWan,
    /// Video streams, as QEMU's -spice streaming-video: filter (areas redrawn at video rate
    /// with photo-like content go as MJPEG, lossy, their last frame resent losslessly when they
    /// stop), all (any content redrawn at video rate), off (every picture an image).
    #[arg(long, value_name = "MODE", default_value = "filter", value_parser = streaming_video)]
    streaming_video: StreamingVideo,
    /// Stream encoders and codecs to use, in order, as QEMU's -spice video-codecs:
    /// "encoder:codec;..." with encoder spice, gstreamer or vpx and codec mjpeg, vp8, h264, vp9
    /// or h265. This daemon encodes MJPEG (any encoder name) and VP8 (gstreamer:vp8 or vpx:vp8,
    /// both libvpx here); a stream uses the first codec the client decodes, after the client's
    /// own preference. Other entries are skipped with a warning, as spice-server skips
    /// encoders it lacks. An empty list turns streams off.
    #[arg(long, value_name = "LIST", default_value = "spice:mjpeg", value_parser = video_codecs)]
    video_codecs: VideoCodecs,
}

/// The parsed --video-codecs list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VideoCodecs {
    /// The codecs this daemon encodes, in the list's order, each once.
    pub codecs: Vec<VideoCodec>,
    /// Entries naming codecs this daemon does not encode (`encoder:codec`).
    pub unsupported: Vec<String>,
}

fn video_codecs(v: &str) -> Result<VideoCodecs, String> {
    let mut out = VideoCodecs {
        codecs: Vec::new(),
        unsupported: Vec::new(),
    };
    for entry in v.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((encoder, codec)) = entry.split_once(':') else {
            return Err(format!("'{entry}' is not encoder:codec"));
        };
        if !matches!(encoder, "spice" | "gstreamer" | "vpx") {
            return Err(format!(
                "unknown video encoder '{encoder}' (spice, gstreamer or vpx)"
            ));
        }
        let c = match codec {
            "mjpeg" => VideoCodec::Mjpeg,
            "vp8" => VideoCodec::Vp8,
            "h264" | "vp9" | "h265" => {
                out.unsupported.push(entry.to_string());
                continue;
            }
            _ => {
                return Err(format!(
                    "unknown video codec '{codec}' (mjpeg, vp8, h264, vp9, h265)"
                ))
            }
        };
        if !out.codecs.contains(&c) {
            out.codecs.push(c);
        }
    }
    Ok(out)
}

fn streaming_video(v: &str) -> Result<StreamingVideo, String> {
    match v {
        "off" => Ok(StreamingVideo::Off),
        "filter" => Ok(StreamingVideo::Filter),
        "all" => Ok(StreamingVideo::All),
        _ => Err(format!("'{v}' is not one of off, all, filter")),
    }
}

fn wan_compression(v: &str) -> Result<JpegWan, String> {
    match v {
        "auto" => Ok(JpegWan::Auto),
        "never" => Ok(JpegWan::Never),
        "always" => Ok(JpegWan::Always),
        _ => Err(format!("'{v}' is not one of auto, never, always")),
    }
}

fn image_compression(v: &str) -> Result<ImageCompression, String> {
    Ok(match v {
        "off" => ImageCompression::Off,
        "auto_glz" => ImageCompression::Auto,
        "auto_lz" => ImageCompression::AutoLz,
        "quic" => ImageCompression::Quic,
        "lz" => ImageCompression::Lz,
        "lz4" => ImageCompression::Lz4,
        "glz" => ImageCompression::Glz,
        _ => {
            return Err(format!(
                "'{v}' is not one of off, auto_glz, auto_lz, quic, glz, lz, lz4"
            ))
        }
    })
}

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
    /// The TLS port and its x509 directory.
    pub tls: Option<(SocketAddr, PathBuf)>,
    /// Which channels must use TLS or plain.
    pub channel_security: ChannelSecurity,
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
    /// Link deadline and connection limits of the Spice server.
    pub limits: ConnectionLimits,
    /// Image compression (--image-compression).
    pub compression: ImageCompression,
    /// Lossy JPEG (--jpeg-wan-compression).
    pub jpeg_wan: JpegWan,
    /// zlib over GLZ (--zlib-glz-wan-compression).
    pub zlib_glz_wan: JpegWan,
    /// Video streams (--streaming-video; off when --video-codecs names no codec it encodes).
    pub streaming_video: StreamingVideo,
    /// --video-codecs.
    pub video_codecs: VideoCodecs,
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

/// Why the command line gives no [`Options`].
#[derive(Debug)]
pub enum CliError {
    /// What clap reports, `--help` and `--version` included: print it with `exit()`.
    Clap(clap::Error),
    /// A check across flags or a file failed: one line.
    Invalid(String),
}

/// One line, as daemons log: clap's first paragraph without its "error: " prefix and its usage
/// block, folded.
impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Clap(e) => {
                let text = e.to_string();
                let first = text.split("\n\n").next().unwrap_or("");
                let line: Vec<&str> = first.lines().map(str::trim).collect();
                let line = line.join(" ");
                write!(
                    f,
                    "{} (see --help)",
                    line.strip_prefix("error: ").unwrap_or(&line)
                )
            }
            CliError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Parses `args` (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, CliError> {
    let a = Args::try_parse_from(std::iter::once("spice-bridge".to_string()).chain(args))
        .map_err(CliError::Clap)?;
    let invalid = |m: String| Err(CliError::Invalid(m));
    let ticketing = match a.password_file {
        Some(path) => Ticketing::Password(read_password(&path).map_err(CliError::Invalid)?),
        None => Ticketing::Disabled,
    };
    for (i, (name, _)) in a.vdi_ports.iter().enumerate() {
        if name == AGENT_PORT || a.vdi_ports[..i].iter().any(|(n, _)| n == name) {
            return invalid(format!("--vdi-port: port name '{name}' used twice"));
        }
    }
    if a.vdi_ports.len() + 1 > MAX_VDI_PORTS {
        return invalid(format!("at most {} --vdi-port ports", MAX_VDI_PORTS - 1));
    }
    let input = InputSockets {
        keyboard: a.keyboard_socket,
        tablet: a.tablet_socket,
        mouse: a.mouse_socket,
    };
    let mut paths = vec![];
    paths.extend(a.qxl_socket.iter().map(|p| ("--qxl-socket", p)));
    paths.extend(a.vdi_socket.iter().map(|p| ("--vdi-socket", p)));
    paths.extend(a.vdi_ports.iter().map(|(_, p)| ("--vdi-port", p)));
    paths.extend(a.control_socket.iter().map(|p| ("--control-socket", p)));
    paths.extend(input.keyboard.iter().map(|p| ("--keyboard-socket", p)));
    paths.extend(input.tablet.iter().map(|p| ("--tablet-socket", p)));
    paths.extend(input.mouse.iter().map(|p| ("--mouse-socket", p)));
    for (i, (fa, pa)) in paths.iter().enumerate() {
        if let Some((fb, _)) = paths[..i].iter().find(|(_, pb)| pb == pa) {
            return invalid(format!("{fa} and {fb} name the same path {}", pa.display()));
        }
    }
    let mut channel_security = ChannelSecurity::default();
    for (flag, names, sec) in [
        ("--plaintext-channel", &a.plaintext_channel, Security::Plain),
        ("--tls-channel", &a.tls_channel, Security::Secure),
    ] {
        for n in names {
            channel_security
                .set(n, sec)
                .map_err(|e| CliError::Invalid(format!("{flag}: {e}")))?;
        }
    }
    if let Some(n) = a
        .tls_channel
        .iter()
        .find(|n| a.plaintext_channel.contains(n))
    {
        return invalid(format!(
            "channel '{n}' named by both --tls-channel and --plaintext-channel"
        ));
    }
    // Read the certificates now, so a bad x509 dir is a command-line error (exit 2) like an
    // unreadable --password-file; the daemon loads them again when it starts the server.
    if let Some(dir) = &a.x509_dir {
        if let Err(e) = spice_bridge::tls::TlsConfig::from_x509_dir(dir) {
            return invalid(format!("--x509-dir {}: {e}", dir.display()));
        }
    }
    if u64::from(a.vgamem_mib) * 2 > u64::from(a.ram_mib) {
        return invalid(format!(
            "--qxl-ram-mib {} must be at least twice --qxl-vgamem-mib {}",
            a.ram_mib, a.vgamem_mib
        ));
    }
    Ok(Options {
        spice_addr: a.spice_addr,
        tls: a.tls_addr.zip(a.x509_dir),
        channel_security,
        ticketing,
        qxl_socket: a.qxl_socket,
        no_mmap: a.no_mmap,
        ram_mib: a.ram_mib,
        vram_mib: a.vram_mib,
        vgamem_mib: a.vgamem_mib,
        secondary: a.secondary,
        name: a.name,
        control_socket: a.control_socket,
        input,
        vdi_socket: a.vdi_socket,
        vdi_ports: a.vdi_ports,
        limits: ConnectionLimits {
            link_timeout: std::time::Duration::from_secs(a.link_timeout),
            max_pending: a.max_pending_connections as usize,
            max_linked: a.max_linked_channels as usize,
        },
        compression: a.image_compression,
        jpeg_wan: a.jpeg_wan_compression,
        zlib_glz_wan: a.zlib_glz_wan_compression,
        streaming_video: if a.video_codecs.codecs.is_empty() {
            StreamingVideo::Off
        } else {
            a.streaming_video
        },
        video_codecs: a.video_codecs,
    })
}

fn mib(v: &str, min: u32, max: u32) -> Result<u32, String> {
    let n: u32 = v.parse().map_err(|_| format!("'{v}' is not a number"))?;
    if !n.is_power_of_two() || n < min || n > max {
        return Err(format!(
            "{n} must be a power of two between {min} and {max}"
        ));
    }
    Ok(n)
}

fn ram_mib(v: &str) -> Result<u32, String> {
    mib(v, 2, 2048)
}

fn vram_mib(v: &str) -> Result<u32, String> {
    mib(v, 1, 2048)
}

fn vgamem_mib(v: &str) -> Result<u32, String> {
    mib(v, 8, 256)
}

/// `NAME=PATH` of `--vdi-port`.
fn named_port(v: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = v
        .split_once('=')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty())
        .ok_or_else(|| format!("'{v}' is not NAME=PATH"))?;
    if name.len() > 255 || name.contains(['/', '\0']) {
        return Err(format!("bad port name '{name}'"));
    }
    Ok((name.to_string(), PathBuf::from(path)))
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

    fn p(args: &[&str]) -> Result<Options, CliError> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn minimal_command_line() {
        let o = p(&["--qxl-socket", "/tmp/q", "--disable-ticketing"]).unwrap();
        assert_eq!(o.spice_addr.port(), 5930);
        assert_eq!(o.ticketing, Ticketing::Disabled);
        assert_eq!((o.ram_mib, o.vram_mib, o.vgamem_mib), (64, 64, 16));
        assert_eq!(o.input, InputSockets::default());
        assert_eq!(o.limits, ConnectionLimits::default());
        assert_eq!(o.compression, ImageCompression::Auto);
        assert_eq!(o.jpeg_wan, JpegWan::Auto);
        assert_eq!(o.streaming_video, StreamingVideo::Filter);
        assert_eq!(
            o.qxl_socket.as_deref(),
            Some(std::path::Path::new("/tmp/q"))
        );
    }

    #[test]
    fn video_codecs_take_qemus_list() {
        let codecs = |list: &str| {
            p(&[
                "--qxl-socket=/q",
                "--disable-ticketing",
                &format!("--video-codecs={list}"),
            ])
        };
        let o = p(&["--qxl-socket=/q", "--disable-ticketing"]).unwrap();
        assert_eq!(
            o.video_codecs.codecs,
            [VideoCodec::Mjpeg],
            "QEMU's first choice"
        );
        let o = codecs("gstreamer:h264;vpx:vp8;spice:mjpeg;gstreamer:vp8;").unwrap();
        assert_eq!(o.video_codecs.codecs, [VideoCodec::Vp8, VideoCodec::Mjpeg]);
        assert_eq!(o.video_codecs.unsupported, ["gstreamer:h264"]);
        assert_eq!(o.streaming_video, StreamingVideo::Filter);
        // nothing this daemon encodes: no streams
        let o = codecs("gstreamer:vp9").unwrap();
        assert!(o.video_codecs.codecs.is_empty());
        assert_eq!(o.streaming_video, StreamingVideo::Off);
        for bad in ["vp8", "ffmpeg:vp8", "spice:av1"] {
            assert!(codecs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_compression_takes_qemus_names() {
        // QEMU's default
        assert_eq!(
            p(&["--qxl-socket=/q", "--disable-ticketing"])
                .unwrap()
                .compression,
            ImageCompression::Auto
        );
        let base = [
            "--qxl-socket=/q",
            "--disable-ticketing",
            "--image-compression",
        ];
        for (name, want) in [
            ("off", ImageCompression::Off),
            ("auto_glz", ImageCompression::Auto),
            ("auto_lz", ImageCompression::AutoLz),
            ("glz", ImageCompression::Glz),
            ("quic", ImageCompression::Quic),
            ("lz", ImageCompression::Lz),
            ("lz4", ImageCompression::Lz4),
        ] {
            let mut a = base.to_vec();
            a.push(name);
            assert_eq!(p(&a).unwrap().compression, want, "{name}");
        }
        for (when, want) in [
            ("auto", JpegWan::Auto),
            ("never", JpegWan::Never),
            ("always", JpegWan::Always),
        ] {
            let a = [
                "--qxl-socket=/q",
                "--disable-ticketing",
                "--jpeg-wan-compression",
                when,
                "--zlib-glz-wan-compression",
                when,
            ];
            let o = p(&a).unwrap();
            assert_eq!((o.jpeg_wan, o.zlib_glz_wan), (want, want), "{when}");
        }
        for flag in ["--jpeg-wan-compression=on", "--zlib-glz-wan-compression=1"] {
            assert!(p(&["--qxl-socket=/q", "--disable-ticketing", flag]).is_err());
        }
        for bad in ["zlib_glz", "jpeg", ""] {
            let mut a = base.to_vec();
            a.push(bad);
            assert!(p(&a).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn input_sockets() {
        let o = p(&[
            "--qxl-socket=/q",
            "--disable-ticketing",
            "--keyboard-socket",
            "/k",
            "--tablet-socket=/t",
            "--mouse-socket",
            "/m",
        ])
        .unwrap();
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
        .unwrap_err()
        .to_string();
        assert!(e.contains("same path"), "{e}");
    }

    #[test]
    fn vdi_port_and_its_named_ports() {
        let o = p(&[
            "--disable-ticketing",
            "--vdi-socket",
            "/v",
            "--vdi-port",
            "org.qemu.guest_agent.0=/qga",
            "--vdi-port=org.spice-space.webdav.0=/dav",
        ])
        .unwrap();
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
    fn connection_limits() {
        let o = p(&[
            "--qxl-socket=/q",
            "--disable-ticketing",
            "--link-timeout",
            "3",
            "--max-pending-connections=100",
            "--max-linked-channels",
            "8",
        ])
        .unwrap();
        assert_eq!(
            o.limits,
            ConnectionLimits {
                link_timeout: std::time::Duration::from_secs(3),
                max_pending: 100,
                max_linked: 8,
            }
        );
        for bad in [
            "--link-timeout=0",
            "--link-timeout=x",
            "--max-pending-connections=0",
            "--max-linked-channels=2",
        ] {
            assert!(
                p(&["--qxl-socket=/q", "--disable-ticketing", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_flags_are_errors() {
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
            match p(args) {
                Err(CliError::Invalid(m)) => assert!(!m.contains('\n'), "{m}"),
                Err(CliError::Clap(e)) => assert!(
                    !matches!(
                        e.kind(),
                        clap::error::ErrorKind::DisplayHelp
                            | clap::error::ErrorKind::DisplayVersion
                    ),
                    "{args:?}"
                ),
                Ok(o) => panic!("{args:?} accepted: {o:?}"),
            }
        }
    }

    #[test]
    fn help_and_version() {
        for (flag, kind) in [
            ("--help", clap::error::ErrorKind::DisplayHelp),
            ("-V", clap::error::ErrorKind::DisplayVersion),
        ] {
            let Err(CliError::Clap(e)) = p(&[flag]) else {
                panic!("{flag}")
            };
            assert_eq!(e.kind(), kind);
        }
        let Err(CliError::Clap(e)) = p(&["--help"]) else {
            panic!()
        };
        let help = e.to_string();
        for flag in [
            "--vdi-socket",
            "--vdi-port",
            "--tablet-socket",
            "RUST_LOG",
            "--link-timeout",
            "--max-pending-connections",
            "--max-linked-channels",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }

    #[test]
    fn password_file_first_line() {
        let dir = std::env::temp_dir().join(format!("sb-cli-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\nignored\n").unwrap();
        let o = p(&["--qxl-socket=/s", "--password-file", dir.to_str().unwrap()]).unwrap();
        assert_eq!(o.ticketing, Ticketing::Password("s3cret".into()));
        let _ = std::fs::remove_file(dir);
    }
}

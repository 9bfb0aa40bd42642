//! The daemon's control socket (`--control-socket PATH`): one text command per line, one
//! reply line (`ok ...` or `error ...`). It is the host-side API for what a Spice client would
//! otherwise ask through its agent, so tests and management tools can drive it:
//!
//! - `monitors WxH[+X+Y] [WxH[+X+Y] ...]`: the client's monitor layout. Written into the QXL
//!   ROM with its CRC; CLIENT_MONITORS_CONFIG is raised when the guest unmasked it, after
//!   which the guest driver lists the new preferred mode (reference qxl-device.md §3).
//! - `status`: mode, primary surface size, whether a Spice client is connected.
//! - `stats`: the Spice server's counters as `key=value` pairs: connections, links_ok,
//!   links_refused, link_timeouts, pending_evicted, linked_full, accept_errors, pending (in
//!   the link stage now), linked (channels now), protocol_errors, sessions,
//!   sessions_replaced, and for TLS tls_connections, tls_failed, wrong_port (links refused
//!   with NEED_SECURED/NEED_UNSECURED), and for WebSocket (spice-html5) websocket_connections,
//!   websocket_refused.
//! - `set_password PASSWORD [connected=keep|disconnect|fail]`: the Spice password from now on
//!   (QEMU's `set_password spice`), enabling ticketing; `disconnect` drops the connected
//!   client, `fail` refuses while one is connected. The password is never logged.
//! - `expire_password now|never|+SECONDS|UNIX-TIME`: after that instant no client can log in
//!   with the password (QEMU's `expire_password spice`); a connected client stays.
//!
//! Lines are bounded (4 KiB); bad lines get an `error` reply and a log line.

use qxl_device::{ClientMonitor, WorkerHandle};
use spice_bridge::server::{StatsSnapshot, WhenConnected};
use spice_bridge::ServerHandle;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::{info, warn};

const MAX_LINE: u64 = 4096;

/// Parses `WxH[+X+Y]`.
fn parse_head(s: &str) -> Result<ClientMonitor, String> {
    let (size, pos) = match s.find('+') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (w, h) = size
        .split_once('x')
        .ok_or_else(|| format!("'{s}': expected WxH[+X+Y]"))?;
    let num = |v: &str| -> Result<u32, String> {
        v.parse::<u32>()
            .map_err(|_| format!("'{s}': '{v}' is not a number"))
    };
    let (width, height) = (num(w)?, num(h)?);
    if width == 0 || height == 0 || width > 16384 || height > 16384 {
        return Err(format!("'{s}': size must be 1..=16384"));
    }
    let (x, y) = match pos {
        Some(p) => {
            let (x, y) = p
                .split_once('+')
                .ok_or_else(|| format!("'{s}': expected +X+Y"))?;
            (num(x)?, num(y)?)
        }
        None => (0, 0),
    };
    Ok(ClientMonitor {
        x,
        y,
        width,
        height,
    })
}

/// The `stats` reply.
fn stats_line(s: &StatsSnapshot) -> String {
    format!(
        "ok connections={} links_ok={} links_refused={} link_timeouts={} pending_evicted={} \
         linked_full={} accept_errors={} tls_connections={} tls_failed={} wrong_port={} \
         websocket_connections={} websocket_refused={} pending={} linked={} protocol_errors={} \
         sessions={} sessions_replaced={} images_sent={} palette_images={} jpeg_images={} glz_images={} streams={} vp8_streams={} stream_frames={} \
         stream_reports={} \
         zlib_glz_images={} draws_superseded={} net_tests={} low_bandwidth_links={} display_bytes={}",
        s.connections,
        s.links_ok,
        s.links_refused,
        s.link_timeouts,
        s.pending_evicted,
        s.linked_full,
        s.accept_errors,
        s.tls_connections,
        s.tls_failed,
        s.wrong_port,
        s.websocket_connections,
        s.websocket_refused,
        s.pending,
        s.linked,
        s.protocol_errors,
        s.sessions,
        s.sessions_replaced,
        s.images_sent,
        s.palette_images,
        s.jpeg_images,
        s.glz_images,
        s.streams,
        s.vp8_streams,
        s.stream_frames,
        s.stream_reports,
        s.zlib_glz_images,
        s.draws_superseded,
        s.net_tests,
        s.low_bandwidth_links,
        s.display_bytes
    )
}

/// `set_password PASSWORD [connected=keep|disconnect|fail]`: the password is the rest of the
/// line (inner spaces kept), as QEMU's `set_password spice PASSWORD [connected=...]`.
fn set_password(server: &ServerHandle, rest: &str) -> String {
    let (password, connected) = match rest.rsplit_once(' ') {
        Some((p, opt)) if opt.starts_with("connected=") => (p.trim_end(), Some(opt)),
        _ => (rest, None),
    };
    let connected = match connected.map(|c| &c["connected=".len()..]) {
        None | Some("keep") => WhenConnected::Keep,
        Some("disconnect") => WhenConnected::Disconnect,
        Some("fail") => WhenConnected::Fail,
        Some(other) => {
            return format!("error set_password: connected={other} (keep, disconnect or fail)")
        }
    };
    if password.is_empty() {
        return "error set_password: give a password".to_string();
    }
    match server.set_password(password, connected) {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error set_password: {e}"),
    }
}

/// When `expire_password` takes effect: `now`, `never`, `+SECS` from now or a UNIX time in
/// seconds (as QEMU's `expire_password spice TIME`). `Ok(None)` is never.
fn parse_expiry(v: &str, now: SystemTime) -> Result<Option<SystemTime>, String> {
    let secs = |n: &str| {
        n.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("'{v}' is not now, never, +SECONDS or a UNIX time"))
    };
    match v {
        "now" => Ok(Some(now)),
        "never" => Ok(None),
        _ => match v.strip_prefix('+') {
            Some(rel) => now.checked_add(secs(rel)?),
            None => SystemTime::UNIX_EPOCH.checked_add(secs(v)?),
        }
        .map(Some)
        .ok_or_else(|| format!("'{v}' is too far in the future")),
    }
}

/// Executes one command line; returns the reply line (without newline).
pub fn execute(qxl: &WorkerHandle, server: &ServerHandle, line: &str) -> String {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("monitors") => {
            let heads: Result<Vec<_>, _> = words.map(parse_head).collect();
            match heads {
                Ok(h) if h.is_empty() || h.len() > 64 => {
                    "error monitors: give 1 to 64 heads".to_string()
                }
                Ok(h) => {
                    let raised = qxl.device().set_client_monitors(&h);
                    info!(heads = h.len(), raised, "client monitors config set");
                    format!(
                        "ok interrupt={}",
                        if raised { "raised" } else { "not-raised" }
                    )
                }
                Err(e) => format!("error monitors: {e}"),
            }
        }
        Some("status") => {
            let dev = qxl.device();
            let primary = dev
                .primary()
                .map(|p| format!("{}x{}", p.width, p.height))
                .unwrap_or_else(|| "none".into());
            format!("ok mode={:?} primary={primary}", dev.mode())
        }
        Some("stats") => stats_line(&server.stats()),
        Some("set_password") => {
            let rest = line.trim_start()["set_password".len()..].trim();
            set_password(server, rest)
        }
        Some("expire_password") => match (words.next(), words.next()) {
            (Some(v), None) => match parse_expiry(v, SystemTime::now()) {
                Ok(when) => match server.expire_password(when) {
                    Ok(()) => "ok".to_string(),
                    Err(e) => format!("error expire_password: {e}"),
                },
                Err(e) => format!("error expire_password: {e}"),
            },
            _ => "error expire_password: give one of now, never, +SECONDS, UNIX-TIME".to_string(),
        },
        Some(other) => format!(
            "error unknown command '{other}' \
             (monitors, status, stats, set_password, expire_password)"
        ),
        None => "error empty line".to_string(),
    }
}

fn serve_conn(qxl: &WorkerHandle, server: &ServerHandle, conn: UnixStream) -> std::io::Result<()> {
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        let n = (&mut reader).take(MAX_LINE).read_line(&mut line)?;
        if n == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') && n as u64 >= MAX_LINE {
            warn!("control socket: line longer than {MAX_LINE} bytes; closing");
            writeln!(out, "error line too long")?;
            return Ok(());
        }
        let reply = execute(qxl, server, line.trim());
        if reply.starts_with("error") {
            // never the line itself: it may hold a password
            let command = line.split_whitespace().next().unwrap_or("");
            warn!("control socket: {command}: {reply}");
        }
        writeln!(out, "{reply}")?;
    }
}

/// Serves `listener` forever (one connection at a time is enough for a control socket).
pub fn serve(listener: UnixListener, qxl: WorkerHandle, server: Arc<ServerHandle>) {
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                if let Err(e) = serve_conn(&qxl, &server, c) {
                    warn!("control socket connection: {e}");
                }
            }
            Err(e) => {
                // e.g. EMFILE while a connection flood holds every descriptor: pause rather
                // than spin on the queued connection
                warn!("control socket accept: {e}; retrying in 100 ms");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_line_names_every_counter() {
        let line = stats_line(&StatsSnapshot {
            link_timeouts: 3,
            pending_evicted: 4,
            websocket_connections: 5,
            websocket_refused: 6,
            palette_images: 7,
            ..Default::default()
        });
        assert!(
            line.contains(" websocket_connections=5 websocket_refused=6 "),
            "{line}"
        );
        assert!(line.starts_with("ok connections=0 "), "{line}");
        assert!(
            line.contains(" link_timeouts=3 pending_evicted=4 "),
            "{line}"
        );
        assert!(line.contains(" palette_images=7 "), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn expiry_parses_like_qemu() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(parse_expiry("now", now), Ok(Some(now)));
        assert_eq!(parse_expiry("never", now), Ok(None));
        assert_eq!(
            parse_expiry("+30", now),
            Ok(Some(now + Duration::from_secs(30)))
        );
        assert_eq!(
            parse_expiry("5000", now),
            Ok(Some(SystemTime::UNIX_EPOCH + Duration::from_secs(5000)))
        );
        for bad in ["", "+", "-5", "soon", "+1e3", "18446744073709551615"] {
            assert!(parse_expiry(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn heads_parse_and_bad_ones_are_refused() {
        assert_eq!(
            parse_head("1280x800").unwrap(),
            ClientMonitor {
                x: 0,
                y: 0,
                width: 1280,
                height: 800
            }
        );
        assert_eq!(
            parse_head("800x600+1280+0").unwrap(),
            ClientMonitor {
                x: 1280,
                y: 0,
                width: 800,
                height: 600
            }
        );
        for bad in [
            "",
            "x",
            "10x",
            "0x10",
            "10x10+",
            "10x10+1",
            "axb",
            "99999x10",
            "10x10+-1+0",
        ] {
            assert!(parse_head(bad).is_err(), "{bad}");
        }
    }
}

//! Resolution on X11 with RandR (`../shared/reference/agent-and-vdiport.md` §6).
//!
//! Two paths reach the guest's screen, and the agent serves both:
//!
//! - The server forwards the client's MONITORS_CONFIG to the agent (a display device that cannot
//!   take it, or QXL with an old driver): [`Randr::apply`] sets one output per client monitor
//!   to a mode of exactly that size (creating a CVT reduced-blanking mode when the output has
//!   none), at the client's positions shifted so the layout starts at 0,0.
//! - The server hands it to the QXL device: the kernel driver makes the client's size the
//!   connector's preferred mode and reports a hotplug. Desktops such as mutter then apply the
//!   preferred mode; many window managers do not (reference §9.2). [`Randr::follow_preferred`]
//!   does it, on the DRM change uevent the session agent listens for ([`watch_drm_hotplug`]).
//!
//! [`Randr::layout`] reads the monitors back (what the daemon maps the pointer with). Spice
//! display ids map to outputs through GRAPHICS_DEVICE_INFO when the server sent it (connector
//! index = output index on a single card), else by output order, as spice-vdagent falls back.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;

use tracing::{debug, info, warn};
use x11rb::connection::Connection;
use x11rb::protocol::randr::{self, ConnectionExt as _, ModeFlag, ModeInfo};
use x11rb::protocol::xproto::Window;
use x11rb::rust_connection::RustConnection;

use crate::ipc::GuestMonitor;
use crate::protocol::{DeviceDisplayInfo, MonitorConfig};

use super::display::{DeviceMap, DisplayBackend, DisplayError};

/// Why a layout could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RandrError {
    /// The X connection failed.
    #[error("X connection: {0}")]
    Connection(#[from] x11rb::errors::ConnectionError),
    /// A request failed.
    #[error("X request: {0}")]
    Reply(#[from] x11rb::errors::ReplyError),
    /// Could not connect.
    #[error("X connect: {0}")]
    Connect(#[from] x11rb::errors::ConnectError),
    /// The server has no RandR 1.2+.
    #[error("the X server has RandR {0}.{1}; 1.2 or later is needed")]
    Version(u32, u32),
    /// The layout does not fit the screen's limits (or the driver refused it).
    #[error("{0}")]
    Refused(String),
}

/// Most monitors applied (as spice-vdagent).
pub const MAX_OUTPUTS: usize = 64;

/// The RandR side of the session agent, on its own X connection.
pub struct Randr {
    conn: RustConnection,
    root: Window,
    /// Spice display id ↔ output index, from GRAPHICS_DEVICE_INFO.
    device_map: DeviceMap,
    /// Modes this agent created ("WxH" names), to delete once unused.
    created: Mutex<Vec<randr::Mode>>,
}

/// One output as RandR shows it.
#[derive(Debug, Clone)]
struct OutputState {
    id: randr::Output,
    connected: bool,
    crtc: randr::Crtc,
    crtcs: Vec<randr::Crtc>,
    modes: Vec<randr::Mode>,
    preferred: Option<randr::Mode>,
}

/// A CVT reduced-blanking (v1) mode of `width`×`height` at 60 Hz, as X names it ("WxH").
pub fn cvt_rb_mode(width: u16, height: u16) -> ModeInfo {
    const REFRESH: f64 = 60.0;
    const MIN_VBLANK_US: f64 = 460.0;
    const V_FRONT: u16 = 3;
    const MIN_V_BACK: u16 = 6;
    let (w, h) = (u32::from(width), u32::from(height));
    // vsync width by aspect ratio (CVT table)
    let vsync: u16 = if w * 3 == h * 4 {
        4
    } else if w * 9 == h * 16 {
        5
    } else if w * 10 == h * 16 {
        6
    } else if w * 4 == h * 5 || w * 9 == h * 15 {
        7
    } else {
        10
    };
    let h_period_us = (1_000_000.0 / REFRESH - MIN_VBLANK_US) / f64::from(height.max(1));
    let vbi =
        ((MIN_VBLANK_US / h_period_us) as u32 + 1).max(u32::from(V_FRONT + vsync + MIN_V_BACK));
    let vtotal = (h + vbi).min(u32::from(u16::MAX)) as u16;
    let htotal = width.saturating_add(160);
    // pixel clock in 0.25 MHz steps, rounded down
    let clock = REFRESH * f64::from(htotal) * f64::from(vtotal);
    let dot_clock = ((clock / 250_000.0).floor() * 250_000.0) as u32;
    let name = format!("{width}x{height}");
    ModeInfo {
        id: 0,
        width,
        height,
        dot_clock,
        hsync_start: width.saturating_add(48),
        hsync_end: width.saturating_add(80),
        htotal,
        hskew: 0,
        vsync_start: height.saturating_add(V_FRONT),
        vsync_end: height.saturating_add(V_FRONT + vsync),
        vtotal,
        name_len: name.len() as u16,
        mode_flags: ModeFlag::HSYNC_POSITIVE | ModeFlag::VSYNC_NEGATIVE,
    }
}

/// The client's monitors as the guest will lay them out: disabled (0×0) and trailing entries
/// dropped, at most `outputs`, sizes clamped to `max`, shifted so the top-left is 0,0.
/// Index in the result = Spice display id; `None` = that display is off.
pub fn plan(
    config: &[MonitorConfig],
    outputs: usize,
    min: (u16, u16),
    max: (u16, u16),
) -> Vec<Option<(i32, i32, u16, u16)>> {
    let n = config.len().min(outputs).min(MAX_OUTPUTS);
    let mut out: Vec<Option<(i32, i32, u16, u16)>> = config[..n]
        .iter()
        .map(|m| {
            (m.width != 0 && m.height != 0).then(|| {
                let w = m.width.clamp(u32::from(min.0), u32::from(max.0)) as u16;
                let h = m.height.clamp(u32::from(min.1), u32::from(max.1)) as u16;
                (m.x, m.y, w, h)
            })
        })
        .collect();
    while matches!(out.last(), Some(None)) {
        out.pop();
    }
    let left = out.iter().flatten().map(|m| m.0).min().unwrap_or(0);
    let top = out.iter().flatten().map(|m| m.1).min().unwrap_or(0);
    for m in out.iter_mut().flatten() {
        m.0 = m.0.saturating_sub(left);
        m.1 = m.1.saturating_sub(top);
    }
    out
}

impl Randr {
    /// Connects to the display (`None`: $DISPLAY) and checks RandR ≥ 1.2.
    pub fn connect(display: Option<&str>) -> Result<Randr, RandrError> {
        let (conn, screen) = x11rb::connect(display)?;
        let root = conn.setup().roots[screen].root;
        let v = conn.randr_query_version(1, 5)?.reply()?;
        if (v.major_version, v.minor_version) < (1, 2) {
            return Err(RandrError::Version(v.major_version, v.minor_version));
        }
        Ok(Randr {
            conn,
            root,
            device_map: DeviceMap::default(),
            created: Mutex::new(Vec::new()),
        })
    }

    /// Asks for screen and output change events on this connection (for [`Randr::wait_change`]).
    pub fn watch(&self) -> Result<(), RandrError> {
        self.conn.randr_select_input(
            self.root,
            randr::NotifyMask::SCREEN_CHANGE
                | randr::NotifyMask::CRTC_CHANGE
                | randr::NotifyMask::OUTPUT_CHANGE,
        )?;
        self.conn.flush()?;
        Ok(())
    }

    /// Blocks until the next RandR event (or any event) arrives.
    pub fn wait_change(&self) -> Result<(), RandrError> {
        self.conn.wait_for_event()?;
        // coalesce a burst
        while self.conn.poll_for_event()?.is_some() {}
        Ok(())
    }

    /// Takes GRAPHICS_DEVICE_INFO: Spice display id → connector index (= output index).
    pub fn set_device_info(&self, entries: &[DeviceDisplayInfo]) {
        self.device_map.set(entries);
    }

    fn output_of_display(&self, display: u32) -> usize {
        self.device_map.output_of(display)
    }

    fn display_of_output(&self, output: usize) -> u32 {
        self.device_map.display_of(output)
    }

    fn outputs(
        &self,
        probe: bool,
    ) -> Result<(randr::GetScreenResourcesReply, Vec<OutputState>), RandrError> {
        let res = if probe {
            self.conn.randr_get_screen_resources(self.root)?.reply()?
        } else {
            let c = self
                .conn
                .randr_get_screen_resources_current(self.root)?
                .reply()?;
            randr::GetScreenResourcesReply {
                sequence: c.sequence,
                length: c.length,
                timestamp: c.timestamp,
                config_timestamp: c.config_timestamp,
                crtcs: c.crtcs,
                outputs: c.outputs,
                modes: c.modes,
                names: c.names,
            }
        };
        let mut outs = Vec::with_capacity(res.outputs.len());
        for &o in &res.outputs {
            let i = self
                .conn
                .randr_get_output_info(o, res.config_timestamp)?
                .reply()?;
            outs.push(OutputState {
                id: o,
                connected: i.connection == randr::Connection::CONNECTED,
                crtc: i.crtc,
                preferred: (i.num_preferred > 0)
                    .then(|| i.modes.first().copied())
                    .flatten(),
                crtcs: i.crtcs,
                modes: i.modes,
            });
        }
        Ok((res, outs))
    }

    /// The monitors the guest shows now: one per output that has a CRTC.
    pub fn layout(&self) -> Result<Vec<GuestMonitor>, RandrError> {
        let (res, outs) = self.outputs(false)?;
        let mut l = Vec::new();
        for (i, o) in outs.iter().enumerate() {
            if o.crtc == 0 {
                continue;
            }
            let c = self
                .conn
                .randr_get_crtc_info(o.crtc, res.config_timestamp)?
                .reply()?;
            if c.mode == 0 || c.width == 0 {
                continue;
            }
            l.push(GuestMonitor {
                display_id: self.display_of_output(i),
                x: i32::from(c.x),
                y: i32::from(c.y),
                width: u32::from(c.width),
                height: u32::from(c.height),
            });
        }
        Ok(l)
    }

    /// Applies the client's monitors (index = Spice display id).
    pub fn apply(&self, config: &[MonitorConfig]) -> Result<(), RandrError> {
        let range = self.conn.randr_get_screen_size_range(self.root)?.reply()?;
        let (res, outs) = self.outputs(false)?;
        let planned = plan(
            config,
            outs.len(),
            (range.min_width, range.min_height),
            (range.max_width, range.max_height),
        );
        // Spice display id → output index
        let mut want: Vec<Option<(i32, i32, u16, u16)>> = vec![None; outs.len()];
        for (display, m) in planned.iter().enumerate() {
            let o = self.output_of_display(display as u32);
            if let (Some(slot), Some(m)) = (want.get_mut(o), m) {
                *slot = Some(*m);
            }
        }
        self.set_layout(&res, &outs, &want, (range.max_width, range.max_height))
    }

    /// Sets every connected output whose preferred mode is not its current one to that mode,
    /// outputs laid out left to right. Returns whether anything changed.
    pub fn follow_preferred(&self) -> Result<bool, RandrError> {
        // probe: the driver re-reads the connectors (the hotplug's new preferred mode)
        let (res, outs) = self.outputs(true)?;
        let mode_size = |id: randr::Mode| {
            res.modes
                .iter()
                .find(|m| m.id == id)
                .map(|m| (m.width, m.height))
        };
        let mut want = vec![None; outs.len()];
        let mut changed = false;
        let mut x = 0i32;
        for (i, o) in outs.iter().enumerate() {
            if !o.connected {
                continue;
            }
            let current = if o.crtc != 0 {
                let c = self
                    .conn
                    .randr_get_crtc_info(o.crtc, res.config_timestamp)?
                    .reply()?;
                (c.mode != 0).then_some(c.mode)
            } else {
                None
            };
            let Some(pref) = o.preferred.or(current) else {
                continue;
            };
            if Some(pref) != current {
                changed = true;
            }
            let Some((w, h)) = mode_size(pref) else {
                continue;
            };
            want[i] = Some((x, 0, w, h));
            x += i32::from(w);
        }
        if !changed {
            return Ok(false);
        }
        let range = self.conn.randr_get_screen_size_range(self.root)?.reply()?;
        self.set_layout(&res, &outs, &want, (range.max_width, range.max_height))?;
        Ok(true)
    }

    fn set_layout(
        &self,
        res: &randr::GetScreenResourcesReply,
        outs: &[OutputState],
        want: &[Option<(i32, i32, u16, u16)>],
        max: (u16, u16),
    ) -> Result<(), RandrError> {
        let (sw, sh) = want.iter().flatten().fold((0i32, 0i32), |(w, h), m| {
            (w.max(m.0 + i32::from(m.2)), h.max(m.1 + i32::from(m.3)))
        });
        if sw <= 0 || sh <= 0 {
            return Err(RandrError::Refused("no monitor enabled".into()));
        }
        if sw > i32::from(max.0) || sh > i32::from(max.1) {
            return Err(RandrError::Refused(format!(
                "desktop {sw}x{sh} beyond the screen's limit {}x{}",
                max.0, max.1
            )));
        }
        info!("applying {want:?} (screen {sw}x{sh})");
        // Outputs turned off, and CRTCs that would not fit the new screen, go first: the
        // screen cannot shrink under an active CRTC.
        for (o, w) in outs.iter().zip(want) {
            if o.crtc == 0 {
                continue;
            }
            let c = self
                .conn
                .randr_get_crtc_info(o.crtc, res.config_timestamp)?
                .reply()?;
            let fits = i32::from(c.x) + i32::from(c.width) <= sw
                && i32::from(c.y) + i32::from(c.height) <= sh;
            if w.is_none() || !fits {
                self.conn
                    .randr_set_crtc_config(
                        o.crtc,
                        res.timestamp,
                        res.config_timestamp,
                        0,
                        0,
                        0,
                        randr::Rotation::ROTATE0,
                        &[],
                    )?
                    .reply()?;
            }
        }
        // 96 DPI for the physical size, as X servers report by default
        let mm = |px: i32| (px as f64 * 25.4 / 96.0).round() as u32;
        self.conn
            .randr_set_screen_size(self.root, sw as u16, sh as u16, mm(sw), mm(sh))?
            .check()?;
        let mut used_crtcs: Vec<randr::Crtc> = Vec::new();
        let mut in_use: Vec<randr::Mode> = Vec::new();
        for (o, w) in outs.iter().zip(want) {
            let Some((x, y, mw, mh)) = *w else { continue };
            let mode = self.mode_for(res, o, mw, mh)?;
            in_use.push(mode);
            let crtc = if o.crtc != 0 && !used_crtcs.contains(&o.crtc) {
                o.crtc
            } else {
                let Some(&c) = o.crtcs.iter().find(|c| {
                    !used_crtcs.contains(c) && !outs.iter().any(|p| p.id != o.id && p.crtc == **c)
                }) else {
                    warn!("output {} has no free CRTC", o.id);
                    continue;
                };
                c
            };
            used_crtcs.push(crtc);
            let r = self
                .conn
                .randr_set_crtc_config(
                    crtc,
                    res.timestamp,
                    res.config_timestamp,
                    x as i16,
                    y as i16,
                    mode,
                    randr::Rotation::ROTATE0,
                    &[o.id],
                )?
                .reply()?;
            if r.status != randr::SetConfig::SUCCESS {
                return Err(RandrError::Refused(format!(
                    "SetCrtcConfig: {:?}",
                    r.status
                )));
            }
        }
        self.drop_unused_modes(outs, &in_use);
        self.conn.flush()?;
        Ok(())
    }

    /// A mode of exactly `w`×`h` that output `o` has, else a new CVT mode added to it.
    fn mode_for(
        &self,
        res: &randr::GetScreenResourcesReply,
        o: &OutputState,
        w: u16,
        h: u16,
    ) -> Result<randr::Mode, RandrError> {
        let sized = |m: &&ModeInfo| m.width == w && m.height == h;
        // prefer the output's preferred mode, then any of its modes, of that size
        let candidates: Vec<&ModeInfo> = res.modes.iter().filter(sized).collect();
        if let Some(p) = o
            .preferred
            .filter(|p| candidates.iter().any(|m| m.id == *p))
        {
            return Ok(p);
        }
        if let Some(m) = candidates.iter().find(|m| o.modes.contains(&m.id)) {
            return Ok(m.id);
        }
        let mode = match candidates.first() {
            Some(m) => m.id,
            None => {
                let info = cvt_rb_mode(w, h);
                let name = format!("{w}x{h}");
                let id = self
                    .conn
                    .randr_create_mode(self.root, info, name.as_bytes())?
                    .reply()?
                    .mode;
                self.created
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(id);
                debug!("created mode {name} ({id})");
                id
            }
        };
        self.conn.randr_add_output_mode(o.id, mode)?.check()?;
        Ok(mode)
    }

    fn drop_unused_modes(&self, outs: &[OutputState], in_use: &[randr::Mode]) {
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        created.retain(|&m| {
            if in_use.contains(&m) {
                return true;
            }
            for o in outs {
                let _ = self.conn.randr_delete_output_mode(o.id, m);
            }
            let _ = self.conn.randr_destroy_mode(m);
            false
        });
    }
}

impl DisplayBackend for Randr {
    fn name(&self) -> &'static str {
        "RandR"
    }

    fn apply(&self, config: &[MonitorConfig]) -> Result<(), DisplayError> {
        Ok(Randr::apply(self, config)?)
    }

    fn layout(&self) -> Result<Vec<GuestMonitor>, DisplayError> {
        Ok(Randr::layout(self)?)
    }

    fn set_device_info(&self, entries: &[DeviceDisplayInfo]) {
        Randr::set_device_info(self, entries)
    }
}

/// Waits for DRM hotplug uevents (`change` on subsystem drm with `HOTPLUG=1`) from the kernel
/// and calls `on_hotplug` for each. Unprivileged processes may listen to kernel uevents.
/// Returns only on a socket error.
pub fn watch_drm_hotplug(mut on_hotplug: impl FnMut()) -> io::Result<()> {
    // SAFETY: plain socket(2); the fd is owned right after.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_KOBJECT_UEVENT,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: zeroed sockaddr_nl is a valid value; fields set below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as u16;
    addr.nl_groups = 1; // the kernel's uevent multicast group
                        // SAFETY: addr is a sockaddr_nl of the size passed.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if is_drm_hotplug(&buf[..n as usize]) {
            on_hotplug();
        }
    }
}

/// Whether a kernel uevent datagram (`ACTION@DEVPATH\0KEY=VALUE\0...`) is a DRM hotplug.
pub fn is_drm_hotplug(msg: &[u8]) -> bool {
    let mut fields = msg.split(|&b| b == 0);
    let Some(head) = fields.next() else {
        return false;
    };
    if !head.starts_with(b"change@") {
        return false;
    }
    let (mut drm, mut hotplug) = (false, false);
    for f in fields {
        drm |= f == b"SUBSYSTEM=drm";
        hotplug |= f == b"HOTPLUG=1";
    }
    drm && hotplug
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mon(width: u32, height: u32, x: i32, y: i32) -> MonitorConfig {
        MonitorConfig {
            width,
            height,
            depth: 32,
            x,
            y,
            mm: None,
        }
    }

    #[test]
    fn plans_shift_clamp_and_drop_disabled() {
        let p = plan(
            &[
                mon(800, 600, 100, 50),
                mon(0, 0, 0, 0),
                mon(10000, 700, 900, 50),
                mon(0, 0, 0, 0),
            ],
            8,
            (320, 200),
            (8192, 8192),
        );
        assert_eq!(
            p,
            vec![Some((0, 0, 800, 600)), None, Some((800, 0, 8192, 700))]
        );
        // more monitors than outputs
        assert_eq!(
            plan(
                &[mon(800, 600, 0, 0), mon(800, 600, 800, 0)],
                1,
                (1, 1),
                (9000, 9000)
            )
            .len(),
            1
        );
        // too small
        assert_eq!(
            plan(&[mon(10, 10, 0, 0)], 1, (320, 200), (9000, 9000)),
            vec![Some((0, 0, 320, 200))]
        );
    }

    #[test]
    fn cvt_modes_are_plausible() {
        let m = cvt_rb_mode(1920, 1080);
        // the CVT-RB 1920x1080@60 mode: 138.50 MHz, htotal 2080, vtotal 1111
        assert_eq!((m.htotal, m.vtotal, m.dot_clock), (2080, 1111, 138_500_000));
        assert_eq!((m.vsync_start, m.vsync_end), (1083, 1088));
        let odd = cvt_rb_mode(890, 644);
        assert!(odd.vtotal > 644 && odd.htotal == 1050 && odd.dot_clock > 0);
    }

    #[test]
    fn drm_hotplug_uevents_are_recognised() {
        assert!(is_drm_hotplug(b"change@/devices/pci0000:00/0000:00:02.0/drm/card0\0ACTION=change\0SUBSYSTEM=drm\0HOTPLUG=1\0"));
        assert!(!is_drm_hotplug(
            b"add@/devices/virtual/input/input5\0SUBSYSTEM=input\0"
        ));
        assert!(!is_drm_hotplug(b"change@/x\0SUBSYSTEM=drm\0"));
        assert!(!is_drm_hotplug(b""));
    }
}

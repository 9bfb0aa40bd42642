//! The bridge from a QXL device to the Spice display model: [`QxlDisplay`] turns the device's
//! [`DeviceEvent`]s into [`DisplayModel`] operations, on its own thread, and
//! [`announce_client_presence`] tells the guest whether a display client is connected.
//!
//! The software renderer inside [`qxl_device::QxlDevice`] has already applied every draw to
//! its copy of the primary surface, so the bridge does not re-implement the draw types: it
//! collects the areas of the primary that draws touched (their bounding boxes), and once the
//! event queue is drained copies those areas out of the renderer into the model as
//! `draw_copy` operations. Bursts therefore merge into a few rectangles, and a Spice client
//! can never hold the guest up: the device only ever pushes into an unbounded-by-count but
//! cheap event channel, and the model bounds each client's queue itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use qxl_device::decode::{
    CursorCommand, CursorKind as QxlCursorKind, DisplayCommand, SurfaceCommand,
};
use qxl_device::render::Rect as QRect;
use qxl_device::DeviceEvent;
use qxl_device::{QxlDevice, WorkerHandle};
use tracing::{debug, info, warn};

use crate::model::{CursorKind, CursorShape, Image, Monitor, SurfaceFormat};
use crate::wire::display::cap;
use crate::wire::types::Rect;
use crate::DisplayModel;

/// The display capabilities announced in the QXL ROM while a Spice display client is connected.
/// spice-server announces those of its clients, because it forwards guest commands to them; here
/// the device's own renderer consumes every command and clients get rendered pixels, so these are
/// the renderer's: client monitors configs, COMPOSITE and A8 surfaces (Xorg's qxl driver uses
/// the last two only when announced).
pub const CLIENT_DISPLAY_CAPS: u8 =
    1 << cap::MONITORS_CONFIG | 1 << cap::COMPOSITE | 1 << cap::A8_SURFACE;

/// Writes `client_present` and [`CLIENT_DISPLAY_CAPS`] (or no capabilities when absent) into
/// the device's ROM and raises QXL_INTERRUPT_CLIENT, as spice-server does when a display client
/// comes or goes. Call it when [`crate::ServerHandle::has_display`] changes.
pub fn announce_client_presence(dev: &mut QxlDevice, present: bool) {
    let caps = if present { CLIENT_DISPLAY_CAPS } else { 0 };
    dev.set_client_capabilities(present, &[caps]);
    info!(
        present,
        caps, "display client presence announced to the guest"
    );
}

/// More dirty rectangles than this in one flush are merged into their bounding box.
const MAX_DIRTY_RECTS: usize = 32;
/// Events handled before the dirty areas are flushed even if more are queued.
const MAX_EVENTS_PER_FLUSH: usize = 4096;

/// Translates device events into display-model operations.
pub struct QxlDisplay {
    model: DisplayModel,
    dev: WorkerHandle,
    primary: Option<(u32, u32)>,
    dirty: Vec<Rect>,
    /// A MARK ("the picture is complete") is owed to clients after the first flush of a new
    /// primary: spice-gtk's widget (remote-viewer) shows nothing until it gets one.
    mark_pending: bool,
    /// Display commands by kind since the last device reset, logged at the reset: what a
    /// guest driver actually sends (the e2e tests read it).
    seen: BTreeMap<&'static str, u64>,
}

impl QxlDisplay {
    /// A bridge feeding `model` from the device behind `dev` (whose event sink feeds
    /// [`QxlDisplay::run`] or [`QxlDisplay::handle`]).
    pub fn new(model: DisplayModel, dev: WorkerHandle) -> Self {
        QxlDisplay {
            model,
            dev,
            primary: None,
            dirty: Vec::new(),
            mark_pending: false,
            seen: BTreeMap::new(),
        }
    }

    /// Runs until `stop` is set or the device side hangs up: handles queued events in
    /// batches, flushing the dirty areas after each batch.
    pub fn run(mut self, rx: Receiver<DeviceEvent>, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(ev) => {
                    self.handle(ev);
                    let mut n = 1;
                    while n < MAX_EVENTS_PER_FLUSH {
                        match rx.try_recv() {
                            Ok(ev) => self.handle(ev),
                            Err(_) => break,
                        }
                        n += 1;
                    }
                    self.flush();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// Applies one event (draw areas are only recorded; [`QxlDisplay::flush`] sends them).
    pub fn handle(&mut self, ev: DeviceEvent) {
        if let DeviceEvent::Display(cmd) = &ev {
            self.count(cmd);
        }
        match ev {
            DeviceEvent::Display(DisplayCommand::Draw(d)) if d.surface_id == 0 => {
                self.mark_dirty(d.bbox)
            }
            DeviceEvent::Display(_) => {}
            DeviceEvent::Cursor(c) => self.cursor(c),
            DeviceEvent::PrimaryCreated(desc) => {
                self.destroy_primary();
                match self
                    .model
                    .create_surface(0, desc.width, desc.height, SurfaceFormat::Xrgb32)
                {
                    Ok(()) => {
                        info!(
                            width = desc.width,
                            height = desc.height,
                            "primary surface created"
                        );
                        self.primary = Some((desc.width, desc.height));
                        self.mark_pending = true;
                        // KEEP_DATA: whatever the renderer holds is the first picture.
                        self.mark_dirty(QRect {
                            top: 0,
                            left: 0,
                            bottom: desc.height as i32,
                            right: desc.width as i32,
                        });
                    }
                    Err(e) => warn!("primary {}x{} not shown: {e}", desc.width, desc.height),
                }
            }
            DeviceEvent::PrimaryDestroyed | DeviceEvent::AllSurfacesDestroyed => {
                self.destroy_primary()
            }
            DeviceEvent::Reset => {
                self.log_seen();
                self.destroy_primary()
            }
            DeviceEvent::MonitorsConfig(mc) => {
                let heads: Vec<Monitor> = mc
                    .heads
                    .iter()
                    .filter(|h| h.width > 0 && h.height > 0)
                    .map(|h| Monitor {
                        id: h.id,
                        x: h.x,
                        y: h.y,
                        width: h.width,
                        height: h.height,
                    })
                    .collect();
                if self.primary.is_some() && !heads.is_empty() {
                    if let Err(e) = self.model.set_monitors(mc.max_allowed, &heads) {
                        warn!("guest monitors config not forwarded: {e}");
                    }
                }
            }
            DeviceEvent::CommandRejected { ring, ty, error } => {
                debug!("{ring:?} ring command type {ty} rejected: {error}")
            }
            DeviceEvent::GuestBug(bug) => warn!("guest bug: {bug}"),
            DeviceEvent::GuestLog(text) => info!(target: "guest", "{}", text.trim_end()),
            other => debug!("device event {other:?}"),
        }
    }

    fn count(&mut self, cmd: &DisplayCommand) {
        let kind = match cmd {
            DisplayCommand::Draw(d) if d.surface_id == 0 => d.op.name(),
            DisplayCommand::Draw(_) => "offscreen_draw",
            DisplayCommand::Surface(SurfaceCommand::Create { .. }) => "surface_create",
            DisplayCommand::Surface(_) => "surface_destroy",
            DisplayCommand::Nop => "nop",
            DisplayCommand::Update { .. } => "update",
            DisplayCommand::Message => "message",
            _ => "other",
        };
        *self.seen.entry(kind).or_default() += 1;
        if let DisplayCommand::Draw(d) = cmd {
            if d.surface_id != 0 {
                *self.seen.entry(d.op.name()).or_default() += 1;
            }
        }
    }

    /// Logs (and clears) the display commands counted since the last reset.
    fn log_seen(&mut self) {
        if self.seen.is_empty() {
            return;
        }
        let list: Vec<String> = self.seen.iter().map(|(k, n)| format!("{k}={n}")).collect();
        info!("display commands since the last reset: {}", list.join(" "));
        self.seen.clear();
    }

    fn destroy_primary(&mut self) {
        if self.primary.take().is_some() {
            self.dirty.clear();
            if let Err(e) = self.model.destroy_surface(0) {
                debug!("destroy primary: {e}");
            }
        }
    }

    fn mark_dirty(&mut self, r: QRect) {
        let Some((w, h)) = self.primary else { return };
        let r = Rect {
            top: r.top.clamp(0, h as i32),
            left: r.left.clamp(0, w as i32),
            bottom: r.bottom.clamp(0, h as i32),
            right: r.right.clamp(0, w as i32),
        };
        if r.right <= r.left || r.bottom <= r.top {
            return;
        }
        if self.dirty.iter().any(|d| contains(d, &r)) {
            return;
        }
        self.dirty.retain(|d| !contains(&r, d));
        self.dirty.push(r);
        if self.dirty.len() > MAX_DIRTY_RECTS {
            let bbox = self.dirty.iter().fold(self.dirty[0], |a, b| Rect {
                top: a.top.min(b.top),
                left: a.left.min(b.left),
                bottom: a.bottom.max(b.bottom),
                right: a.right.max(b.right),
            });
            self.dirty = vec![bbox];
        }
    }

    /// Copies the dirty areas of the primary from the renderer into the model.
    pub fn flush(&mut self) {
        if self.dirty.is_empty() || self.primary.is_none() {
            return;
        }
        // Copy only the dirty areas, once, straight out of the renderer.
        let areas: Vec<(Rect, qxl_device::render::Snapshot)> = {
            let dev = self.dev.device();
            let current = dev.primary().map(|p| (p.width, p.height));
            if current.is_none() {
                self.dirty.clear();
                return;
            }
            if current != self.primary {
                // The renderer's primary changed under us; the PrimaryCreated event will follow.
                return;
            }
            std::mem::take(&mut self.dirty)
                .into_iter()
                .filter_map(|r| {
                    let area = QRect {
                        top: r.top,
                        left: r.left,
                        bottom: r.bottom,
                        right: r.right,
                    };
                    dev.surface_area_snapshot(0, area).map(|snap| (r, snap))
                })
                .collect()
        };
        for (r, snap) in areas {
            match Image::new(0, snap.width, snap.height, snap.pixels) {
                Ok(img) => {
                    if let Err(e) = self.model.draw_copy(0, r, &img, &[]) {
                        warn!("draw to the model failed: {e}");
                    }
                }
                Err(e) => warn!("dirty area {r:?} not sent: {e}"),
            }
        }
        if std::mem::take(&mut self.mark_pending) {
            self.model.mark();
        }
    }

    fn cursor(&mut self, c: CursorCommand) {
        match c {
            CursorCommand::Set {
                position,
                visible,
                shape,
            } => {
                match cursor_shape(&shape) {
                    Some(s) => self.model.set_cursor(s),
                    None => debug!("cursor shape {:?} not convertible", shape.kind),
                }
                if visible {
                    self.model
                        .move_cursor(clamp16(position.x), clamp16(position.y));
                } else {
                    self.model.hide_cursor();
                }
            }
            CursorCommand::Move { position } => self
                .model
                .move_cursor(clamp16(position.x), clamp16(position.y)),
            CursorCommand::Hide => self.model.hide_cursor(),
            CursorCommand::Trail { length, frequency } => {
                self.model.set_cursor_trail(length, frequency)
            }
            other => debug!("cursor command {other:?} ignored"),
        }
    }
}

fn contains(outer: &Rect, inner: &Rect) -> bool {
    outer.left <= inner.left
        && outer.top <= inner.top
        && outer.right >= inner.right
        && outer.bottom >= inner.bottom
}

fn clamp16(v: i32) -> i16 {
    v.clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

/// Converts a guest cursor into a shape the Spice cursor channel carries: ALPHA, MONO and
/// COLOR32 as they are; the palette and 16/24-bit colour types become ALPHA (AND-mask bit set
/// and colour 0 = transparent; AND-mask bit set with a colour = XOR, shown as that colour).
fn cursor_shape(c: &qxl_device::decode::Cursor) -> Option<CursorShape> {
    let (w, h) = (c.width as usize, c.height as usize);
    let hot = (
        c.hot_x.min(c.width.saturating_sub(1)),
        c.hot_y.min(c.height.saturating_sub(1)),
    );
    let (kind, data) = match c.kind {
        QxlCursorKind::Alpha => (CursorKind::Alpha, c.data.clone()),
        QxlCursorKind::Mono => (CursorKind::Mono, c.data.clone()),
        QxlCursorKind::Color32 => (CursorKind::Color32, c.data.clone()),
        kind => {
            let mask_stride = w.div_ceil(8);
            let (color_bytes, palette): (usize, &[u8]) = match kind {
                QxlCursorKind::Color4 => (
                    w.div_ceil(2) * h,
                    c.data.get(w.div_ceil(2) * h..)?.get(..64)?,
                ),
                QxlCursorKind::Color8 => (w * h, c.data.get(w * h..)?.get(..1024)?),
                QxlCursorKind::Color16 => (w * h * 2, &[]),
                QxlCursorKind::Color24 => (w * h * 3, &[]),
                _ => return None,
            };
            let mask = c.data.get(color_bytes + palette.len()..)?;
            let pal = |i: usize| -> u32 {
                palette
                    .get(i * 4..i * 4 + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .unwrap_or(0)
            };
            let mut out = Vec::with_capacity(w * h * 4);
            for y in 0..h {
                for x in 0..w {
                    let rgb = match kind {
                        QxlCursorKind::Color4 => {
                            let b = *c.data.get(y * w.div_ceil(2) + x / 2)?;
                            pal(if x % 2 == 0 {
                                (b >> 4) as usize
                            } else {
                                (b & 15) as usize
                            })
                        }
                        QxlCursorKind::Color8 => pal(*c.data.get(y * w + x)? as usize),
                        QxlCursorKind::Color16 => {
                            let i = (y * w + x) * 2;
                            let p = c.data.get(i..i + 2)?;
                            let v = u16::from_le_bytes([p[0], p[1]]) as u32;
                            let (r, g, b) = ((v >> 10) & 31, (v >> 5) & 31, v & 31);
                            ((r << 3 | r >> 2) << 16) | ((g << 3 | g >> 2) << 8) | (b << 3 | b >> 2)
                        }
                        _ => {
                            let i = (y * w + x) * 3;
                            let p = c.data.get(i..i + 3)?;
                            u32::from_le_bytes([p[0], p[1], p[2], 0])
                        }
                    } & 0x00ff_ffff;
                    let and = mask.get(y * mask_stride + x / 8)? & (0x80 >> (x % 8)) != 0;
                    let argb = if and && rgb == 0 {
                        0
                    } else {
                        0xff00_0000 | rgb
                    };
                    out.extend_from_slice(&argb.to_le_bytes());
                }
            }
            (CursorKind::Alpha, out)
        }
    };
    CursorShape::new(c.unique, kind, c.width, c.height, hot, data).ok()
}

//! Resolution on GNOME Wayland through Mutter's `org.gnome.Mutter.DisplayConfig` D-Bus interface
//! (session bus, object `/org/gnome/Mutter/DisplayConfig`; reference
//! `../shared/reference/agent-and-vdiport.md` §6.3). Under Wayland the agent cannot set modes
//! itself: it asks the compositor.
//!
//! - [`Mutter::apply`] reads `GetCurrentState` and sends `ApplyMonitorsConfig` with method
//!   [`method::TEMPORARY`]: the client's window size is a live property of this connection, like
//!   a RandR resize, not a choice the user made. A persistent config (method 2) would be written
//!   to `~/.config/monitors.xml` and come back at the next login with no client, and GNOME Shell
//!   asks the user to confirm a persistent change ("Keep these display settings?") and reverts
//!   it after 20 s without an answer.
//! - Mutter only takes modes its monitors list: no custom modes, unlike RandR's `CreateMode`.
//!   For each enabled client monitor the agent picks, on the matching monitor, the mode of
//!   exactly the asked size, else the largest mode that is not larger in either dimension, else
//!   the smallest mode ([`pick_mode`]). A headless virtual monitor (`mutter --virtual-monitor`)
//!   has one mode. In a VM, spice-server forwards MONITORS_CONFIG to the agent only when a
//!   display device could not take it (§6.1), so the connector has its fixed mode list (an
//!   EDID's): the client gets the nearest listed size, not its window size. (When the device
//!   does take it, Mutter itself follows the connector's new preferred mode.)
//! - Positions come from the config, shifted so the layout starts at 0,0; a monitor that got a
//!   smaller mode pulls the monitors right of (below) it left (up), so that a row of monitors
//!   stays adjacent (Mutter refuses logical monitors that are not adjacent or do not start at
//!   0,0). The first enabled client monitor is the primary one.
//! - The PHYSICAL_SIZE trailer is accepted (the parser reads it) and not applied: Mutter has no
//!   call that sets a monitor's physical size.
//! - [`Mutter::layout`] reports the same [`GuestMonitor`] list the RandR side does, in Mutter's
//!   logical coordinates (mode size, divided by the scale in the logical layout mode, swapped
//!   for a 90°/270° transform), and [`Mutter::watch`] waits for `MonitorsChanged`.
//!
//! Spice display ids map to monitors the way [`DeviceMap`] says: the GRAPHICS_DEVICE_INFO
//! connector index as an index into `GetCurrentState`'s monitor list, else the display id.
//! The planning ([`State::from_raw`], [`plan`], [`layout`]) is pure and tested without D-Bus;
//! `tests/mutter_display.rs` runs it against a real `mutter --headless`.

use std::collections::HashMap;

use tracing::{debug, info};
use zbus::blocking::{Connection, Proxy};
use zbus::zvariant::{OwnedValue, Value};

use crate::ipc::GuestMonitor;
use crate::protocol::{DeviceDisplayInfo, MonitorConfig};

use super::display::{DeviceMap, DisplayBackend, DisplayError};

/// The well-known bus name Mutter owns on the session bus.
pub const BUS_NAME: &str = "org.gnome.Mutter.DisplayConfig";
/// The object that implements [`INTERFACE`].
pub const OBJECT_PATH: &str = "/org/gnome/Mutter/DisplayConfig";
/// The D-Bus interface.
pub const INTERFACE: &str = "org.gnome.Mutter.DisplayConfig";

/// Most client monitors considered (as on the RandR side).
pub const MAX_MONITORS: usize = 64;

/// `ApplyMonitorsConfig`'s `method` argument.
pub mod method {
    /// Only check the config.
    pub const VERIFY: u32 = 0;
    /// Apply until the next change, without saving it.
    pub const TEMPORARY: u32 = 1;
    /// Apply and save it to `monitors.xml` (GNOME Shell asks the user to confirm).
    pub const PERSISTENT: u32 = 2;
}

/// Why Mutter's display config could not be read or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MutterError {
    /// A D-Bus call failed (Mutter's refusal of a config comes as a method error).
    #[error("D-Bus: {0}")]
    Bus(#[from] zbus::Error),
    /// A call to the bus daemon failed.
    #[error("D-Bus daemon: {0}")]
    Daemon(#[from] zbus::fdo::Error),
    /// Nobody owns [`BUS_NAME`] on this bus.
    #[error("{BUS_NAME} is not on the session bus")]
    Absent,
    /// Mutter's monitors policy forbids `ApplyMonitorsConfig`.
    #[error(
        "Mutter does not allow ApplyMonitorsConfig here (ApplyMonitorsConfigAllowed is false)"
    )]
    NotAllowed,
    /// No enabled client monitor maps to a monitor Mutter has.
    #[error("no enabled client monitor maps to one of Mutter's {monitors} monitors")]
    NothingToApply {
        /// How many monitors Mutter lists.
        monitors: usize,
    },
}

/// `(connector, vendor, product, serial)`.
pub type RawSpec = (String, String, String, String);
/// `(id, width, height, refresh, preferred scale, supported scales, properties)`.
pub type RawMode = (
    String,
    i32,
    i32,
    f64,
    f64,
    Vec<f64>,
    HashMap<String, OwnedValue>,
);
/// `(spec, modes, properties)`.
pub type RawMonitor = (RawSpec, Vec<RawMode>, HashMap<String, OwnedValue>);
/// `(x, y, scale, transform, primary, monitors, properties)`.
pub type RawLogicalMonitor = (
    i32,
    i32,
    f64,
    u32,
    bool,
    Vec<RawSpec>,
    HashMap<String, OwnedValue>,
);
/// `GetCurrentState`'s reply, `(ua((ssss)a(siiddada{sv})a{sv})a(iiduba(ssss)a{sv})a{sv})`.
pub type RawState = (
    u32,
    Vec<RawMonitor>,
    Vec<RawLogicalMonitor>,
    HashMap<String, OwnedValue>,
);

/// One mode a monitor can take.
#[derive(Debug, Clone, PartialEq)]
pub struct Mode {
    /// Mutter's mode id (`"1280x800@60.000"`), what `ApplyMonitorsConfig` takes.
    pub id: String,
    /// Width in pixels.
    pub width: i32,
    /// Height in pixels.
    pub height: i32,
    /// Refresh rate in Hz.
    pub refresh: f64,
    /// The scale Mutter would pick for this mode.
    pub preferred_scale: f64,
    /// The scales this mode may have.
    pub scales: Vec<f64>,
    /// The monitor shows this mode now (`is-current`).
    pub current: bool,
    /// The monitor prefers it (`is-preferred`).
    pub preferred: bool,
}

/// One physical (or virtual) monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    /// Connector name (`"Virtual-1"`, `"Meta-0"`).
    pub connector: String,
    /// Its modes.
    pub modes: Vec<Mode>,
}

impl Monitor {
    /// The mode it shows now, if it is on.
    pub fn current_mode(&self) -> Option<&Mode> {
        self.modes.iter().find(|m| m.current)
    }
}

/// One logical monitor: a region of the desktop shown by one or more (mirrored) monitors.
#[derive(Debug, Clone, PartialEq)]
pub struct LogicalMonitor {
    /// Left edge, in logical coordinates.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Scale.
    pub scale: f64,
    /// Transform (0 normal, 1–3 rotated by 90°/180°/270°, 4–7 the same flipped).
    pub transform: u32,
    /// The primary monitor.
    pub primary: bool,
    /// The connectors of its monitors.
    pub connectors: Vec<String>,
}

/// How logical monitor sizes relate to modes (`layout-mode` property).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutMode {
    /// 1: a logical monitor is its mode's size divided by its scale.
    Logical,
    /// 2 (and the default): a logical monitor is its mode's size.
    Physical,
}

/// What `GetCurrentState` said, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    /// The serial `ApplyMonitorsConfig` must quote (it changes with the hardware).
    pub serial: u32,
    /// The monitors, in Mutter's order (index = output index).
    pub monitors: Vec<Monitor>,
    /// The logical monitors.
    pub logical: Vec<LogicalMonitor>,
    /// The layout mode.
    pub layout_mode: LayoutMode,
}

fn prop_true(props: &HashMap<String, OwnedValue>, key: &str) -> bool {
    matches!(props.get(key).map(|v| &**v), Some(Value::Bool(true)))
}

impl State {
    /// Parses a `GetCurrentState` reply.
    pub fn from_raw(raw: RawState) -> State {
        let (serial, monitors, logical, props) = raw;
        let monitors = monitors
            .into_iter()
            .map(|(spec, modes, _)| Monitor {
                connector: spec.0,
                modes: modes
                    .into_iter()
                    .map(
                        |(id, width, height, refresh, preferred_scale, scales, p)| Mode {
                            current: prop_true(&p, "is-current"),
                            preferred: prop_true(&p, "is-preferred"),
                            id,
                            width,
                            height,
                            refresh,
                            preferred_scale,
                            scales,
                        },
                    )
                    .collect(),
            })
            .collect();
        let logical = logical
            .into_iter()
            .map(
                |(x, y, scale, transform, primary, specs, _)| LogicalMonitor {
                    x,
                    y,
                    scale,
                    transform,
                    primary,
                    connectors: specs.into_iter().map(|s| s.0).collect(),
                },
            )
            .collect();
        let layout_mode = match props.get("layout-mode").map(|v| &**v) {
            Some(Value::U32(1)) => LayoutMode::Logical,
            _ => LayoutMode::Physical,
        };
        State {
            serial,
            monitors,
            logical,
            layout_mode,
        }
    }

    /// The logical monitor that shows `connector`.
    pub fn logical_of(&self, connector: &str) -> Option<&LogicalMonitor> {
        self.logical
            .iter()
            .find(|l| l.connectors.iter().any(|c| c == connector))
    }
}

/// The size a mode takes in the desktop: swapped for a 90°/270° transform, divided by the
/// scale in the logical layout mode.
fn logical_size(mode: &Mode, scale: f64, transform: u32, layout: LayoutMode) -> (i32, i32) {
    let (w, h) = if transform % 2 == 1 {
        (mode.height, mode.width)
    } else {
        (mode.width, mode.height)
    };
    match layout {
        LayoutMode::Logical if scale > 0.0 => (
            (f64::from(w) / scale).round() as i32,
            (f64::from(h) / scale).round() as i32,
        ),
        _ => (w, h),
    }
}

/// The mode of `modes` for a `width`×`height` request: exactly that size, else the largest
/// (by area) not larger in either dimension, else the smallest. Among equals: the current
/// mode, then the preferred one, then the highest refresh rate. `None` only without modes.
pub fn pick_mode(modes: &[Mode], width: i32, height: i32) -> Option<&Mode> {
    let rank = |m: &Mode| (m.current, m.preferred, (m.refresh * 1000.0) as i64);
    let area = |m: &Mode| i64::from(m.width) * i64::from(m.height);
    let exact = modes
        .iter()
        .filter(|m| m.width == width && m.height == height)
        .max_by_key(|m| rank(m));
    exact
        .or_else(|| {
            modes
                .iter()
                .filter(|m| m.width <= width && m.height <= height)
                .max_by_key(|m| (area(m), rank(m)))
        })
        .or_else(|| {
            modes
                .iter()
                .min_by_key(|m| (area(m), std::cmp::Reverse(rank(m))))
        })
}

/// One logical monitor of a planned config (one monitor each: no mirroring).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Scale.
    pub scale: f64,
    /// Transform (kept from the current config).
    pub transform: u32,
    /// The primary monitor (the first enabled client monitor).
    pub primary: bool,
    /// The monitor's connector.
    pub connector: String,
    /// The mode id.
    pub mode: String,
}

/// The logical monitors that show the client's `config` (index = Spice display id; 0×0 =
/// disabled; at most [`MAX_MONITORS`]). `output_of` maps a display id to an index into
/// `state.monitors`; displays without a monitor, and a second display on the same monitor,
/// are left out. Monitors not in the result are turned off.
pub fn plan(
    state: &State,
    config: &[MonitorConfig],
    output_of: impl Fn(u32) -> usize,
) -> Result<Vec<Planned>, MutterError> {
    struct Pick<'a> {
        monitor: usize,
        // asked, in the client's layout
        x: i64,
        y: i64,
        w: i64,
        h: i64,
        // got, in logical coordinates
        got_w: i64,
        got_h: i64,
        scale: f64,
        transform: u32,
        mode: &'a Mode,
    }
    let mut picks: Vec<Pick> = Vec::new();
    for (id, m) in config.iter().take(MAX_MONITORS).enumerate() {
        if m.width == 0 || m.height == 0 {
            continue;
        }
        let index = output_of(id as u32);
        let Some(monitor) = state.monitors.get(index) else {
            debug!("display {id}: no monitor {index} in Mutter's list");
            continue;
        };
        if picks.iter().any(|p| p.monitor == index) {
            debug!("display {id}: monitor {index} already taken");
            continue;
        }
        let current = state.logical_of(&monitor.connector);
        let transform = current.map_or(0, |l| l.transform);
        let (w, h) = (
            i32::try_from(m.width).unwrap_or(i32::MAX),
            i32::try_from(m.height).unwrap_or(i32::MAX),
        );
        let (mode_w, mode_h) = if transform % 2 == 1 { (h, w) } else { (w, h) };
        let Some(mode) = pick_mode(&monitor.modes, mode_w, mode_h) else {
            debug!("display {id}: {} has no modes", monitor.connector);
            continue;
        };
        if (mode.width, mode.height) != (mode_w, mode_h) {
            info!(
                "{} has no {mode_w}x{mode_h} mode; using {}",
                monitor.connector, mode.id
            );
        }
        let same = |a: f64, b: f64| (a - b).abs() < 1e-6;
        let scale = current
            .map(|l| l.scale)
            .filter(|s| mode.scales.iter().any(|&x| same(x, *s)))
            .unwrap_or(mode.preferred_scale);
        let (got_w, got_h) = logical_size(mode, scale, transform, state.layout_mode);
        picks.push(Pick {
            monitor: index,
            x: i64::from(m.x),
            y: i64::from(m.y),
            w: i64::from(w),
            h: i64::from(h),
            got_w: i64::from(got_w),
            got_h: i64::from(got_h),
            scale,
            transform,
            mode,
        });
    }
    if picks.is_empty() {
        return Err(MutterError::NothingToApply {
            monitors: state.monitors.len(),
        });
    }
    // A monitor smaller than asked pulls those after it in its row (column) closer.
    let overlap = |a0: i64, alen: i64, b0: i64, blen: i64| a0 < b0 + blen && b0 < a0 + alen;
    let moved: Vec<(i64, i64)> = picks
        .iter()
        .map(|p| {
            let dx: i64 = picks
                .iter()
                .filter(|q| q.x + q.w <= p.x && overlap(p.y, p.h, q.y, q.h))
                .map(|q| q.w - q.got_w)
                .sum();
            let dy: i64 = picks
                .iter()
                .filter(|q| q.y + q.h <= p.y && overlap(p.x, p.w, q.x, q.w))
                .map(|q| q.h - q.got_h)
                .sum();
            (p.x - dx, p.y - dy)
        })
        .collect();
    let left = moved.iter().map(|m| m.0).min().unwrap_or(0);
    let top = moved.iter().map(|m| m.1).min().unwrap_or(0);
    let clamp = |v: i64| v.clamp(0, i64::from(i32::MAX)) as i32;
    Ok(picks
        .iter()
        .zip(moved)
        .enumerate()
        .map(|(i, (p, (x, y)))| Planned {
            x: clamp(x - left),
            y: clamp(y - top),
            scale: p.scale,
            transform: p.transform,
            primary: i == 0,
            connector: state.monitors[p.monitor].connector.clone(),
            mode: p.mode.id.clone(),
        })
        .collect())
}

/// Whether `planned` is what Mutter shows already.
pub fn is_current(state: &State, planned: &[Planned]) -> bool {
    state.logical.len() == planned.len()
        && planned.iter().all(|p| {
            let Some(l) = state.logical_of(&p.connector) else {
                return false;
            };
            let mode = state
                .monitors
                .iter()
                .find(|m| m.connector == p.connector)
                .and_then(Monitor::current_mode);
            (l.x, l.y, l.transform, l.primary) == (p.x, p.y, p.transform, p.primary)
                && (l.scale - p.scale).abs() < 1e-6
                && l.connectors.len() == 1
                && mode.is_some_and(|m| m.id == p.mode)
        })
}

/// The monitors Mutter shows, one per monitor that is on, in Mutter's order; `display_of`
/// maps a monitor index to its Spice display id.
pub fn layout(state: &State, display_of: impl Fn(usize) -> u32) -> Vec<GuestMonitor> {
    let mut out = Vec::new();
    for (i, m) in state.monitors.iter().enumerate() {
        let (Some(l), Some(mode)) = (state.logical_of(&m.connector), m.current_mode()) else {
            continue;
        };
        let (w, h) = logical_size(mode, l.scale, l.transform, state.layout_mode);
        if w <= 0 || h <= 0 {
            continue;
        }
        out.push(GuestMonitor {
            display_id: display_of(i),
            x: l.x,
            y: l.y,
            width: w as u32,
            height: h as u32,
        });
    }
    out
}

/// `ApplyMonitorsConfig`'s logical monitors, `a(iiduba(ssa{sv}))`.
type ApplyLogical<'a> = (
    i32,
    i32,
    f64,
    u32,
    bool,
    Vec<(&'a str, &'a str, HashMap<&'a str, Value<'a>>)>,
);

/// The Mutter side of the session agent, on a D-Bus connection.
pub struct Mutter {
    proxy: Proxy<'static>,
    device_map: DeviceMap,
}

/// `MonitorsChanged` signals, from [`Mutter::watch`].
pub struct Changes(zbus::blocking::proxy::SignalIterator<'static>);

impl Changes {
    /// Blocks until the next `MonitorsChanged`; false when the connection is gone.
    pub fn wait(&mut self) -> bool {
        self.0.next().is_some()
    }
}

impl Mutter {
    /// Connects to the session bus and checks Mutter is there.
    pub fn connect() -> Result<Mutter, MutterError> {
        Mutter::on(&Connection::session()?)
    }

    /// Uses `conn` (a session bus connection), and checks that [`BUS_NAME`] has an owner.
    pub fn on(conn: &Connection) -> Result<Mutter, MutterError> {
        let dbus = zbus::blocking::fdo::DBusProxy::new(conn)?;
        let name = zbus::names::BusName::try_from(BUS_NAME).map_err(zbus::Error::from)?;
        if !dbus.name_has_owner(name)? {
            return Err(MutterError::Absent);
        }
        Ok(Mutter {
            proxy: Proxy::new(conn, BUS_NAME, OBJECT_PATH, INTERFACE)?,
            device_map: DeviceMap::default(),
        })
    }

    /// Reads `GetCurrentState`.
    pub fn state(&self) -> Result<State, MutterError> {
        let raw: RawState = self.proxy.call("GetCurrentState", &())?;
        Ok(State::from_raw(raw))
    }

    /// Subscribes to `MonitorsChanged` (subscribed when this returns).
    pub fn watch(&self) -> Result<Changes, MutterError> {
        Ok(Changes(self.proxy.receive_signal("MonitorsChanged")?))
    }

    /// Applies the client's monitors (index = Spice display id) as a temporary config.
    pub fn apply(&self, config: &[MonitorConfig]) -> Result<(), MutterError> {
        if let Ok(false) = self
            .proxy
            .get_property::<bool>("ApplyMonitorsConfigAllowed")
        {
            return Err(MutterError::NotAllowed);
        }
        let mut retried = false;
        loop {
            let state = self.state()?;
            let planned = plan(&state, config, |d| self.device_map.output_of(d))?;
            if is_current(&state, &planned) {
                debug!("monitors config already shown");
                return Ok(());
            }
            info!("applying {planned:?}");
            let logical: Vec<ApplyLogical> = planned
                .iter()
                .map(|p| {
                    (
                        p.x,
                        p.y,
                        p.scale,
                        p.transform,
                        p.primary,
                        vec![(p.connector.as_str(), p.mode.as_str(), HashMap::new())],
                    )
                })
                .collect();
            let props: HashMap<&str, Value> = HashMap::new();
            let r = self.proxy.call::<_, _, ()>(
                "ApplyMonitorsConfig",
                &(state.serial, method::TEMPORARY, logical, props),
            );
            match r {
                // the monitors changed between our read and the call
                Err(zbus::Error::MethodError(_, Some(msg), _))
                    if !retried && msg.contains("stale") =>
                {
                    debug!("Mutter's serial moved on; planning again");
                    retried = true;
                }
                r => return Ok(r?),
            }
        }
    }

    /// The monitors Mutter shows now.
    pub fn layout(&self) -> Result<Vec<GuestMonitor>, MutterError> {
        let state = self.state()?;
        Ok(layout(&state, |i| self.device_map.display_of(i)))
    }

    /// Takes GRAPHICS_DEVICE_INFO: Spice display id → index in Mutter's monitor list.
    pub fn set_device_info(&self, entries: &[DeviceDisplayInfo]) {
        self.device_map.set(entries);
    }
}

impl DisplayBackend for Mutter {
    fn name(&self) -> &'static str {
        "Mutter DisplayConfig"
    }

    fn apply(&self, config: &[MonitorConfig]) -> Result<(), DisplayError> {
        Ok(Mutter::apply(self, config)?)
    }

    fn layout(&self) -> Result<Vec<GuestMonitor>, DisplayError> {
        Ok(Mutter::layout(self)?)
    }

    fn set_device_info(&self, entries: &[DeviceDisplayInfo]) {
        Mutter::set_device_info(self, entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(w: i32, h: i32, current: bool) -> Mode {
        Mode {
            id: format!("{w}x{h}@60.000"),
            width: w,
            height: h,
            refresh: 60.0,
            preferred_scale: 1.0,
            scales: vec![1.0, 2.0],
            current,
            preferred: false,
        }
    }

    fn mon(w: u32, h: u32, x: i32, y: i32) -> MonitorConfig {
        MonitorConfig {
            width: w,
            height: h,
            depth: 32,
            x,
            y,
            mm: Some((300, 200)),
        }
    }

    /// Two monitors side by side: Virtual-1 (1024x768 current, 1920x1080, 1280x800),
    /// Virtual-2 (800x600 current only).
    fn two() -> State {
        State {
            serial: 7,
            monitors: vec![
                Monitor {
                    connector: "Virtual-1".into(),
                    modes: vec![
                        mode(1920, 1080, false),
                        mode(1280, 800, false),
                        mode(1024, 768, true),
                    ],
                },
                Monitor {
                    connector: "Virtual-2".into(),
                    modes: vec![mode(800, 600, true)],
                },
            ],
            logical: vec![
                LogicalMonitor {
                    x: 0,
                    y: 0,
                    scale: 1.0,
                    transform: 0,
                    primary: true,
                    connectors: vec!["Virtual-1".into()],
                },
                LogicalMonitor {
                    x: 1024,
                    y: 0,
                    scale: 1.0,
                    transform: 0,
                    primary: false,
                    connectors: vec!["Virtual-2".into()],
                },
            ],
            layout_mode: LayoutMode::Physical,
        }
    }

    fn owned(v: Value<'static>) -> OwnedValue {
        OwnedValue::try_from(v).unwrap()
    }

    #[test]
    fn current_state_is_parsed() {
        let spec = |c: &str| (c.to_string(), "v".into(), "p".into(), "s".into());
        let raw: RawState = (
            3,
            vec![(
                spec("Meta-0"),
                vec![(
                    "1280x800@60.000".into(),
                    1280,
                    800,
                    60.0,
                    1.0,
                    vec![1.0],
                    HashMap::from([
                        ("is-current".to_string(), owned(Value::Bool(true))),
                        ("is-preferred".to_string(), owned(Value::Bool(true))),
                    ]),
                )],
                HashMap::new(),
            )],
            vec![(0, 0, 2.0, 1, true, vec![spec("Meta-0")], HashMap::new())],
            HashMap::from([("layout-mode".to_string(), owned(Value::U32(1)))]),
        );
        let s = State::from_raw(raw);
        assert_eq!(s.serial, 3);
        assert_eq!(s.layout_mode, LayoutMode::Logical);
        assert_eq!(s.monitors[0].connector, "Meta-0");
        assert!(s.monitors[0].modes[0].current && s.monitors[0].modes[0].preferred);
        assert_eq!(s.logical[0].connectors, vec!["Meta-0".to_string()]);
        // rotated by 90°, scale 2 in the logical layout mode: 400x640
        assert_eq!(
            layout(&s, |i| i as u32),
            vec![GuestMonitor {
                display_id: 0,
                x: 0,
                y: 0,
                width: 400,
                height: 640
            }]
        );
    }

    #[test]
    fn modes_exact_else_largest_not_larger_else_smallest() {
        let modes = [
            mode(1920, 1080, false),
            mode(1280, 800, false),
            mode(1024, 768, true),
        ];
        assert_eq!(pick_mode(&modes, 1280, 800).unwrap().id, "1280x800@60.000");
        assert_eq!(pick_mode(&modes, 1300, 1000).unwrap().id, "1280x800@60.000");
        assert_eq!(pick_mode(&modes, 1279, 800).unwrap().id, "1024x768@60.000");
        assert_eq!(pick_mode(&modes, 640, 480).unwrap().id, "1024x768@60.000");
        assert_eq!(
            pick_mode(&modes, 4000, 4000).unwrap().id,
            "1920x1080@60.000"
        );
        assert!(pick_mode(&[], 640, 480).is_none());
        // the current one wins a tie
        let tie = [mode(800, 600, false), mode(800, 600, true)];
        assert!(pick_mode(&tie, 800, 600).unwrap().current);
    }

    #[test]
    fn plan_takes_sizes_positions_and_primary_from_the_config() {
        let s = two();
        let p = plan(&s, &[mon(1920, 1080, 800, 0), mon(800, 600, 0, 0)], |d| {
            d as usize
        })
        .unwrap();
        assert_eq!(
            p.iter()
                .map(|p| (p.connector.as_str(), p.mode.as_str(), p.x, p.y, p.primary))
                .collect::<Vec<_>>(),
            vec![
                ("Virtual-1", "1920x1080@60.000", 800, 0, true),
                ("Virtual-2", "800x600@60.000", 0, 0, false),
            ]
        );
        assert!(!is_current(&s, &p));
    }

    #[test]
    fn plan_shifts_to_the_origin_and_drops_disabled_and_extra_monitors() {
        let s = two();
        let p = plan(
            &s,
            &[
                mon(0, 0, 0, 0),
                mon(800, 600, 100, 50),
                mon(640, 480, 900, 50),
            ],
            |d| d as usize,
        )
        .unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            (p[0].connector.as_str(), p[0].x, p[0].y),
            ("Virtual-2", 0, 0)
        );
        assert!(p[0].primary);
        assert!(matches!(
            plan(&s, &[mon(0, 0, 0, 0)], |d| d as usize),
            Err(MutterError::NothingToApply { monitors: 2 })
        ));
    }

    #[test]
    fn a_smaller_mode_pulls_the_next_monitors_closer() {
        let s = two();
        // Virtual-2 has only 800x600: a 1000-wide request leaves 200 px, taken off
        // the x of what lies to its right and the y of what lies below.
        let p = plan(&s, &[mon(1280, 800, 1000, 0), mon(1000, 700, 0, 0)], |d| {
            d as usize
        })
        .unwrap();
        assert_eq!((p[0].x, p[0].y, p[1].x, p[1].y), (800, 0, 0, 0));
        let p = plan(&s, &[mon(1280, 800, 0, 700), mon(1000, 700, 0, 0)], |d| {
            d as usize
        })
        .unwrap();
        assert_eq!((p[0].x, p[0].y, p[1].x, p[1].y), (0, 600, 0, 0));
    }

    #[test]
    fn the_current_config_is_recognised_and_scale_kept() {
        let mut s = two();
        let p = plan(&s, &[mon(1024, 768, 0, 0), mon(800, 600, 1024, 0)], |d| {
            d as usize
        })
        .unwrap();
        assert!(is_current(&s, &p));
        // scale 2 in the logical layout mode: Virtual-1 is 512x384 in the desktop
        s.logical[0].scale = 2.0;
        s.logical[1].x = 512;
        s.layout_mode = LayoutMode::Logical;
        let p = plan(&s, &[mon(1024, 768, 0, 0), mon(800, 600, 512, 0)], |d| {
            d as usize
        })
        .unwrap();
        assert_eq!((p[0].scale, p[1].x), (2.0, 512));
        assert!(is_current(&s, &p));
        // a scale the new mode cannot take falls back to its preferred scale
        s.monitors[0].modes[0].scales = vec![1.0];
        let p = plan(&s, &[mon(1920, 1080, 0, 0)], |d| d as usize).unwrap();
        assert_eq!(p[0].scale, 1.0);
    }

    #[test]
    fn device_info_maps_displays_to_monitors() {
        let s = two();
        let p = plan(&s, &[mon(800, 600, 0, 0)], |d| if d == 0 { 1 } else { 0 }).unwrap();
        assert_eq!(p[0].connector, "Virtual-2");
        let l = layout(&s, |i| if i == 1 { 0 } else { 1 });
        assert_eq!(
            l.iter().map(|m| (m.display_id, m.x)).collect::<Vec<_>>(),
            vec![(1, 0), (0, 1024)]
        );
    }
}

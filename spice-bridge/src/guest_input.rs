//! Spice inputs → Linux input events for the guest's own input devices.
//!
//! [`GuestInput`] is an [`InputSink`]: it turns what the inputs channel delivers (set-1
//! scancodes, button masks, relative motion, absolute positions) into Linux input event
//! reports (`EV_KEY`, `EV_REL`, `EV_ABS`) for up to three guest devices behind the
//! [`EvdevDevice`] trait: a keyboard, an absolute tablet (client mouse mode) and a relative
//! mouse (server mouse mode). In the daemon those are `vdi-port`'s virtio-input devices served
//! over vhost-user; a VMM linking the crates can put its own devices behind the trait.
//!
//! It also keeps the lock keys in step both ways, as spice-server does: the guest's LED
//! changes go to the client as KEY_MODIFIERS (through [`GuestInput::guest_leds`]), and a
//! client whose lock state differs from the guest's gets the guest toggled with a press and
//! release of that lock key.

use std::sync::atomic::{AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tracing::{debug, warn};

use crate::input::{Buttons, InputSink, KeyEvent, LockKeys, MouseButton, MouseMode};
use crate::model::DisplayModel;

/// Linux event types and codes used here (linux/input-event-codes.h).
pub mod code {
    /// EV_SYN
    pub const EV_SYN: u16 = 0x00;
    /// EV_KEY
    pub const EV_KEY: u16 = 0x01;
    /// EV_REL
    pub const EV_REL: u16 = 0x02;
    /// EV_ABS
    pub const EV_ABS: u16 = 0x03;
    /// REL_X
    pub const REL_X: u16 = 0x00;
    /// REL_Y
    pub const REL_Y: u16 = 0x01;
    /// REL_WHEEL
    pub const REL_WHEEL: u16 = 0x08;
    /// ABS_X
    pub const ABS_X: u16 = 0x00;
    /// ABS_Y
    pub const ABS_Y: u16 = 0x01;
    /// BTN_LEFT
    pub const BTN_LEFT: u16 = 0x110;
    /// BTN_RIGHT
    pub const BTN_RIGHT: u16 = 0x111;
    /// BTN_MIDDLE
    pub const BTN_MIDDLE: u16 = 0x112;
    /// BTN_SIDE
    pub const BTN_SIDE: u16 = 0x113;
    /// BTN_EXTRA
    pub const BTN_EXTRA: u16 = 0x114;
    /// KEY_CAPSLOCK
    pub const KEY_CAPSLOCK: u16 = 58;
    /// KEY_NUMLOCK
    pub const KEY_NUMLOCK: u16 = 69;
    /// KEY_SCROLLLOCK
    pub const KEY_SCROLLLOCK: u16 = 70;
    /// LED_NUML
    pub const LED_NUML: u16 = 0;
    /// LED_CAPSL
    pub const LED_CAPSL: u16 = 1;
    /// LED_SCROLLL
    pub const LED_SCROLLL: u16 = 2;
}

/// The largest absolute axis value of the tablet (axes run 0..=`ABS_MAX`, as QEMU's tablets).
pub const ABS_MAX: i32 = 0x7fff;

/// One Linux input event: type, code, value (the `virtio_input_event` / `input_event` triple).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvdevEvent {
    /// event type (EV_KEY, EV_REL, EV_ABS, ...)
    pub kind: u16,
    /// event code (KEY_A, REL_X, ABS_X, ...)
    pub code: u16,
    /// value (1 press / 0 release, a delta, a position)
    pub value: i32,
}

impl EvdevEvent {
    /// An event of `kind`, `code`, `value`.
    pub const fn new(kind: u16, code: u16, value: i32) -> Self {
        EvdevEvent { kind, code, value }
    }
}

/// A guest input device that takes whole reports. The device appends the closing
/// `EV_SYN/SYN_REPORT` itself and delivers a report entirely or not at all.
pub trait EvdevDevice: Send + Sync {
    /// Queues one report for the guest. Must not block; returns false when the report was
    /// dropped (the device's queue is full).
    fn send(&self, report: &[EvdevEvent]) -> bool;
}

/// Events per report at most, before the closing SYN_REPORT: QEMU's `vhost-user-input-pci`
/// gives the event queue 4 entries (one event each), and a report larger than the queue could
/// never be delivered whole. Longer reports are sent as several (a position, then the button
/// changes), which the guest sees as consecutive reports.
pub const MAX_REPORT_EVENTS: usize = 3;

/// Maps a set-1 scancode (as [`KeyEvent::scancode`]) to a Linux key code.
pub type Keymap = fn(u16) -> Option<u16>;

/// Counters of [`GuestInput`].
#[derive(Debug, Default)]
pub struct GuestInputStats {
    /// reports handed to a device
    pub reports: AtomicU64,
    /// reports a device dropped (its queue was full)
    pub dropped: AtomicU64,
    /// keys without a Linux key code
    pub unknown_keys: AtomicU64,
    /// events that no attached device could take (e.g. motion without a mouse)
    pub no_device: AtomicU64,
}

/// The guest devices [`GuestInput`] feeds; any may be absent.
#[derive(Clone, Default)]
pub struct GuestDevices {
    /// keyboard (EV_KEY)
    pub keyboard: Option<Arc<dyn EvdevDevice>>,
    /// absolute tablet (EV_ABS 0..=[`ABS_MAX`], buttons, wheel): client mouse mode
    pub tablet: Option<Arc<dyn EvdevDevice>>,
    /// relative mouse (EV_REL, buttons, wheel): server mouse mode
    pub mouse: Option<Arc<dyn EvdevDevice>>,
}

/// Routes Spice input to guest devices (see the module docs).
pub struct GuestInput {
    devices: GuestDevices,
    keymap: Keymap,
    model: DisplayModel,
    mode: AtomicU8,
    /// Spice button mask the guest last saw, per pointer (tablet, mouse).
    buttons: Mutex<[u16; 2]>,
    /// The guest's lock LEDs in Spice bits (SCROLL 1, NUM 2, CAPS 4).
    leds: AtomicU16,
    stats: GuestInputStats,
}

const MODE_SERVER: u8 = 0;
const MODE_CLIENT: u8 = 1;

/// Spice button-mask bits with their Linux codes (wheel bits are not buttons here).
const BUTTON_BITS: [(u16, u16); 5] = [
    (1, code::BTN_LEFT),
    (2, code::BTN_MIDDLE),
    (4, code::BTN_RIGHT),
    (32, code::BTN_SIDE),
    (64, code::BTN_EXTRA),
];

/// Spice lock bits with the Linux key that toggles each.
const LOCKS: [(u16, u16); 3] = [
    (1, code::KEY_SCROLLLOCK),
    (2, code::KEY_NUMLOCK),
    (4, code::KEY_CAPSLOCK),
];

impl GuestInput {
    /// Feeds `devices`; key codes come from `keymap`, absolute positions are scaled to the
    /// tablet's axes by the size of the primary surface in `model`.
    pub fn new(devices: GuestDevices, keymap: Keymap, model: DisplayModel) -> Self {
        GuestInput {
            devices,
            keymap,
            model,
            mode: AtomicU8::new(MODE_SERVER),
            buttons: Mutex::new([0; 2]),
            leds: AtomicU16::new(0),
            stats: GuestInputStats::default(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> &GuestInputStats {
        &self.stats
    }

    /// Records the guest keyboard's LED state (a status event from the guest) and returns it
    /// as Spice lock bits, for [`crate::ServerHandle::set_keyboard_leds`].
    pub fn guest_leds(&self, num: bool, caps: bool, scroll: bool) -> LockKeys {
        let bits = u16::from(scroll) | u16::from(num) << 1 | u16::from(caps) << 2;
        self.leds.store(bits, Ordering::Relaxed);
        LockKeys(bits)
    }

    fn send(&self, dev: Option<&Arc<dyn EvdevDevice>>, report: &[EvdevEvent]) {
        let Some(dev) = dev else {
            self.stats.no_device.fetch_add(1, Ordering::Relaxed);
            return;
        };
        for part in report.chunks(MAX_REPORT_EVENTS) {
            self.stats.reports.fetch_add(1, Ordering::Relaxed);
            if !dev.send(part) {
                let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    warn!(
                        dropped = n + 1,
                        "guest input device queue full: report dropped"
                    );
                }
            }
        }
    }

    /// The pointer for the current mode (falling back to the other one), and its index into
    /// `buttons`.
    fn pointer(&self) -> (Option<&Arc<dyn EvdevDevice>>, usize) {
        let (t, m) = (self.devices.tablet.as_ref(), self.devices.mouse.as_ref());
        if self.mode.load(Ordering::Relaxed) == MODE_CLIENT {
            if t.is_some() {
                (t, 0)
            } else {
                (m, 1)
            }
        } else if m.is_some() {
            (m, 1)
        } else {
            (t, 0)
        }
    }

    /// Appends the button changes from the last mask to `mask` for pointer `idx`.
    fn button_changes(&self, idx: usize, mask: u16, out: &mut Vec<EvdevEvent>) {
        let mut last = self.buttons.lock().unwrap_or_else(|e| e.into_inner());
        let changed = last[idx] ^ mask;
        for (bit, btn) in BUTTON_BITS {
            if changed & bit != 0 {
                out.push(EvdevEvent::new(
                    code::EV_KEY,
                    btn,
                    i32::from(mask & bit != 0),
                ));
            }
        }
        last[idx] = mask;
    }

    /// Scales `v` in 0..size to 0..=ABS_MAX (the guest maps the axis back onto its screen).
    fn scale(v: u32, size: u32) -> i32 {
        let max = u64::from(size.saturating_sub(1).max(1));
        let v = u64::from(v).min(max);
        // v <= max, so the result is <= ABS_MAX.
        (v * ABS_MAX as u64 / max) as i32
    }
}

impl InputSink for GuestInput {
    fn key(&self, e: KeyEvent) {
        let Some(code) = (self.keymap)(e.scancode) else {
            self.stats.unknown_keys.fetch_add(1, Ordering::Relaxed);
            debug!(
                scancode = e.scancode,
                "key without a Linux key code dropped"
            );
            return;
        };
        let ev = [EvdevEvent::new(code::EV_KEY, code, i32::from(e.pressed))];
        self.send(self.devices.keyboard.as_ref(), &ev);
    }

    fn lock_keys(&self, keys: LockKeys) {
        let diff = (keys.0 ^ self.leds.load(Ordering::Relaxed)) & 7;
        for (bit, key) in LOCKS {
            if diff & bit != 0 {
                let press = [EvdevEvent::new(code::EV_KEY, key, 1)];
                let release = [EvdevEvent::new(code::EV_KEY, key, 0)];
                self.send(self.devices.keyboard.as_ref(), &press);
                self.send(self.devices.keyboard.as_ref(), &release);
            }
        }
    }

    fn mouse_motion(&self, dx: i32, dy: i32, buttons: Buttons) {
        let Some(mouse) = self.devices.mouse.as_ref() else {
            self.stats.no_device.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut ev = Vec::with_capacity(8);
        if dx != 0 {
            ev.push(EvdevEvent::new(code::EV_REL, code::REL_X, dx));
        }
        if dy != 0 {
            ev.push(EvdevEvent::new(code::EV_REL, code::REL_Y, dy));
        }
        self.button_changes(1, buttons.0, &mut ev);
        if !ev.is_empty() {
            self.send(Some(mouse), &ev);
        }
    }

    fn mouse_position(&self, x: u32, y: u32, display_id: u8, buttons: Buttons) {
        let Some(tablet) = self.devices.tablet.as_ref() else {
            self.stats.no_device.fetch_add(1, Ordering::Relaxed);
            return;
        };
        // One display channel carries every monitor of the QXL device: spice-gtk sends
        // positions in primary-surface coordinates with display 0.
        if display_id != 0 {
            debug!(
                display_id,
                "position on a display this server does not have"
            );
        }
        let (w, h) = self.model.surface_size(0).unwrap_or((1024, 768));
        let mut ev = vec![
            EvdevEvent::new(code::EV_ABS, code::ABS_X, Self::scale(x, w)),
            EvdevEvent::new(code::EV_ABS, code::ABS_Y, Self::scale(y, h)),
        ];
        self.button_changes(0, buttons.0, &mut ev);
        self.send(Some(tablet), &ev);
    }

    fn mouse_button(&self, button: MouseButton, pressed: bool, buttons: Buttons) {
        let (dev, idx) = self.pointer();
        let mut ev = Vec::with_capacity(4);
        match button {
            // Wheel steps are a press and a release; one step per press (as QEMU does).
            MouseButton::WheelUp | MouseButton::WheelDown => {
                if !pressed {
                    return;
                }
                let v = if button == MouseButton::WheelUp {
                    1
                } else {
                    -1
                };
                ev.push(EvdevEvent::new(code::EV_REL, code::REL_WHEEL, v));
            }
            _ => {
                let bit = match button {
                    MouseButton::Left => 1,
                    MouseButton::Middle => 2,
                    MouseButton::Right => 4,
                    MouseButton::Side => 32,
                    _ => 64,
                };
                // The mask is the state after the event; make it agree with the event itself.
                let mask = if pressed {
                    buttons.0 | bit
                } else {
                    buttons.0 & !bit
                };
                self.button_changes(idx, mask, &mut ev)
            }
        }
        if !ev.is_empty() {
            self.send(dev, &ev);
        }
    }

    fn mouse_mode(&self, mode: MouseMode) {
        let m = match mode {
            MouseMode::Client => MODE_CLIENT,
            MouseMode::Server => MODE_SERVER,
        };
        self.mode.store(m, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SurfaceFormat;

    #[derive(Default)]
    struct Rec(Mutex<Vec<Vec<EvdevEvent>>>, bool);
    impl EvdevDevice for Rec {
        fn send(&self, r: &[EvdevEvent]) -> bool {
            self.0.lock().unwrap().push(r.to_vec());
            !self.1
        }
    }
    impl Rec {
        fn take(&self) -> Vec<Vec<(u16, u16, i32)>> {
            std::mem::take(&mut *self.0.lock().unwrap())
                .into_iter()
                .map(|r| r.into_iter().map(|e| (e.kind, e.code, e.value)).collect())
                .collect()
        }
    }

    fn keymap(sc: u16) -> Option<u16> {
        match sc {
            0x1e => Some(30),
            0xe01d => Some(97),
            _ => None,
        }
    }

    fn rig() -> (GuestInput, Arc<Rec>, Arc<Rec>, Arc<Rec>, DisplayModel) {
        let (k, t, m) = (
            Arc::new(Rec::default()),
            Arc::new(Rec::default()),
            Arc::new(Rec::default()),
        );
        let model = DisplayModel::new();
        let devices = GuestDevices {
            keyboard: Some(k.clone()),
            tablet: Some(t.clone()),
            mouse: Some(m.clone()),
        };
        (
            GuestInput::new(devices, keymap, model.clone()),
            k,
            t,
            m,
            model,
        )
    }

    #[test]
    fn keys_become_linux_key_codes_and_unknown_ones_are_counted() {
        let (g, k, ..) = rig();
        g.key(KeyEvent {
            scancode: 0x1e,
            pressed: true,
        });
        g.key(KeyEvent {
            scancode: 0xe01d,
            pressed: false,
        });
        g.key(KeyEvent {
            scancode: 0x7f,
            pressed: true,
        });
        assert_eq!(k.take(), vec![vec![(1, 30, 1)], vec![(1, 97, 0)]]);
        assert_eq!(g.stats().unknown_keys.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn positions_scale_to_the_primary_surface_and_land_within_a_pixel() {
        let (g, _, t, m, model) = rig();
        model
            .create_surface(0, 1024, 768, SurfaceFormat::Xrgb32)
            .unwrap();
        g.mouse_mode(MouseMode::Client);
        for (x, y) in [(0, 0), (1023, 767), (300, 200), (511, 383)] {
            g.mouse_position(x, y, 0, Buttons(0));
            let r = t.take();
            let (vx, vy) = (r[0][0].2, r[0][1].2);
            // what a guest does with an axis of 0..=ABS_MAX on a 1024x768 screen
            let gx = (f64::from(vx) * 1023.0 / f64::from(ABS_MAX)).round() as u32;
            let gy = (f64::from(vy) * 767.0 / f64::from(ABS_MAX)).round() as u32;
            assert_eq!((gx, gy), (x, y));
        }
        g.mouse_position(5000, 5000, 0, Buttons(0));
        assert_eq!(t.take()[0][..2], [(3, 0, ABS_MAX), (3, 1, ABS_MAX)]);
        // buttons and wheel go to the tablet in client mode
        g.mouse_button(MouseButton::Left, true, Buttons(1));
        g.mouse_button(MouseButton::WheelDown, true, Buttons(17));
        g.mouse_button(MouseButton::WheelDown, false, Buttons(1));
        g.mouse_button(MouseButton::Left, false, Buttons(0));
        assert_eq!(
            t.take(),
            vec![vec![(1, 0x110, 1)], vec![(2, 8, -1)], vec![(1, 0x110, 0)]]
        );
        assert!(m.take().is_empty());
    }

    #[test]
    fn server_mode_motion_and_buttons_go_to_the_relative_mouse() {
        let (g, _, t, m, _) = rig();
        g.mouse_motion(5, -3, Buttons(0));
        g.mouse_button(MouseButton::Right, true, Buttons(4));
        g.mouse_motion(0, 2, Buttons(4));
        g.mouse_button(MouseButton::WheelUp, true, Buttons(12));
        g.mouse_button(MouseButton::Right, false, Buttons(0));
        assert_eq!(
            m.take(),
            vec![
                vec![(2, 0, 5), (2, 1, -3)],
                vec![(1, 0x111, 1)],
                vec![(2, 1, 2)],
                vec![(2, 8, 1)],
                vec![(1, 0x111, 0)]
            ]
        );
        assert!(t.take().is_empty());
    }

    #[test]
    fn long_reports_fit_the_smallest_event_queue() {
        let (g, _, t, ..) = rig();
        g.mouse_mode(MouseMode::Client);
        g.mouse_position(0, 0, 0, Buttons(1 | 2 | 4 | 32));
        let r = t.take();
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.len() <= MAX_REPORT_EVENTS));
        assert_eq!(r.concat().len(), 6);
    }

    #[test]
    fn lock_keys_follow_the_client_and_leds_come_back() {
        let (g, k, ..) = rig();
        assert_eq!(g.guest_leds(false, true, false), LockKeys(4));
        // client: caps + num; guest: caps -> toggle num only
        g.lock_keys(LockKeys(6));
        assert_eq!(k.take(), vec![vec![(1, 69, 1)], vec![(1, 69, 0)]]);
        assert_eq!(g.guest_leds(true, true, false), LockKeys(6));
        g.lock_keys(LockKeys(6));
        assert!(k.take().is_empty());
    }

    #[test]
    fn a_full_device_queue_is_counted_and_a_missing_device_too() {
        let full = Arc::new(Rec(Mutex::default(), true));
        let g = GuestInput::new(
            GuestDevices {
                keyboard: Some(full),
                ..Default::default()
            },
            keymap,
            DisplayModel::new(),
        );
        g.key(KeyEvent {
            scancode: 0x1e,
            pressed: true,
        });
        g.mouse_motion(1, 1, Buttons(0));
        g.mouse_position(1, 1, 0, Buttons(0));
        assert_eq!(g.stats().dropped.load(Ordering::Relaxed), 1);
        assert_eq!(g.stats().no_device.load(Ordering::Relaxed), 2);
    }
}

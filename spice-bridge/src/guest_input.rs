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

use vdi_port::input::abi::{
    ABS_MAX_COORD, ABS_X, ABS_Y, BTN_EXTRA, BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, BTN_SIDE, REL_WHEEL,
    REL_X, REL_Y,
};
use vdi_port::input::{keymap, InputEvent, InputHandle, LedState, PushError};

use crate::input::{Buttons, InputSink, KeyEvent, LockKeys, MouseButton, MouseMode};
use crate::model::DisplayModel;

/// Linux key codes of the lock keys (linux/input-event-codes.h).
const KEY_CAPSLOCK: u16 = 58;
const KEY_NUMLOCK: u16 = 69;
const KEY_SCROLLLOCK: u16 = 70;

/// A guest input device that takes whole reports. The device appends the closing
/// `EV_SYN/SYN_REPORT` itself.
pub trait EvdevDevice: Send + Sync {
    /// Queues one report for the guest. Must not block.
    fn send(&self, report: &[InputEvent]) -> Result<(), PushError>;
}

/// `vdi-port`'s virtio-input devices (served over vhost-user or in process).
impl EvdevDevice for InputHandle {
    fn send(&self, report: &[InputEvent]) -> Result<(), PushError> {
        self.push_report(report)
    }
}

/// Counters of [`GuestInput`].
#[derive(Debug, Default)]
pub struct GuestInputStats {
    /// reports handed to a device
    pub reports: AtomicU64,
    /// reports a device dropped (its queue was full)
    pub dropped: AtomicU64,
    /// reports for a device whose guest driver is not running
    pub inactive: AtomicU64,
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
    /// absolute tablet (EV_ABS 0..=0x7fff, buttons, wheel): client mouse mode
    pub tablet: Option<Arc<dyn EvdevDevice>>,
    /// relative mouse (EV_REL, buttons, wheel): server mouse mode
    pub mouse: Option<Arc<dyn EvdevDevice>>,
}

/// Routes Spice input to guest devices (see the module docs).
pub struct GuestInput {
    devices: GuestDevices,
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
    (1, BTN_LEFT),
    (2, BTN_MIDDLE),
    (4, BTN_RIGHT),
    (32, BTN_SIDE),
    (64, BTN_EXTRA),
];

/// Spice lock bits with the Linux key that toggles each.
const LOCKS: [(u16, u16); 3] = [(1, KEY_SCROLLLOCK), (2, KEY_NUMLOCK), (4, KEY_CAPSLOCK)];

impl GuestInput {
    /// Feeds `devices`; absolute positions are scaled to the tablet's axes by the size of the
    /// primary surface in `model`.
    pub fn new(devices: GuestDevices, model: DisplayModel) -> Self {
        GuestInput {
            devices,
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
    pub fn guest_leds(&self, leds: LedState) -> LockKeys {
        let bits = u16::from(leds.scroll_lock())
            | u16::from(leds.num_lock()) << 1
            | u16::from(leds.caps_lock()) << 2;
        self.leds.store(bits, Ordering::Relaxed);
        LockKeys(bits)
    }

    fn send(&self, dev: Option<&Arc<dyn EvdevDevice>>, report: &[InputEvent]) {
        let Some(dev) = dev else {
            self.stats.no_device.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.stats.reports.fetch_add(1, Ordering::Relaxed);
        match dev.send(report) {
            Ok(()) => {}
            Err(PushError::Inactive) => {
                self.stats.inactive.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                if n.is_power_of_two() {
                    warn!(dropped = n + 1, "guest input report dropped: {e}");
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
    fn button_changes(&self, idx: usize, mask: u16, out: &mut Vec<InputEvent>) {
        let mut last = self.buttons.lock().unwrap_or_else(|e| e.into_inner());
        let changed = last[idx] ^ mask;
        for (bit, btn) in BUTTON_BITS {
            if changed & bit != 0 {
                out.push(InputEvent::key(btn, mask & bit != 0));
            }
        }
        last[idx] = mask;
    }

    /// Maps pixel `v` of `size` to the centre of its span on a 0..=0x7fff axis, so a guest
    /// that maps the axis back onto its screen lands inside that pixel whichever rounding it
    /// uses (libinput scales by `size / (max + 1)`, others by `(size - 1) / max`).
    fn scale(v: u32, size: u32) -> u32 {
        let size = u64::from(size.max(1));
        let v = u64::from(v).min(size - 1);
        let span = u64::from(ABS_MAX_COORD) + 1;
        // (2v + 1) * span / (2 size) < span because v < size; the min keeps it on the axis.
        ((2 * v + 1) * span / (2 * size)).min(u64::from(ABS_MAX_COORD)) as u32
    }
}

impl InputSink for GuestInput {
    fn key(&self, e: KeyEvent) {
        let Some(code) = keymap::set1_to_linux(e.scancode) else {
            self.stats.unknown_keys.fetch_add(1, Ordering::Relaxed);
            debug!(
                scancode = e.scancode,
                "key without a Linux key code dropped"
            );
            return;
        };
        let ev = [InputEvent::key(code, e.pressed)];
        self.send(self.devices.keyboard.as_ref(), &ev);
    }

    fn lock_keys(&self, keys: LockKeys) {
        let diff = (keys.0 ^ self.leds.load(Ordering::Relaxed)) & 7;
        for (bit, key) in LOCKS {
            if diff & bit != 0 {
                let press = [InputEvent::key(key, true)];
                let release = [InputEvent::key(key, false)];
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
            ev.push(InputEvent::rel(REL_X, dx));
        }
        if dy != 0 {
            ev.push(InputEvent::rel(REL_Y, dy));
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
            InputEvent::abs(ABS_X, Self::scale(x, w)),
            InputEvent::abs(ABS_Y, Self::scale(y, h)),
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
                ev.push(InputEvent::rel(REL_WHEEL, v));
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
    struct Rec(Mutex<Vec<Vec<InputEvent>>>, bool);
    impl EvdevDevice for Rec {
        fn send(&self, r: &[InputEvent]) -> Result<(), PushError> {
            self.0.lock().unwrap().push(r.to_vec());
            if self.1 {
                Err(PushError::Full {
                    pending: 256,
                    needed: r.len() + 1,
                })
            } else {
                Ok(())
            }
        }
    }
    impl Rec {
        fn take(&self) -> Vec<Vec<(u16, u16, i32)>> {
            std::mem::take(&mut *self.0.lock().unwrap())
                .into_iter()
                .map(|r| {
                    r.into_iter()
                        .map(|e| (e.type_, e.code, e.value as i32))
                        .collect()
                })
                .collect()
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
        (GuestInput::new(devices, model.clone()), k, t, m, model)
    }

    fn key(scancode: u16, pressed: bool) -> KeyEvent {
        KeyEvent { scancode, pressed }
    }

    #[test]
    fn keys_become_linux_key_codes_and_unknown_ones_are_counted() {
        let (g, k, ..) = rig();
        g.key(key(0x1e, true));
        g.key(key(0xe01d, false));
        g.key(key(0x7f, true));
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
            // what guests do with an axis of 0..=0x7fff on a 1024x768 screen: libinput's
            // v * size / (max + 1), and the rounded v * (size - 1) / max
            let span = f64::from(ABS_MAX_COORD) + 1.0;
            let lx = (f64::from(vx) * 1024.0 / span).floor() as u32;
            let ly = (f64::from(vy) * 768.0 / span).floor() as u32;
            assert_eq!((lx, ly), (x, y), "libinput-style");
            let gx = (f64::from(vx) * 1023.0 / f64::from(ABS_MAX_COORD)).round() as u32;
            let gy = (f64::from(vy) * 767.0 / f64::from(ABS_MAX_COORD)).round() as u32;
            assert!(
                gx.abs_diff(x) <= 1 && gy.abs_diff(y) <= 1,
                "({gx},{gy}) for ({x},{y})"
            );
        }
        // beyond the surface: the last pixel
        g.mouse_position(1023, 767, 0, Buttons(0));
        let last = t.take();
        g.mouse_position(5000, 5000, 0, Buttons(0));
        assert_eq!(t.take(), last);
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
    fn lock_keys_follow_the_client_and_leds_come_back() {
        let (g, k, ..) = rig();
        // guest LED bits: NUML 0, CAPSL 1, SCROLLL 2
        assert_eq!(g.guest_leds(LedState(0b010)), LockKeys(4));
        // client: caps + num; guest: caps -> toggle num only
        g.lock_keys(LockKeys(6));
        assert_eq!(k.take(), vec![vec![(1, 69, 1)], vec![(1, 69, 0)]]);
        assert_eq!(g.guest_leds(LedState(0b011)), LockKeys(6));
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
            DisplayModel::new(),
        );
        g.key(key(0x1e, true));
        g.mouse_motion(1, 1, Buttons(0));
        g.mouse_position(1, 1, 0, Buttons(0));
        assert_eq!(g.stats().dropped.load(Ordering::Relaxed), 1);
        assert_eq!(g.stats().no_device.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn reports_reach_a_real_virtio_input_handle_only_while_its_driver_runs() {
        use vdi_port::input::{InputDevice, InputKind, InputOptions};
        let dev = InputDevice::new(InputKind::Keyboard, InputOptions::default()).unwrap();
        let g = GuestInput::new(
            GuestDevices {
                keyboard: Some(Arc::new(dev.handle())),
                ..Default::default()
            },
            DisplayModel::new(),
        );
        g.key(key(0x1e, true));
        assert_eq!(g.stats().inactive.load(Ordering::Relaxed), 1);
    }
}

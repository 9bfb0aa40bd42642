//! Client mouse: an absolute pointer on `/dev/uinput` that the guest's input stack (libinput,
//! Xorg, Wayland compositors) takes like a tablet, driven by the server's MOUSE_STATE messages.
//!
//! Unlike spice-vdagentd, the device's axes have a fixed range ([`ABS_MAX`]) and positions are
//! scaled to the desktop, so a resolution change does not re-create the device (re-creating it
//! loses the pointer for a moment and re-runs the desktop's device setup). Positions are mapped
//! across several monitors with the layout the session agent reported: MOUSE_STATE coordinates
//! are relative to the Spice display (`display_id`), the device spans the bounding box of all
//! monitors.

use std::io;

use evdev::uinput::VirtualDevice;
use evdev::{
    AbsInfo, AbsoluteAxisCode, AttributeSet, EventType, InputEvent, KeyCode, RelativeAxisCode,
    UinputAbsSetup,
};

use crate::ipc::GuestMonitor;

/// The largest value of the device's X and Y axes (the range is 0..=ABS_MAX).
pub const ABS_MAX: i32 = 32767;

/// `VDAgentMouseState.buttons` masks.
pub mod button {
    /// Left.
    pub const LEFT: u32 = 1 << 1;
    /// Middle.
    pub const MIDDLE: u32 = 1 << 2;
    /// Right.
    pub const RIGHT: u32 = 1 << 3;
    /// Wheel up (one notch per press).
    pub const UP: u32 = 1 << 4;
    /// Wheel down.
    pub const DOWN: u32 = 1 << 5;
    /// Side (back).
    pub const SIDE: u32 = 1 << 6;
    /// Extra (forward).
    pub const EXTRA: u32 = 1 << 7;
}

const BUTTONS: [(u32, KeyCode); 5] = [
    (button::LEFT, KeyCode::BTN_LEFT),
    (button::MIDDLE, KeyCode::BTN_MIDDLE),
    (button::RIGHT, KeyCode::BTN_RIGHT),
    (button::SIDE, KeyCode::BTN_SIDE),
    (button::EXTRA, KeyCode::BTN_EXTRA),
];

/// Where a MOUSE_STATE lands: the desktop pixel and the desktop's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DesktopPoint {
    /// X in the desktop (0 = the leftmost monitor's left edge).
    pub x: u32,
    /// Y.
    pub y: u32,
    /// Desktop width (bounding box of all monitors).
    pub width: u32,
    /// Desktop height.
    pub height: u32,
}

/// Maps a position in Spice display `display_id` to the desktop, with the session's layout.
/// `None` if the display is not in the layout (the event is dropped, as spice-vdagentd does) or
/// the layout is empty; positions beyond the monitor are clamped to it.
pub fn to_desktop(
    layout: &[GuestMonitor],
    display_id: u32,
    x: u32,
    y: u32,
) -> Option<DesktopPoint> {
    let m = layout.iter().find(|m| m.display_id == display_id)?;
    let left = layout.iter().map(|m| i64::from(m.x)).min()?;
    let top = layout.iter().map(|m| i64::from(m.y)).min()?;
    let right = layout
        .iter()
        .map(|m| i64::from(m.x) + i64::from(m.width))
        .max()?;
    let bottom = layout
        .iter()
        .map(|m| i64::from(m.y) + i64::from(m.height))
        .max()?;
    let (w, h) = (right - left, bottom - top);
    if w <= 0 || h <= 0 || m.width == 0 || m.height == 0 {
        return None;
    }
    let px = i64::from(m.x) - left + i64::from(x.min(m.width - 1));
    let py = i64::from(m.y) - top + i64::from(y.min(m.height - 1));
    Some(DesktopPoint {
        x: px as u32,
        y: py as u32,
        width: w as u32,
        height: h as u32,
    })
}

/// The axis value that libinput maps back to pixel `p` of `size` pixels: the pixel's centre.
/// (libinput scales `value * size / (ABS_MAX + 1)` and truncates.)
pub fn axis_value(p: u32, size: u32) -> i32 {
    if size == 0 {
        return 0;
    }
    let range = i64::from(ABS_MAX) + 1;
    let v = (2 * i64::from(p) + 1) * range / (2 * i64::from(size));
    v.clamp(0, i64::from(ABS_MAX)) as i32
}

/// The events one MOUSE_STATE produces, given the previous button mask: ABS_X/ABS_Y, a key
/// event per changed button, a wheel notch per rising UP/DOWN bit (REL_WHEEL and its
/// high-resolution twin, 120 per notch). The device adds SYN_REPORT.
pub fn events(p: DesktopPoint, buttons: u32, previous: u32) -> Vec<InputEvent> {
    let mut ev = vec![
        InputEvent::new(
            EventType::ABSOLUTE.0,
            AbsoluteAxisCode::ABS_X.0,
            axis_value(p.x, p.width),
        ),
        InputEvent::new(
            EventType::ABSOLUTE.0,
            AbsoluteAxisCode::ABS_Y.0,
            axis_value(p.y, p.height),
        ),
    ];
    for (mask, key) in BUTTONS {
        if (buttons ^ previous) & mask != 0 {
            ev.push(InputEvent::new(
                EventType::KEY.0,
                key.0,
                i32::from(buttons & mask != 0),
            ));
        }
    }
    for (mask, notch) in [(button::UP, 1), (button::DOWN, -1)] {
        if buttons & mask != 0 && previous & mask == 0 {
            ev.push(InputEvent::new(
                EventType::RELATIVE.0,
                RelativeAxisCode::REL_WHEEL.0,
                notch,
            ));
            ev.push(InputEvent::new(
                EventType::RELATIVE.0,
                RelativeAxisCode::REL_WHEEL_HI_RES.0,
                notch * 120,
            ));
        }
    }
    ev
}

/// The uinput tablet.
pub struct Tablet {
    device: VirtualDevice,
    buttons: u32,
}

impl Tablet {
    /// Creates the device ("spice-agent tablet") on /dev/uinput.
    pub fn create() -> io::Result<Tablet> {
        let mut keys = AttributeSet::<KeyCode>::new();
        for (_, k) in BUTTONS {
            keys.insert(k);
        }
        let mut rel = AttributeSet::<RelativeAxisCode>::new();
        rel.insert(RelativeAxisCode::REL_WHEEL);
        rel.insert(RelativeAxisCode::REL_WHEEL_HI_RES);
        let abs = |code| UinputAbsSetup::new(code, AbsInfo::new(0, 0, ABS_MAX, 0, 0, 0));
        let device = VirtualDevice::builder()?
            .name("spice-agent tablet")
            .with_keys(&keys)?
            .with_relative_axes(&rel)?
            .with_absolute_axis(&abs(AbsoluteAxisCode::ABS_X))?
            .with_absolute_axis(&abs(AbsoluteAxisCode::ABS_Y))?
            .build()?;
        Ok(Tablet { device, buttons: 0 })
    }

    /// Moves the pointer to `p` with `buttons` (agent masks) down.
    pub fn motion(&mut self, p: DesktopPoint, buttons: u32) -> io::Result<()> {
        let ev = events(p, buttons, self.buttons);
        self.buttons = buttons;
        self.device.emit(&ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mon(display_id: u32, x: i32, y: i32, width: u32, height: u32) -> GuestMonitor {
        GuestMonitor {
            display_id,
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn positions_map_across_monitors() {
        let layout = [mon(0, 0, 0, 1024, 768), mon(1, 1024, 100, 800, 600)];
        let p = to_desktop(&layout, 1, 10, 20).unwrap();
        assert_eq!((p.x, p.y, p.width, p.height), (1034, 120, 1824, 768));
        assert_eq!(to_desktop(&layout, 2, 0, 0), None);
        // clamped to the monitor
        assert_eq!(to_desktop(&layout, 0, 5000, 5000).unwrap().x, 1023);
        // a layout whose origin is not 0,0
        let shifted = [mon(0, -100, -50, 640, 480)];
        assert_eq!(to_desktop(&shifted, 0, 3, 4).unwrap().x, 3);
        assert_eq!(to_desktop(&[], 0, 0, 0), None);
    }

    #[test]
    fn axis_values_land_on_the_pixel() {
        // what libinput computes back: value * size / (ABS_MAX + 1), truncated
        for size in [1u32, 640, 890, 1024, 1920, 3840, 32768] {
            for p in [0, 1, size / 3, size / 2, size - 1]
                .into_iter()
                .filter(|&p| p < size)
            {
                let v = axis_value(p, size);
                assert!((0..=ABS_MAX).contains(&v));
                let back = i64::from(v) * i64::from(size) / (i64::from(ABS_MAX) + 1);
                assert_eq!(back, i64::from(p), "size {size} pixel {p}");
            }
        }
    }

    #[test]
    fn buttons_and_wheel_become_events() {
        let p = DesktopPoint {
            x: 0,
            y: 0,
            width: 10,
            height: 10,
        };
        let codes = |ev: Vec<InputEvent>| {
            ev.iter()
                .map(|e| (e.event_type().0, e.code(), e.value()))
                .collect::<Vec<_>>()
        };
        let down = codes(events(p, button::LEFT, 0));
        assert!(down.contains(&(EventType::KEY.0, KeyCode::BTN_LEFT.0, 1)));
        let held = codes(events(p, button::LEFT, button::LEFT));
        assert_eq!(held.len(), 2, "no key event while the button stays down");
        let up = codes(events(p, 0, button::LEFT));
        assert!(up.contains(&(EventType::KEY.0, KeyCode::BTN_LEFT.0, 0)));
        let wheel = codes(events(p, button::DOWN, 0));
        assert!(wheel.contains(&(EventType::RELATIVE.0, RelativeAxisCode::REL_WHEEL.0, -1)));
        assert!(wheel.contains(&(
            EventType::RELATIVE.0,
            RelativeAxisCode::REL_WHEEL_HI_RES.0,
            -120
        )));
        // the release of a wheel button is no notch
        assert_eq!(codes(events(p, 0, button::DOWN)).len(), 2);
    }
}

//! virtio-input devices: keyboard, absolute tablet and relative mouse (virtio spec §5.8).
//!
//! * [`InputDevice`] is the device model: config space, eventq delivery, statusq handling. It
//!   implements [`crate::VirtioDevice`], so a VMM can drive it in process and
//!   [`crate::vhost_user::serve`] can run it as a vhost-user backend.
//! * [`InputHandle`] is the owner's side (the Spice server): cloneable, `Send + Sync`, never
//!   blocks. It pushes whole reports, reads counters, LED state and whether the guest driver is
//!   active.
//! * [`StatusSink`] receives the guest's LED changes.
//! * [`keymap::set1_to_linux`] maps Spice (set 1) scancodes to Linux key codes.

pub mod abi;
mod config;
mod device;
pub mod keymap;

pub use abi::InputEvent;
pub use device::{
    InputDevice, InputHandle, InputMetrics, InputOptions, InputStats, LedState, PushError,
    StatusSink, DEFAULT_PENDING_EVENTS, MAX_QUEUE_SIZE,
};

/// Which input device to model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputKind {
    /// PC keyboard: EV_KEY (every key of [`keymap`]), EV_REP, EV_LED (Num, Caps, Scroll Lock).
    Keyboard,
    /// Absolute pointer for Spice client mouse mode: EV_ABS X/Y in 0..=0x7fff, five buttons,
    /// wheel and horizontal wheel.
    Tablet,
    /// Relative pointer for Spice server mouse mode: EV_REL X/Y/wheel/hwheel, five buttons.
    Mouse,
}

impl InputKind {
    /// Default device name (config ID_NAME).
    pub fn default_name(self) -> &'static str {
        match self {
            InputKind::Keyboard => "spice-rs keyboard",
            InputKind::Tablet => "spice-rs tablet",
            InputKind::Mouse => "spice-rs mouse",
        }
    }
}

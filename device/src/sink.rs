//! What the device tells the VMM: the INTx line ([`InterruptLine`]) and display events
//! ([`DisplaySink`] receiving [`DeviceEvent`]s).

use crate::decode::{CursorCommand, DecodeError, DisplayCommand, MonitorsConfig, SurfaceDesc};
use crate::memslot::SlotError;
use crate::render::Rect;
use crate::ring::RingKind;
use crate::vbe::VbeMode;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// The device's level-triggered INTx line (INTA#), implemented by the VMM.
///
/// The device calls [`set_level`](InterruptLine::set_level) on **every** re-evaluation of
/// `(int_pending & int_mask) != 0` (new interrupt bits, UPDATE_IRQ, reset, INTx-disable
/// changes), also when the level did not change. An adapter for an edge-style transport
/// (e.g. a vfio-user eventfd or KVM irqfd without resample) can therefore fire again when
/// it sees `true` while the line is already high (the guest wrote UPDATE_IRQ while the
/// condition still holds), and a plain level adapter can ignore repeated values.
pub trait InterruptLine: Send + Sync {
    /// New level of the line: `true` = asserted.
    fn set_level(&self, asserted: bool);
}

/// An interrupt line that goes nowhere (devices used without interrupts, e.g. Xorg UMS
/// guests that poll).
#[derive(Debug, Default)]
pub struct NoInterrupt;

impl InterruptLine for NoInterrupt {
    fn set_level(&self, _asserted: bool) {}
}

/// Display state the guest is in (QEMU's `qxl_mode`, reference §8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No primary surface; rings are consumed but nothing is shown.
    Undefined,
    /// Legacy VGA / Bochs VBE (class 0x0300 only); rings are not consumed.
    Vga,
    /// qxl-1 compat mode entered through SET_MODE.
    Compat,
    /// A guest primary surface exists (CREATE_PRIMARY).
    Native,
}

/// A guest bug the device detected. The operation was rejected, `QXL_INTERRUPT_ERROR`
/// raised and (for an async I/O) `QXL_INTERRUPT_IO_CMD` too.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GuestBug {
    /// An async I/O was started while another was still pending.
    #[error("async I/O {port} started while {pending} is pending")]
    SecondAsync {
        /// The new port.
        port: u8,
        /// The port still pending.
        pending: u8,
    },
    /// A write to an I/O port that does not exist (or is unimplemented: DETACH/ATTACH_PRIMARY).
    #[error("unexpected I/O port {0}")]
    UnknownPort(u8),
    /// MEMSLOT_ADD / MEMSLOT_DEL refused.
    #[error("memslot: {0}")]
    Memslot(SlotError),
    /// A port whose value must be 0 got something else.
    #[error("I/O port {port}: value {value} must be 0")]
    NonZeroValue {
        /// Port.
        port: u8,
        /// Value written.
        value: u8,
    },
    /// Surface id out of range.
    #[error("I/O port {port}: surface id {id} >= n_surfaces")]
    BadSurfaceId {
        /// Port.
        port: u8,
        /// The id.
        id: u32,
    },
    /// UPDATE_AREA with an inverted or negative rectangle.
    #[error("update area {area:?} of surface {surface} is invalid")]
    BadUpdateArea {
        /// Surface.
        surface: u32,
        /// The rectangle.
        area: Rect,
    },
    /// CREATE_PRIMARY while a primary exists.
    #[error("CREATE_PRIMARY while a primary surface exists")]
    PrimaryExists,
    /// CREATE_PRIMARY parameters refused.
    #[error("CREATE_PRIMARY refused: {0}")]
    BadPrimary(String),
    /// A ring's indices are garbage; the ring is parked until reset.
    #[error("{ring} ring parked: prod {prod}, cons {cons}")]
    RingIndices {
        /// Ring name.
        ring: &'static str,
        /// Guest producer index.
        prod: u32,
        /// Device consumer index.
        cons: u32,
    },
    /// SET_MODE with an unknown mode id.
    #[error("SET_MODE: unknown mode {0}")]
    BadMode(u32),
}

/// Everything the device reports to the VMM / Spice bridge, in order.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// A decoded, validated command-ring entry (draws, surface create/destroy, ...). The
    /// software renderer has already applied it.
    Display(DisplayCommand),
    /// A decoded cursor-ring entry.
    Cursor(CursorCommand),
    /// A ring entry that failed to decode; it was released without effect.
    CommandRejected {
        /// Ring it came from.
        ring: RingKind,
        /// `QXLCommand.type`.
        ty: u32,
        /// Why.
        error: DecodeError,
    },
    /// The guest created the primary surface (surface 0); the device left VGA mode.
    PrimaryCreated(SurfaceDesc),
    /// The primary surface was destroyed (DESTROY_PRIMARY, DESTROY_ALL_SURFACES, reset).
    PrimaryDestroyed,
    /// Surface `id` was destroyed through DESTROY_SURFACE_WAIT(_ASYNC).
    SurfaceDestroyed(u32),
    /// Every surface was destroyed (DESTROY_ALL_SURFACES(_ASYNC)).
    AllSurfacesDestroyed,
    /// UPDATE_AREA(_ASYNC) left the rendered pixels of `area` in guest memory.
    AreaUpdated {
        /// Surface.
        surface: u32,
        /// Area.
        area: Rect,
    },
    /// The guest's monitors config (MONITORS_CONFIG_ASYNC), decoded.
    MonitorsConfig(MonitorsConfig),
    /// The display mode changed.
    ModeChanged(Mode),
    /// Bochs VBE was enabled (with this mode) or disabled (`None`).
    VbeModeChanged(Option<VbeMode>),
    /// A guest bug; see [`GuestBug`]. With `halt_on_guest_bug` the device now ignores the
    /// guest until reset.
    GuestBug(GuestBug),
    /// Text the guest printed through QXL_IO_LOG (bounded to 4096 bytes).
    GuestLog(String),
    /// The device was reset (RESET port, SET_MODE, or [`crate::QxlDevice::reset`]).
    Reset,
}

/// Receiver of [`DeviceEvent`]s, implemented by the VMM or the Spice bridge. Called on the
/// thread that drives the device (the worker for ring traffic, the vCPU for sync I/O);
/// it must not block for long.
pub trait DisplaySink: Send {
    /// One event.
    fn event(&mut self, event: DeviceEvent);
}

/// A sink that drops everything.
#[derive(Debug, Default)]
pub struct NullSink;

impl DisplaySink for NullSink {
    fn event(&mut self, _event: DeviceEvent) {}
}

impl DisplaySink for Vec<DeviceEvent> {
    fn event(&mut self, event: DeviceEvent) {
        self.push(event);
    }
}

impl<T: DisplaySink> DisplaySink for Arc<Mutex<T>> {
    fn event(&mut self, event: DeviceEvent) {
        if let Ok(mut s) = self.lock() {
            s.event(event);
        }
    }
}

impl DisplaySink for std::sync::mpsc::Sender<DeviceEvent> {
    fn event(&mut self, event: DeviceEvent) {
        let _ = self.send(event);
    }
}

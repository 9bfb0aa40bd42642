//! What the session agent needs from a display backend: [`Randr`](super::randr::Randr) on X11,
//! [`Mutter`](super::mutter::Mutter) on GNOME Wayland. The run loop holds one as
//! `dyn DisplayBackend` and does not know which.

use std::collections::HashMap;
use std::sync::Mutex;

use tracing::info;

use crate::ipc::GuestMonitor;
use crate::protocol::{DeviceDisplayInfo, MonitorConfig};

use super::mutter::MutterError;
use super::randr::RandrError;
use super::wl_outputs::WlOutputsError;

/// Why a backend could not apply or read the monitors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DisplayError {
    /// The X11 RandR backend failed.
    #[error(transparent)]
    Randr(#[from] RandrError),
    /// The Mutter DisplayConfig backend failed.
    #[error(transparent)]
    Mutter(#[from] MutterError),
    /// The read-only Wayland output backend failed (or was asked to apply).
    #[error(transparent)]
    WlOutputs(#[from] WlOutputsError),
}

/// A way to set and read the guest's monitors.
pub trait DisplayBackend: Send + Sync {
    /// A short name for logs ("RandR", "Mutter DisplayConfig").
    fn name(&self) -> &'static str;
    /// Applies the client's MONITORS_CONFIG (index = Spice display id; 0×0 = disabled).
    fn apply(&self, config: &[MonitorConfig]) -> Result<(), DisplayError>;
    /// The monitors the guest shows now (what the daemon maps the client pointer with).
    fn layout(&self) -> Result<Vec<GuestMonitor>, DisplayError>;
    /// Takes GRAPHICS_DEVICE_INFO: which guest output each Spice display is.
    fn set_device_info(&self, entries: &[DeviceDisplayInfo]);
}

/// Spice display id ↔ guest output index, from GRAPHICS_DEVICE_INFO (connector index = output
/// index on a single card); without an entry a display id is its output index, as
/// spice-vdagent falls back.
#[derive(Debug, Default)]
pub struct DeviceMap(Mutex<HashMap<u32, usize>>);

impl DeviceMap {
    /// Replaces the map with `entries` (display id = channel id + monitor id).
    pub fn set(&self, entries: &[DeviceDisplayInfo]) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.clear();
        for e in entries {
            let display = e.channel_id.saturating_add(e.monitor_id);
            map.insert(display, e.device_display_id as usize);
        }
        info!("device info: display -> output {map:?}");
    }

    /// The output index of a Spice display.
    pub fn output_of(&self, display: u32) -> usize {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&display).copied().unwrap_or(display as usize)
    }

    /// The Spice display shown on an output.
    pub fn display_of(&self, output: usize) -> u32 {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .find(|(_, &o)| o == output)
            .map(|(&d, _)| d)
            .unwrap_or(output as u32)
    }
}

/// Which backend a session should try first, from its environment: Mutter's DisplayConfig when
/// `XDG_CURRENT_DESKTOP` names GNOME (a colon-separated list, e.g. `ubuntu:GNOME`) and
/// `WAYLAND_DISPLAY` is set. (On GNOME Wayland `DISPLAY` may be set too, for XWayland, whose
/// RandR changes Mutter ignores.) The caller still checks that the bus name exists.
pub fn wants_mutter(xdg_current_desktop: Option<&str>, wayland_display: Option<&str>) -> bool {
    let gnome =
        xdg_current_desktop.is_some_and(|d| d.split(':').any(|e| e.eq_ignore_ascii_case("GNOME")));
    gnome && wayland_display.is_some_and(|w| !w.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutter_is_wanted_on_gnome_wayland_only() {
        assert!(wants_mutter(Some("GNOME"), Some("wayland-0")));
        assert!(wants_mutter(Some("ubuntu:GNOME"), Some("wayland-0")));
        assert!(!wants_mutter(Some("GNOME"), None));
        assert!(!wants_mutter(Some("GNOME"), Some("")));
        assert!(!wants_mutter(Some("KDE"), Some("wayland-0")));
        assert!(!wants_mutter(Some("GNOME-Flashback"), Some("wayland-0")));
        assert!(!wants_mutter(None, Some("wayland-0")));
    }

    #[test]
    fn device_map_falls_back_to_the_index() {
        let m = DeviceMap::default();
        assert_eq!((m.output_of(1), m.display_of(1)), (1, 1));
        m.set(&[DeviceDisplayInfo {
            channel_id: 0,
            monitor_id: 0,
            device_display_id: 2,
            device_address: "pci/0000/02.0".into(),
        }]);
        assert_eq!((m.output_of(0), m.display_of(2)), (2, 0));
    }
}

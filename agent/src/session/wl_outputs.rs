//! The monitors of a Wayland compositor that has no display API for clients (sway, other
//! wlroots compositors): read from `wl_output`, never set. The layout lets `spice-agentd` place
//! the client's pointer; a MONITORS_CONFIG is answered with an error, as the compositor alone
//! sets modes there.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use wayland_client::globals::{registry_queue_init, GlobalListContents};
use wayland_client::protocol::wl_output::{self, WlOutput};
use wayland_client::protocol::wl_registry::WlRegistry;
use wayland_client::{Connection, Dispatch, QueueHandle, WEnum};

use super::display::{DeviceMap, DisplayBackend, DisplayError};
use crate::ipc::GuestMonitor;
use crate::protocol::{DeviceDisplayInfo, MonitorConfig};

/// At most this many outputs are read (a hostile or broken compositor cannot grow the list).
const MAX_OUTPUTS: usize = 16;

/// Why the outputs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WlOutputsError {
    /// No Wayland connection.
    #[error("wayland connection: {0}")]
    Connect(#[from] wayland_client::ConnectError),
    /// The compositor's socket could not be reached.
    #[error("wayland socket: {0}")]
    Socket(std::io::Error),
    /// The registry could not be read.
    #[error("wayland registry: {0}")]
    Globals(#[from] wayland_client::globals::GlobalError),
    /// The connection failed during a round trip.
    #[error("wayland dispatch: {0}")]
    Dispatch(#[from] wayland_client::DispatchError),
    /// The compositor cannot be asked to change modes.
    #[error("this compositor offers clients no way to set modes")]
    Unsupported,
}

/// One output as `wl_output` describes it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Output {
    x: i32,
    y: i32,
    /// The current mode, in pixels.
    mode: Option<(i32, i32)>,
    scale: i32,
}

#[derive(Debug, Default)]
struct Outputs(Vec<Output>);

impl Dispatch<WlRegistry, GlobalListContents> for Outputs {
    fn event(
        _: &mut Self,
        _: &WlRegistry,
        _: wayland_client::protocol::wl_registry::Event,
        _: &GlobalListContents,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
    }
}

impl Dispatch<WlOutput, usize> for Outputs {
    fn event(
        state: &mut Self,
        _: &WlOutput,
        event: wl_output::Event,
        index: &usize,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        let Some(o) = state.0.get_mut(*index) else {
            return;
        };
        match event {
            wl_output::Event::Geometry { x, y, .. } => (o.x, o.y) = (x, y),
            wl_output::Event::Mode {
                flags: WEnum::Value(f),
                width,
                height,
                ..
            } if f.contains(wl_output::Mode::Current) => o.mode = Some((width, height)),
            wl_output::Event::Scale { factor } => o.scale = factor,
            _ => {}
        }
    }
}

/// The layout in the compositor's logical coordinates (a mode divided by its output's scale),
/// outputs without a current mode left out; output index = display id unless mapped.
fn layout_of(outputs: &[Output], map: &DeviceMap) -> Vec<GuestMonitor> {
    outputs
        .iter()
        .enumerate()
        .filter_map(|(i, o)| {
            let (w, h) = o.mode?;
            let s = o.scale.max(1);
            let (w, h) = (u32::try_from(w / s).ok()?, u32::try_from(h / s).ok()?);
            (w > 0 && h > 0).then(|| GuestMonitor {
                display_id: map.display_of(i),
                x: o.x,
                y: o.y,
                width: w,
                height: h,
            })
        })
        .collect()
}

/// Reads the outputs of the compositor at `$WAYLAND_DISPLAY` (a new connection per read: the
/// layout is read rarely, at start and on the client's requests).
#[derive(Debug, Default)]
pub struct WlOutputs {
    /// The compositor's socket (`None`: `$WAYLAND_DISPLAY` in `$XDG_RUNTIME_DIR`).
    socket: Option<PathBuf>,
    map: DeviceMap,
}

impl WlOutputs {
    /// Checks that the compositor (`socket`, else the environment's) answers.
    pub fn connect(socket: Option<&Path>) -> Result<WlOutputs, WlOutputsError> {
        let w = WlOutputs {
            socket: socket.map(Path::to_path_buf),
            ..WlOutputs::default()
        };
        w.read()?;
        Ok(w)
    }

    fn read(&self) -> Result<Vec<GuestMonitor>, WlOutputsError> {
        let conn = match &self.socket {
            None => Connection::connect_to_env()?,
            Some(p) => {
                Connection::from_socket(UnixStream::connect(p).map_err(WlOutputsError::Socket)?)?
            }
        };
        let (globals, mut queue) = registry_queue_init::<Outputs>(&conn)?;
        let qh = queue.handle();
        let mut state = Outputs::default();
        let registry = globals.registry();
        for g in globals.contents().clone_list() {
            if g.interface == "wl_output" && state.0.len() < MAX_OUTPUTS {
                let index = state.0.len();
                state.0.push(Output::default());
                // version 2 has the scale event; nothing later is needed
                let _: WlOutput = registry.bind(g.name, g.version.min(2), &qh, index);
            }
        }
        queue.roundtrip(&mut state)?;
        Ok(layout_of(&state.0, &self.map))
    }
}

impl DisplayBackend for WlOutputs {
    fn name(&self) -> &'static str {
        "Wayland outputs (read only)"
    }

    fn apply(&self, _config: &[MonitorConfig]) -> Result<(), DisplayError> {
        Err(WlOutputsError::Unsupported.into())
    }

    fn layout(&self) -> Result<Vec<GuestMonitor>, DisplayError> {
        Ok(self.read()?)
    }

    fn set_device_info(&self, entries: &[DeviceDisplayInfo]) {
        self.map.set(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_in_logical_pixels_without_modeless_outputs() {
        let outs = [
            Output {
                x: 0,
                y: 0,
                mode: Some((1920, 1080)),
                scale: 1,
            },
            Output {
                x: 1920,
                y: 0,
                mode: Some((2560, 1440)),
                scale: 2,
            },
            Output::default(), // no current mode: off
        ];
        let l = layout_of(&outs, &DeviceMap::default());
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].width, l[0].height), (1920, 1080));
        assert_eq!(
            (l[1].display_id, l[1].x, l[1].width, l[1].height),
            (1, 1920, 1280, 720)
        );
    }
}

//! The vdagent protocol as the guest agent sees it (`../shared/reference/agent-and-vdiport.md`
//! §2–3): the VDI port byte stream of 8-byte chunk headers, `VDAgentMessage`s reassembled per
//! chunk port, and every `VD_AGENT_*` message spice-gtk 0.42 and spice-server send or expect,
//! decoded into [`Message`] and encoded back.
//!
//! Everything here comes from the host and is untrusted: the reassembler bounds each message by a
//! configured limit before allocating, and [`Message::parse`] checks every length against what
//! the type allows (the minimum per type, the exact size where the protocol fixes one), so a
//! malformed message is an error value, never a panic or an oversized allocation.

use std::fmt;

/// `VDIChunkHeader.port` of traffic between the client and the agent (relayed by the server).
pub const VDP_CLIENT_PORT: u32 = 1;
/// `VDIChunkHeader.port` of messages the server itself sends (MOUSE_STATE, ...).
pub const VDP_SERVER_PORT: u32 = 2;
/// Size of a `VDIChunkHeader`.
pub const CHUNK_HEADER_SIZE: usize = 8;
/// Size of a `VDAgentMessage` header.
pub const MSG_HEADER_SIZE: usize = 20;
/// `VDAgentMessage.protocol`.
pub const VD_AGENT_PROTOCOL: u32 = 1;
/// Largest chunk payload on the port (`VD_AGENT_MAX_DATA_SIZE`), both ways.
pub const MAX_CHUNK: usize = 2048;
/// Most monitors a MONITORS_CONFIG may name (spice-server's limit).
pub const MAX_MONITORS: u32 = 256;

/// `VD_AGENT_*` message types.
pub mod msg {
    /// Server → agent: the client's pointer.
    pub const MOUSE_STATE: u32 = 1;
    /// Client → agent: the client's monitor layout.
    pub const MONITORS_CONFIG: u32 = 2;
    /// Agent → client: acknowledgement of a MONITORS_CONFIG or DISPLAY_CONFIG.
    pub const REPLY: u32 = 3;
    /// Clipboard data, both ways.
    pub const CLIPBOARD: u32 = 4;
    /// Client → agent (Windows agents only): display effects.
    pub const DISPLAY_CONFIG: u32 = 5;
    /// Both ways: capability bits.
    pub const ANNOUNCE_CAPABILITIES: u32 = 6;
    /// Both ways: "I own the clipboard, with these types".
    pub const CLIPBOARD_GRAB: u32 = 7;
    /// Both ways: "send me the clipboard as this type".
    pub const CLIPBOARD_REQUEST: u32 = 8;
    /// Both ways: "I no longer own the clipboard".
    pub const CLIPBOARD_RELEASE: u32 = 9;
    /// Client → agent: a file transfer starts.
    pub const FILE_XFER_START: u32 = 10;
    /// Both ways: a file transfer's status.
    pub const FILE_XFER_STATUS: u32 = 11;
    /// Client → agent: file bytes.
    pub const FILE_XFER_DATA: u32 = 12;
    /// Server → agent: the last client went away.
    pub const CLIENT_DISCONNECTED: u32 = 13;
    /// Client → agent: the largest clipboard the client takes.
    pub const MAX_CLIPBOARD: u32 = 14;
    /// Client → agent: the client's volume.
    pub const AUDIO_VOLUME_SYNC: u32 = 15;
    /// Server → agent: which guest output each Spice display is.
    pub const GRAPHICS_DEVICE_INFO: u32 = 16;
    /// One past the last type.
    pub const END_MESSAGE: u32 = 17;
}

/// `VD_AGENT_CAP_*` bit numbers.
pub mod cap {
    /// Handles MOUSE_STATE.
    pub const MOUSE_STATE: u32 = 0;
    /// Handles MONITORS_CONFIG.
    pub const MONITORS_CONFIG: u32 = 1;
    /// Sends and understands REPLY.
    pub const REPLY: u32 = 2;
    /// The old push-style clipboard.
    pub const CLIPBOARD: u32 = 3;
    /// Handles DISPLAY_CONFIG.
    pub const DISPLAY_CONFIG: u32 = 4;
    /// Grab/request/data/release clipboard.
    pub const CLIPBOARD_BY_DEMAND: u32 = 5;
    /// A 4-byte selection prefix on the clipboard messages.
    pub const CLIPBOARD_SELECTION: u32 = 6;
    /// Accepts disabled (0×0) monitors in MONITORS_CONFIG.
    pub const SPARSE_MONITORS_CONFIG: u32 = 7;
    /// Guest text ends lines with LF.
    pub const GUEST_LINEEND_LF: u32 = 8;
    /// Guest text ends lines with CRLF.
    pub const GUEST_LINEEND_CRLF: u32 = 9;
    /// Honours MAX_CLIPBOARD.
    pub const MAX_CLIPBOARD: u32 = 10;
    /// Applies AUDIO_VOLUME_SYNC.
    pub const AUDIO_VOLUME_SYNC: u32 = 11;
    /// Client: monitor positions in MONITORS_CONFIG.
    pub const MONITORS_CONFIG_POSITION: u32 = 12;
    /// Set by the server when file transfer is disabled host-side.
    pub const FILE_XFER_DISABLED: u32 = 13;
    /// Client understands detailed FILE_XFER_STATUS codes.
    pub const FILE_XFER_DETAILED_ERRORS: u32 = 14;
    /// Agent wants GRAPHICS_DEVICE_INFO.
    pub const GRAPHICS_DEVICE_INFO: u32 = 15;
    /// Never sends RELEASE right before a new GRAB.
    pub const CLIPBOARD_NO_RELEASE_ON_REGRAB: u32 = 16;
    /// A serial in CLIPBOARD_GRAB.
    pub const CLIPBOARD_GRAB_SERIAL: u32 = 17;
}

/// A capability bitmap (`caps[i / 32]` bit `i % 32`), as announced by one side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caps(pub Vec<u32>);

impl Caps {
    /// A bitmap with exactly these bits.
    pub fn with(bits: &[u32]) -> Caps {
        let mut c = Caps(vec![0]);
        for &b in bits {
            c.set(b);
        }
        c
    }

    /// Sets bit `bit`.
    pub fn set(&mut self, bit: u32) {
        let word = (bit / 32) as usize;
        if self.0.len() <= word {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << (bit % 32);
    }

    /// Clears bit `bit`.
    pub fn clear(&mut self, bit: u32) {
        if let Some(w) = self.0.get_mut((bit / 32) as usize) {
            *w &= !(1 << (bit % 32));
        }
    }

    /// Whether bit `bit` is set (bits beyond the announced words are clear).
    pub fn has(&self, bit: u32) -> bool {
        self.0
            .get((bit / 32) as usize)
            .is_some_and(|w| w & (1 << (bit % 32)) != 0)
    }
}

/// How to read and write the clipboard messages: decided by the *peer's* capabilities
/// (both spice-gtk and spice-vdagent do so; reference §3.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dialect {
    /// The 4-byte selection prefix is present (peer has CLIPBOARD_SELECTION).
    pub selection: bool,
    /// CLIPBOARD_GRAB carries a serial (peer has CLIPBOARD_GRAB_SERIAL).
    pub grab_serial: bool,
}

impl Dialect {
    /// The dialect to speak with a peer that announced `caps`.
    pub fn of_peer(caps: &Caps) -> Dialect {
        Dialect {
            selection: caps.has(cap::CLIPBOARD_SELECTION),
            grab_serial: caps.has(cap::CLIPBOARD_GRAB_SERIAL),
        }
    }
}

/// A clipboard selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Selection {
    /// CLIPBOARD (0).
    Clipboard,
    /// PRIMARY (1).
    Primary,
    /// SECONDARY (2): known to the protocol, bridged by no one.
    Secondary,
}

impl Selection {
    /// The wire byte.
    pub fn to_wire(self) -> u8 {
        match self {
            Selection::Clipboard => 0,
            Selection::Primary => 1,
            Selection::Secondary => 2,
        }
    }

    fn from_wire(b: u8) -> Result<Selection, MessageError> {
        match b {
            0 => Ok(Selection::Clipboard),
            1 => Ok(Selection::Primary),
            2 => Ok(Selection::Secondary),
            other => Err(MessageError::BadSelection(other)),
        }
    }
}

/// `VD_AGENT_CLIPBOARD_*` data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClipboardType {
    /// NONE (0): "no data" (a refused request is answered with it).
    None,
    /// UTF8_TEXT (1).
    Utf8Text,
    /// IMAGE_PNG (2).
    ImagePng,
    /// IMAGE_BMP (3).
    ImageBmp,
    /// IMAGE_TIFF (4).
    ImageTiff,
    /// IMAGE_JPG (5).
    ImageJpg,
    /// FILE_LIST (6).
    FileList,
    /// A type this agent does not know (kept so a grab's list survives; never requested).
    Other(u32),
}

impl ClipboardType {
    /// The wire value.
    pub fn to_wire(self) -> u32 {
        match self {
            ClipboardType::None => 0,
            ClipboardType::Utf8Text => 1,
            ClipboardType::ImagePng => 2,
            ClipboardType::ImageBmp => 3,
            ClipboardType::ImageTiff => 4,
            ClipboardType::ImageJpg => 5,
            ClipboardType::FileList => 6,
            ClipboardType::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_wire(v: u32) -> ClipboardType {
        match v {
            0 => ClipboardType::None,
            1 => ClipboardType::Utf8Text,
            2 => ClipboardType::ImagePng,
            3 => ClipboardType::ImageBmp,
            4 => ClipboardType::ImageTiff,
            5 => ClipboardType::ImageJpg,
            6 => ClipboardType::FileList,
            v => ClipboardType::Other(v),
        }
    }
}

/// One `VDAgentMonConfig`, plus its physical size when the client sent one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonitorConfig {
    /// Width in pixels (0 with height 0: this display is disabled).
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Colour depth in bits.
    pub depth: u32,
    /// Left edge in the client's layout.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Physical (width, height) in millimetres, from the PHYSICAL_SIZE trailer.
    pub mm: Option<(u16, u16)>,
}

/// `VD_AGENT_CONFIG_MONITORS_FLAG_USE_POS`.
pub const MONITORS_FLAG_USE_POS: u32 = 1;
/// `VD_AGENT_CONFIG_MONITORS_FLAG_PHYSICAL_SIZE`.
pub const MONITORS_FLAG_PHYSICAL_SIZE: u32 = 2;

/// `VDAgentMonitorsConfig`: the client's monitors, index = Spice display id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorsConfig {
    /// `flags` (USE_POS, PHYSICAL_SIZE).
    pub flags: u32,
    /// The monitors.
    pub monitors: Vec<MonitorConfig>,
}

/// One GRAPHICS_DEVICE_INFO entry: which device output a Spice display is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceDisplayInfo {
    /// Spice display channel id.
    pub channel_id: u32,
    /// Monitor within that channel.
    pub monitor_id: u32,
    /// Index into the DRM card's connector list.
    pub device_display_id: u32,
    /// `pci/0000/SS.F/...` path of the device (NUL removed; lossy UTF-8).
    pub device_address: String,
}

/// `VD_AGENT_REPLY` error values.
pub mod reply {
    /// The request was applied.
    pub const SUCCESS: u32 = 1;
    /// It was not.
    pub const ERROR: u32 = 2;
}

/// `VD_AGENT_FILE_XFER_STATUS_*` results.
pub mod xfer {
    /// The agent is ready for DATA.
    pub const CAN_SEND_DATA: u32 = 0;
    /// Cancelled (by either side).
    pub const CANCELLED: u32 = 1;
    /// Failed (detail: error type u8 + GIOErrorEnum u32, with DETAILED_ERRORS).
    pub const ERROR: u32 = 2;
    /// The whole file arrived.
    pub const SUCCESS: u32 = 3;
    /// Not enough free space (detail: free bytes u64).
    pub const NOT_ENOUGH_SPACE: u32 = 4;
    /// The guest session is locked.
    pub const SESSION_LOCKED: u32 = 5;
    /// No session agent.
    pub const VDAGENT_NOT_CONNECTED: u32 = 6;
    /// File transfer is disabled.
    pub const DISABLED: u32 = 7;
}

/// A decoded `VD_AGENT_*` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// MOUSE_STATE: the client pointer in display `display_id`'s coordinates.
    MouseState {
        /// X.
        x: u32,
        /// Y.
        y: u32,
        /// Button masks (`1 << 1` left ... `1 << 7` extra).
        buttons: u32,
        /// Spice display id.
        display_id: u8,
    },
    /// MONITORS_CONFIG.
    MonitorsConfig(MonitorsConfig),
    /// REPLY to a message of type `type_`.
    Reply {
        /// The acknowledged message type.
        type_: u32,
        /// [`reply::SUCCESS`] or [`reply::ERROR`].
        error: u32,
    },
    /// CLIPBOARD: data of one type.
    Clipboard {
        /// Which selection.
        selection: Selection,
        /// Data type ([`ClipboardType::None`] for a refusal).
        type_: ClipboardType,
        /// The bytes.
        data: Vec<u8>,
    },
    /// DISPLAY_CONFIG (Windows-only effects; answered, not applied).
    DisplayConfig {
        /// Flags.
        flags: u32,
        /// Depth.
        depth: u32,
    },
    /// ANNOUNCE_CAPABILITIES.
    AnnounceCapabilities {
        /// The sender wants ours in return.
        request: bool,
        /// Its capabilities.
        caps: Caps,
    },
    /// CLIPBOARD_GRAB.
    ClipboardGrab {
        /// Which selection.
        selection: Selection,
        /// The grab serial (when the dialect has one).
        serial: Option<u32>,
        /// The offered types.
        types: Vec<ClipboardType>,
    },
    /// CLIPBOARD_REQUEST.
    ClipboardRequest {
        /// Which selection.
        selection: Selection,
        /// Wanted type.
        type_: ClipboardType,
    },
    /// CLIPBOARD_RELEASE.
    ClipboardRelease {
        /// Which selection.
        selection: Selection,
    },
    /// FILE_XFER_START: id and the GKeyFile text (`[vdagent-file-xfer]` name=, size=).
    FileXferStart {
        /// Transfer id.
        id: u32,
        /// The key file, up to its NUL.
        keyfile: String,
    },
    /// FILE_XFER_STATUS.
    FileXferStatus {
        /// Transfer id.
        id: u32,
        /// A [`xfer`] result.
        result: u32,
        /// Optional detail bytes.
        detail: Vec<u8>,
    },
    /// FILE_XFER_DATA.
    FileXferData {
        /// Transfer id.
        id: u32,
        /// File bytes.
        data: Vec<u8>,
    },
    /// CLIENT_DISCONNECTED.
    ClientDisconnected,
    /// MAX_CLIPBOARD: the largest clipboard the client takes (negative: unlimited).
    MaxClipboard(i32),
    /// AUDIO_VOLUME_SYNC.
    AudioVolumeSync {
        /// Playback (true) or record.
        is_playback: bool,
        /// Muted.
        mute: bool,
        /// Per-channel volume.
        volume: Vec<u16>,
    },
    /// GRAPHICS_DEVICE_INFO.
    GraphicsDeviceInfo(Vec<DeviceDisplayInfo>),
}

/// Why a message could not be decoded. The stream stays in sync (the message had a size);
/// the agent logs it, answers where the protocol has an answer, and goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A type this agent does not know.
    #[error("unknown message type {0}")]
    UnknownType(u32),
    /// Data shorter than the type needs.
    #[error("{name}: {got} bytes, at least {min} needed")]
    TooShort {
        /// Message name.
        name: &'static str,
        /// Data size.
        got: usize,
        /// Minimum.
        min: usize,
    },
    /// Data of a size the type does not allow.
    #[error("{name}: {got} bytes, {want} expected")]
    BadSize {
        /// Message name.
        name: &'static str,
        /// Data size.
        got: usize,
        /// Expected size.
        want: usize,
    },
    /// A selection byte other than 0, 1, 2.
    #[error("selection {0}")]
    BadSelection(u8),
    /// A MONITORS_CONFIG with no monitors or more than [`MAX_MONITORS`].
    #[error("MONITORS_CONFIG with {0} monitors")]
    MonitorCount(u32),
    /// A FILE_XFER_START whose key file is not UTF-8 or has no NUL.
    #[error("FILE_XFER_START key file is not NUL-terminated UTF-8")]
    BadKeyFile,
    /// A GRAPHICS_DEVICE_INFO entry running past the message.
    #[error("GRAPHICS_DEVICE_INFO entry {0} runs past the message")]
    DeviceInfoOverrun(u32),
    /// A FILE_XFER_DATA whose declared size is not what follows.
    #[error("FILE_XFER_DATA declares {declared} bytes, carries {got}")]
    XferDataSize {
        /// Declared.
        declared: u64,
        /// Present.
        got: usize,
    },
}

/// Reads little-endian fields from a message body, with bounds checks.
struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(data: &'a [u8]) -> Self {
        Fields { data, pos: 0 }
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let b = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(b)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.bytes(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn rest(&mut self) -> &'a [u8] {
        let r = &self.data[self.pos..];
        self.pos = self.data.len();
        r
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}

fn need(name: &'static str, data: &[u8], min: usize) -> Result<(), MessageError> {
    if data.len() < min {
        return Err(MessageError::TooShort {
            name,
            got: data.len(),
            min,
        });
    }
    Ok(())
}

fn exact(name: &'static str, data: &[u8], want: usize) -> Result<(), MessageError> {
    if data.len() != want {
        return Err(MessageError::BadSize {
            name,
            got: data.len(),
            want,
        });
    }
    Ok(())
}

impl Message {
    /// Decodes the data of a message of type `type_`, read with `dialect` (the peer's).
    pub fn parse(type_: u32, data: &[u8], dialect: Dialect) -> Result<Message, MessageError> {
        let sel_len = if dialect.selection { 4 } else { 0 };
        let mut f = Fields::new(data);
        // The length checks above each arm make every `?`-free unwrap below in bounds; the
        // `ok_or` keeps them honest should a check be edited.
        let short = |name: &'static str, min: usize| MessageError::TooShort {
            name,
            got: data.len(),
            min,
        };
        let selection = |f: &mut Fields<'_>| -> Result<Selection, MessageError> {
            if !dialect.selection {
                return Ok(Selection::Clipboard);
            }
            let b = f.bytes(4).ok_or_else(|| short("selection", 4))?;
            Selection::from_wire(b[0])
        };
        match type_ {
            msg::MOUSE_STATE => {
                exact("MOUSE_STATE", data, 13)?;
                Ok(Message::MouseState {
                    x: f.u32().ok_or_else(|| short("MOUSE_STATE", 13))?,
                    y: f.u32().ok_or_else(|| short("MOUSE_STATE", 13))?,
                    buttons: f.u32().ok_or_else(|| short("MOUSE_STATE", 13))?,
                    display_id: f.u8().ok_or_else(|| short("MOUSE_STATE", 13))?,
                })
            }
            msg::MONITORS_CONFIG => parse_monitors(data).map(Message::MonitorsConfig),
            msg::REPLY => {
                exact("REPLY", data, 8)?;
                Ok(Message::Reply {
                    type_: f.u32().ok_or_else(|| short("REPLY", 8))?,
                    error: f.u32().ok_or_else(|| short("REPLY", 8))?,
                })
            }
            msg::CLIPBOARD => {
                need("CLIPBOARD", data, sel_len + 4)?;
                let selection = selection(&mut f)?;
                let type_ = ClipboardType::from_wire(f.u32().ok_or_else(|| short("CLIPBOARD", 4))?);
                Ok(Message::Clipboard {
                    selection,
                    type_,
                    data: f.rest().to_vec(),
                })
            }
            msg::DISPLAY_CONFIG => {
                exact("DISPLAY_CONFIG", data, 8)?;
                Ok(Message::DisplayConfig {
                    flags: f.u32().ok_or_else(|| short("DISPLAY_CONFIG", 8))?,
                    depth: f.u32().ok_or_else(|| short("DISPLAY_CONFIG", 8))?,
                })
            }
            msg::ANNOUNCE_CAPABILITIES => {
                need("ANNOUNCE_CAPABILITIES", data, 4)?;
                let request = f.u32().ok_or_else(|| short("ANNOUNCE_CAPABILITIES", 4))? != 0;
                // As many whole words as are present; a trailing partial word is ignored.
                let words = f.rest().chunks_exact(4);
                let caps = words
                    .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                    .collect();
                Ok(Message::AnnounceCapabilities {
                    request,
                    caps: Caps(caps),
                })
            }
            msg::CLIPBOARD_GRAB => {
                let serial_len = if dialect.grab_serial { 4 } else { 0 };
                need("CLIPBOARD_GRAB", data, sel_len + serial_len)?;
                let selection = selection(&mut f)?;
                let serial = if dialect.grab_serial {
                    Some(f.u32().ok_or_else(|| short("CLIPBOARD_GRAB", 4))?)
                } else {
                    None
                };
                let types = f
                    .rest()
                    .chunks_exact(4)
                    .map(|w| ClipboardType::from_wire(u32::from_le_bytes([w[0], w[1], w[2], w[3]])))
                    .collect();
                Ok(Message::ClipboardGrab {
                    selection,
                    serial,
                    types,
                })
            }
            msg::CLIPBOARD_REQUEST => {
                exact("CLIPBOARD_REQUEST", data, sel_len + 4)?;
                let selection = selection(&mut f)?;
                let type_ =
                    ClipboardType::from_wire(f.u32().ok_or_else(|| short("CLIPBOARD_REQUEST", 4))?);
                Ok(Message::ClipboardRequest { selection, type_ })
            }
            msg::CLIPBOARD_RELEASE => {
                // spice-vdagentd's "release all" sends a single selection byte; accept 1..=4.
                if dialect.selection {
                    if data.is_empty() || data.len() > 4 {
                        return Err(MessageError::BadSize {
                            name: "CLIPBOARD_RELEASE",
                            got: data.len(),
                            want: 4,
                        });
                    }
                    Ok(Message::ClipboardRelease {
                        selection: Selection::from_wire(data[0])?,
                    })
                } else {
                    exact("CLIPBOARD_RELEASE", data, 0)?;
                    Ok(Message::ClipboardRelease {
                        selection: Selection::Clipboard,
                    })
                }
            }
            msg::FILE_XFER_START => {
                need("FILE_XFER_START", data, 5)?;
                let id = f.u32().ok_or_else(|| short("FILE_XFER_START", 5))?;
                let text = f.rest();
                let nul = text
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(MessageError::BadKeyFile)?;
                let keyfile = std::str::from_utf8(&text[..nul])
                    .map_err(|_| MessageError::BadKeyFile)?
                    .to_owned();
                Ok(Message::FileXferStart { id, keyfile })
            }
            msg::FILE_XFER_STATUS => {
                need("FILE_XFER_STATUS", data, 8)?;
                Ok(Message::FileXferStatus {
                    id: f.u32().ok_or_else(|| short("FILE_XFER_STATUS", 8))?,
                    result: f.u32().ok_or_else(|| short("FILE_XFER_STATUS", 8))?,
                    detail: f.rest().to_vec(),
                })
            }
            msg::FILE_XFER_DATA => {
                need("FILE_XFER_DATA", data, 12)?;
                let id = f.u32().ok_or_else(|| short("FILE_XFER_DATA", 12))?;
                let size = f.u64().ok_or_else(|| short("FILE_XFER_DATA", 12))?;
                if size != f.remaining() as u64 {
                    return Err(MessageError::XferDataSize {
                        declared: size,
                        got: f.remaining(),
                    });
                }
                Ok(Message::FileXferData {
                    id,
                    data: f.rest().to_vec(),
                })
            }
            msg::CLIENT_DISCONNECTED => {
                exact("CLIENT_DISCONNECTED", data, 0)?;
                Ok(Message::ClientDisconnected)
            }
            msg::MAX_CLIPBOARD => {
                exact("MAX_CLIPBOARD", data, 4)?;
                Ok(Message::MaxClipboard(
                    f.u32().ok_or_else(|| short("MAX_CLIPBOARD", 4))? as i32,
                ))
            }
            msg::AUDIO_VOLUME_SYNC => {
                need("AUDIO_VOLUME_SYNC", data, 3)?;
                let is_playback = f.u8().ok_or_else(|| short("AUDIO_VOLUME_SYNC", 3))? != 0;
                let mute = f.u8().ok_or_else(|| short("AUDIO_VOLUME_SYNC", 3))? != 0;
                let n = f.u8().ok_or_else(|| short("AUDIO_VOLUME_SYNC", 3))? as usize;
                exact("AUDIO_VOLUME_SYNC", data, 3 + 2 * n)?;
                let volume = (0..n).filter_map(|_| f.u16()).collect();
                Ok(Message::AudioVolumeSync {
                    is_playback,
                    mute,
                    volume,
                })
            }
            msg::GRAPHICS_DEVICE_INFO => parse_device_info(data).map(Message::GraphicsDeviceInfo),
            other => Err(MessageError::UnknownType(other)),
        }
    }

    /// The message type.
    pub fn type_(&self) -> u32 {
        match self {
            Message::MouseState { .. } => msg::MOUSE_STATE,
            Message::MonitorsConfig(_) => msg::MONITORS_CONFIG,
            Message::Reply { .. } => msg::REPLY,
            Message::Clipboard { .. } => msg::CLIPBOARD,
            Message::DisplayConfig { .. } => msg::DISPLAY_CONFIG,
            Message::AnnounceCapabilities { .. } => msg::ANNOUNCE_CAPABILITIES,
            Message::ClipboardGrab { .. } => msg::CLIPBOARD_GRAB,
            Message::ClipboardRequest { .. } => msg::CLIPBOARD_REQUEST,
            Message::ClipboardRelease { .. } => msg::CLIPBOARD_RELEASE,
            Message::FileXferStart { .. } => msg::FILE_XFER_START,
            Message::FileXferStatus { .. } => msg::FILE_XFER_STATUS,
            Message::FileXferData { .. } => msg::FILE_XFER_DATA,
            Message::ClientDisconnected => msg::CLIENT_DISCONNECTED,
            Message::MaxClipboard(_) => msg::MAX_CLIPBOARD,
            Message::AudioVolumeSync { .. } => msg::AUDIO_VOLUME_SYNC,
            Message::GraphicsDeviceInfo(_) => msg::GRAPHICS_DEVICE_INFO,
        }
    }

    /// The message data (no header), written in `dialect` (the peer's).
    pub fn encode(&self, dialect: Dialect) -> Vec<u8> {
        let mut d = Vec::new();
        let put32 = |d: &mut Vec<u8>, v: u32| d.extend_from_slice(&v.to_le_bytes());
        let sel = |d: &mut Vec<u8>, s: Selection| {
            if dialect.selection {
                d.extend_from_slice(&[s.to_wire(), 0, 0, 0]);
            }
        };
        match self {
            Message::MouseState {
                x,
                y,
                buttons,
                display_id,
            } => {
                put32(&mut d, *x);
                put32(&mut d, *y);
                put32(&mut d, *buttons);
                d.push(*display_id);
            }
            Message::MonitorsConfig(mc) => {
                let with_mm = mc.monitors.iter().all(|m| m.mm.is_some());
                let flags = if with_mm {
                    mc.flags | MONITORS_FLAG_PHYSICAL_SIZE
                } else {
                    mc.flags & !MONITORS_FLAG_PHYSICAL_SIZE
                };
                put32(&mut d, mc.monitors.len() as u32);
                put32(&mut d, flags);
                for m in &mc.monitors {
                    put32(&mut d, m.height);
                    put32(&mut d, m.width);
                    put32(&mut d, m.depth);
                    put32(&mut d, m.x as u32);
                    put32(&mut d, m.y as u32);
                }
                if with_mm {
                    for m in &mc.monitors {
                        let (w, h) = m.mm.unwrap_or_default();
                        d.extend_from_slice(&h.to_le_bytes());
                        d.extend_from_slice(&w.to_le_bytes());
                    }
                }
            }
            Message::Reply { type_, error } => {
                put32(&mut d, *type_);
                put32(&mut d, *error);
            }
            Message::Clipboard {
                selection,
                type_,
                data,
            } => {
                sel(&mut d, *selection);
                put32(&mut d, type_.to_wire());
                d.extend_from_slice(data);
            }
            Message::DisplayConfig { flags, depth } => {
                put32(&mut d, *flags);
                put32(&mut d, *depth);
            }
            Message::AnnounceCapabilities { request, caps } => {
                put32(&mut d, u32::from(*request));
                for w in &caps.0 {
                    put32(&mut d, *w);
                }
            }
            Message::ClipboardGrab {
                selection,
                serial,
                types,
            } => {
                sel(&mut d, *selection);
                if dialect.grab_serial {
                    put32(&mut d, serial.unwrap_or(0));
                }
                for t in types {
                    put32(&mut d, t.to_wire());
                }
            }
            Message::ClipboardRequest { selection, type_ } => {
                sel(&mut d, *selection);
                put32(&mut d, type_.to_wire());
            }
            Message::ClipboardRelease { selection } => sel(&mut d, *selection),
            Message::FileXferStart { id, keyfile } => {
                put32(&mut d, *id);
                d.extend_from_slice(keyfile.as_bytes());
                d.push(0);
            }
            Message::FileXferStatus { id, result, detail } => {
                put32(&mut d, *id);
                put32(&mut d, *result);
                d.extend_from_slice(detail);
            }
            Message::FileXferData { id, data } => {
                put32(&mut d, *id);
                d.extend_from_slice(&(data.len() as u64).to_le_bytes());
                d.extend_from_slice(data);
            }
            Message::ClientDisconnected => {}
            Message::MaxClipboard(v) => put32(&mut d, *v as u32),
            Message::AudioVolumeSync {
                is_playback,
                mute,
                volume,
            } => {
                d.push(u8::from(*is_playback));
                d.push(u8::from(*mute));
                d.push(volume.len().min(255) as u8);
                for v in volume.iter().take(255) {
                    d.extend_from_slice(&v.to_le_bytes());
                }
            }
            Message::GraphicsDeviceInfo(entries) => {
                put32(&mut d, entries.len() as u32);
                for e in entries {
                    put32(&mut d, e.channel_id);
                    put32(&mut d, e.monitor_id);
                    put32(&mut d, e.device_display_id);
                    put32(&mut d, e.device_address.len() as u32 + 1);
                    d.extend_from_slice(e.device_address.as_bytes());
                    d.push(0);
                }
            }
        }
        d
    }
}

fn parse_monitors(data: &[u8]) -> Result<MonitorsConfig, MessageError> {
    const NAME: &str = "MONITORS_CONFIG";
    need(NAME, data, 8)?;
    let mut f = Fields::new(data);
    let short = |min| MessageError::TooShort {
        name: NAME,
        got: data.len(),
        min,
    };
    let n = f.u32().ok_or_else(|| short(8))?;
    let flags = f.u32().ok_or_else(|| short(8))?;
    if n == 0 || n > MAX_MONITORS {
        return Err(MessageError::MonitorCount(n));
    }
    let n = n as usize;
    let base = 8 + 20 * n;
    need(NAME, data, base)?;
    // spice-gtk always appends the millimetre array (PHYSICAL_SIZE); spice-vdagent rejected
    // such messages (reference §9.3). Accept both, and anything after the known parts.
    let with_mm = flags & MONITORS_FLAG_PHYSICAL_SIZE != 0;
    if with_mm {
        need(NAME, data, base + 4 * n)?;
    }
    let mut monitors = Vec::with_capacity(n);
    for _ in 0..n {
        let height = f.u32().ok_or_else(|| short(base))?;
        let width = f.u32().ok_or_else(|| short(base))?;
        let depth = f.u32().ok_or_else(|| short(base))?;
        let x = f.u32().ok_or_else(|| short(base))? as i32;
        let y = f.u32().ok_or_else(|| short(base))? as i32;
        monitors.push(MonitorConfig {
            width,
            height,
            depth,
            x,
            y,
            mm: None,
        });
    }
    if with_mm {
        for m in &mut monitors {
            let h = f.u16().ok_or_else(|| short(base + 4 * n))?;
            let w = f.u16().ok_or_else(|| short(base + 4 * n))?;
            m.mm = Some((w, h));
        }
    }
    Ok(MonitorsConfig { flags, monitors })
}

/// Most GRAPHICS_DEVICE_INFO entries taken (more are ignored, not an error).
const MAX_DEVICE_INFOS: u32 = 1024;

fn parse_device_info(data: &[u8]) -> Result<Vec<DeviceDisplayInfo>, MessageError> {
    const NAME: &str = "GRAPHICS_DEVICE_INFO";
    need(NAME, data, 4)?;
    let mut f = Fields::new(data);
    let count = f.u32().unwrap_or(0);
    let mut out = Vec::new();
    for i in 0..count.min(MAX_DEVICE_INFOS) {
        let head = f.bytes(16).ok_or(MessageError::DeviceInfoOverrun(i))?;
        let w = |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
        let len = w(12) as usize;
        let addr = f.bytes(len).ok_or(MessageError::DeviceInfoOverrun(i))?;
        // Force-terminate: the address ends at its first NUL, if any.
        let end = addr.iter().position(|&b| b == 0).unwrap_or(addr.len());
        out.push(DeviceDisplayInfo {
            channel_id: w(0),
            monitor_id: w(4),
            device_display_id: w(8),
            device_address: String::from_utf8_lossy(&addr[..end]).into_owned(),
        });
    }
    Ok(out)
}

/// A whole message (header + data) as it starts the first chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// `VD_AGENT_*` type.
    pub type_: u32,
    /// `opaque` (0 in practice; kept for replies).
    pub opaque: u64,
    /// The data after the header.
    pub data: Vec<u8>,
}

impl fmt::Display for RawMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} bytes)", type_name(self.type_), self.data.len())
    }
}

/// A message type's name, for logs.
pub fn type_name(t: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "?",
        "MOUSE_STATE",
        "MONITORS_CONFIG",
        "REPLY",
        "CLIPBOARD",
        "DISPLAY_CONFIG",
        "ANNOUNCE_CAPABILITIES",
        "CLIPBOARD_GRAB",
        "CLIPBOARD_REQUEST",
        "CLIPBOARD_RELEASE",
        "FILE_XFER_START",
        "FILE_XFER_STATUS",
        "FILE_XFER_DATA",
        "CLIENT_DISCONNECTED",
        "MAX_CLIPBOARD",
        "AUDIO_VOLUME_SYNC",
        "GRAPHICS_DEVICE_INFO",
    ];
    NAMES.get(t as usize).copied().unwrap_or("?")
}

/// Why the port stream is out of sync. The agent closes and reopens the port on any of these
/// (as spice-vdagentd does), so a single bad chunk costs one message, not the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// A chunk header names a port other than 1 or 2.
    #[error("chunk for port {0} (only 1 and 2 exist)")]
    BadPort(u32),
    /// A chunk larger than [`MAX_CHUNK`].
    #[error("chunk of {0} bytes (limit 2048)")]
    ChunkTooLarge(u32),
    /// A first chunk too short for the message header.
    #[error("first chunk of {0} bytes cannot hold a message header")]
    ShortFirstChunk(u32),
    /// A message header whose protocol is not 1.
    #[error("message protocol {0} (expected 1)")]
    BadProtocol(u32),
    /// A message larger than the configured limit.
    #[error("message of {size} bytes (limit {max})")]
    MessageTooLarge {
        /// Declared size.
        size: u32,
        /// Limit.
        max: u32,
    },
    /// A chunk carrying more bytes than its message has left.
    #[error("chunk of {chunk} bytes where the message has {left} left")]
    ChunkPastMessage {
        /// Chunk size.
        chunk: u32,
        /// Bytes the message still needed.
        left: usize,
    },
}

/// A message being collected on one chunk port.
#[derive(Debug)]
struct Partial {
    type_: u32,
    opaque: u64,
    size: usize,
    data: Vec<u8>,
}

/// Reassembles the port byte stream (host → agent) into whole messages, per chunk port.
///
/// Bytes arrive in arbitrary splits; a message spans chunks of at most [`MAX_CHUNK`] bytes and
/// may interleave with messages on the other port. A message's data is allocated as it arrives,
/// after its declared size has been checked against the limit.
#[derive(Debug)]
pub struct Reassembler {
    max_message: u32,
    header: [u8; CHUNK_HEADER_SIZE],
    header_len: usize,
    /// The current chunk: port and bytes left; `None` between chunks.
    chunk: Option<(u32, usize)>,
    /// A first chunk's bytes until the 20-byte message header is complete.
    first: Vec<u8>,
    partial: [Option<Partial>; 2],
}

impl Reassembler {
    /// A reassembler taking messages of at most `max_message` data bytes.
    pub fn new(max_message: u32) -> Self {
        Reassembler {
            max_message,
            header: [0; CHUNK_HEADER_SIZE],
            header_len: 0,
            chunk: None,
            first: Vec::new(),
            partial: [None, None],
        }
    }

    /// Forgets everything (after the port reopens).
    pub fn reset(&mut self) {
        *self = Reassembler::new(self.max_message);
    }

    /// Feeds bytes; completed messages are pushed to `out` with their chunk port.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        out: &mut Vec<(u32, RawMessage)>,
    ) -> Result<(), StreamError> {
        while !bytes.is_empty() {
            let Some((port, left)) = self.chunk else {
                let take = (CHUNK_HEADER_SIZE - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + take]
                    .copy_from_slice(&bytes[..take]);
                self.header_len += take;
                bytes = &bytes[take..];
                if self.header_len == CHUNK_HEADER_SIZE {
                    self.header_len = 0;
                    self.start_chunk()?;
                }
                continue;
            };
            let take = left.min(bytes.len());
            self.chunk_bytes(port, &bytes[..take], out)?;
            bytes = &bytes[take..];
            let left = left - take;
            let slot = (port - 1) as usize;
            if left > 0 && self.partial[slot].is_none() && self.first.is_empty() {
                // The message ended inside this chunk: the rest would be read as a new message.
                return Err(StreamError::ChunkPastMessage {
                    chunk: left as u32,
                    left: 0,
                });
            }
            self.chunk = (left > 0).then_some((port, left));
        }
        Ok(())
    }

    fn start_chunk(&mut self) -> Result<(), StreamError> {
        let h = &self.header;
        let port = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let size = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        if port != VDP_CLIENT_PORT && port != VDP_SERVER_PORT {
            return Err(StreamError::BadPort(port));
        }
        if size as usize > MAX_CHUNK {
            return Err(StreamError::ChunkTooLarge(size));
        }
        let slot = &self.partial[(port - 1) as usize];
        match slot {
            None if (size as usize) < MSG_HEADER_SIZE => {
                return Err(StreamError::ShortFirstChunk(size))
            }
            Some(p) if size as usize > p.size - p.data.len() => {
                return Err(StreamError::ChunkPastMessage {
                    chunk: size,
                    left: p.size - p.data.len(),
                })
            }
            _ => {}
        }
        // (a continuation chunk of 0 bytes carries nothing)
        self.chunk = (size > 0).then_some((port, size as usize));
        Ok(())
    }

    fn chunk_bytes(
        &mut self,
        port: u32,
        mut bytes: &[u8],
        out: &mut Vec<(u32, RawMessage)>,
    ) -> Result<(), StreamError> {
        let slot = (port - 1) as usize;
        if self.partial[slot].is_none() {
            let take = (MSG_HEADER_SIZE - self.first.len()).min(bytes.len());
            self.first.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.first.len() < MSG_HEADER_SIZE {
                return Ok(());
            }
            let h = &self.first;
            let w = |o: usize| u32::from_le_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]);
            let protocol = w(0);
            let type_ = w(4);
            let opaque = u64::from_le_bytes(h[8..16].try_into().unwrap_or_default());
            let size = w(16);
            self.first.clear();
            if protocol != VD_AGENT_PROTOCOL {
                return Err(StreamError::BadProtocol(protocol));
            }
            if size > self.max_message {
                return Err(StreamError::MessageTooLarge {
                    size,
                    max: self.max_message,
                });
            }
            self.partial[slot] = Some(Partial {
                type_,
                opaque,
                size: size as usize,
                // Grows as data arrives: a declared size is not yet a reason to allocate it.
                data: Vec::with_capacity((size as usize).min(64 * 1024)),
            });
        }
        if let Some(p) = self.partial[slot].as_mut() {
            let room = p.size - p.data.len();
            if bytes.len() > room {
                return Err(StreamError::ChunkPastMessage {
                    chunk: bytes.len() as u32,
                    left: room,
                });
            }
            p.data.extend_from_slice(bytes);
            if p.data.len() == p.size {
                let p = self.partial[slot].take().expect("checked above");
                out.push((
                    port,
                    RawMessage {
                        type_: p.type_,
                        opaque: p.opaque,
                        data: p.data,
                    },
                ));
            }
        }
        Ok(())
    }
}

/// The port bytes of one message: header + data split into chunks of at most [`MAX_CHUNK`].
pub fn encode_chunks(port: u32, type_: u32, opaque: u64, data: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(MSG_HEADER_SIZE + data.len());
    msg.extend_from_slice(&VD_AGENT_PROTOCOL.to_le_bytes());
    msg.extend_from_slice(&type_.to_le_bytes());
    msg.extend_from_slice(&opaque.to_le_bytes());
    msg.extend_from_slice(&(data.len() as u32).to_le_bytes());
    msg.extend_from_slice(data);
    let mut out = Vec::with_capacity(msg.len() + msg.len() / MAX_CHUNK * CHUNK_HEADER_SIZE + 8);
    for c in msg.chunks(MAX_CHUNK) {
        out.extend_from_slice(&port.to_le_bytes());
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: Dialect = Dialect {
        selection: true,
        grab_serial: true,
    };

    fn roundtrip(m: Message, d: Dialect) {
        let data = m.encode(d);
        assert_eq!(Message::parse(m.type_(), &data, d), Ok(m));
    }

    #[test]
    fn every_message_round_trips() {
        let mon = |w, h, x, mm| MonitorConfig {
            width: w,
            height: h,
            depth: 32,
            x,
            y: 0,
            mm,
        };
        for d in [FULL, Dialect::default()] {
            roundtrip(
                Message::MouseState {
                    x: 5,
                    y: 7,
                    buttons: 2,
                    display_id: 1,
                },
                d,
            );
            roundtrip(
                Message::MonitorsConfig(MonitorsConfig {
                    flags: MONITORS_FLAG_USE_POS | MONITORS_FLAG_PHYSICAL_SIZE,
                    monitors: vec![
                        mon(1024, 768, 0, Some((300, 200))),
                        mon(800, 600, 1024, Some((1, 2))),
                    ],
                }),
                d,
            );
            roundtrip(
                Message::MonitorsConfig(MonitorsConfig {
                    flags: MONITORS_FLAG_USE_POS,
                    monitors: vec![mon(640, 480, 0, None)],
                }),
                d,
            );
            roundtrip(Message::Reply { type_: 2, error: 1 }, d);
            roundtrip(
                Message::Clipboard {
                    selection: Selection::Clipboard,
                    type_: ClipboardType::Utf8Text,
                    data: b"hi".to_vec(),
                },
                d,
            );
            roundtrip(
                Message::DisplayConfig {
                    flags: 1,
                    depth: 32,
                },
                d,
            );
            roundtrip(
                Message::AnnounceCapabilities {
                    request: true,
                    caps: Caps::with(&[0, 1, 17]),
                },
                d,
            );
            roundtrip(
                Message::ClipboardGrab {
                    selection: Selection::Clipboard,
                    serial: d.grab_serial.then_some(3),
                    types: vec![ClipboardType::Utf8Text, ClipboardType::Other(99)],
                },
                d,
            );
            roundtrip(
                Message::ClipboardRequest {
                    selection: Selection::Clipboard,
                    type_: ClipboardType::ImagePng,
                },
                d,
            );
            roundtrip(
                Message::ClipboardRelease {
                    selection: Selection::Clipboard,
                },
                d,
            );
            roundtrip(
                Message::FileXferStart {
                    id: 1,
                    keyfile: "[vdagent-file-xfer]\nname=a\nsize=1\n".into(),
                },
                d,
            );
            roundtrip(
                Message::FileXferStatus {
                    id: 1,
                    result: xfer::ERROR,
                    detail: vec![0, 1, 0, 0, 0],
                },
                d,
            );
            roundtrip(
                Message::FileXferData {
                    id: 1,
                    data: vec![9; 100],
                },
                d,
            );
            roundtrip(Message::ClientDisconnected, d);
            roundtrip(Message::MaxClipboard(-1), d);
            roundtrip(
                Message::AudioVolumeSync {
                    is_playback: true,
                    mute: false,
                    volume: vec![1, 65535],
                },
                d,
            );
            roundtrip(
                Message::GraphicsDeviceInfo(vec![DeviceDisplayInfo {
                    channel_id: 0,
                    monitor_id: 1,
                    device_display_id: 1,
                    device_address: "pci/0000/02.0".into(),
                }]),
                d,
            );
        }
        let primary = Message::ClipboardGrab {
            selection: Selection::Primary,
            serial: Some(0),
            types: vec![],
        };
        roundtrip(primary, FULL);
    }

    #[test]
    fn monitors_config_with_physical_size_trailer_is_accepted() {
        // spice-gtk 0.42: 1 monitor 890x644 at 0,0, USE_POS|PHYSICAL_SIZE, mm 235x170.
        let mut d = vec![];
        for v in [1u32, 3, 644, 890, 32, 0, 0] {
            d.extend_from_slice(&v.to_le_bytes());
        }
        d.extend_from_slice(&170u16.to_le_bytes());
        d.extend_from_slice(&235u16.to_le_bytes());
        let Message::MonitorsConfig(mc) = Message::parse(msg::MONITORS_CONFIG, &d, FULL).unwrap()
        else {
            panic!()
        };
        assert_eq!(mc.monitors[0].width, 890);
        assert_eq!(mc.monitors[0].height, 644);
        assert_eq!(mc.monitors[0].mm, Some((235, 170)));
        // the trailer promised but missing
        assert!(Message::parse(msg::MONITORS_CONFIG, &d[..d.len() - 2], FULL).is_err());
    }

    #[test]
    fn bad_messages_are_errors() {
        let p = |t, d: &[u8]| Message::parse(t, d, FULL);
        assert!(p(msg::MOUSE_STATE, &[0; 12]).is_err());
        assert!(p(msg::MONITORS_CONFIG, &[0; 8]).is_err()); // zero monitors
        let mut huge = 1000u32.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(
            p(msg::MONITORS_CONFIG, &huge),
            Err(MessageError::MonitorCount(1000))
        );
        assert!(p(msg::CLIPBOARD, &[0; 7]).is_err());
        assert!(p(msg::CLIPBOARD_REQUEST, &[5, 0, 0, 0, 1, 0, 0, 0]).is_err()); // selection 5
        assert!(p(msg::FILE_XFER_START, b"\x01\0\0\0no nul").is_err());
        let mut data = 1u32.to_le_bytes().to_vec();
        data.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(p(msg::FILE_XFER_DATA, &data).is_err());
        assert!(p(msg::AUDIO_VOLUME_SYNC, &[1, 0, 200, 1, 2]).is_err());
        let mut gdi = 1u32.to_le_bytes().to_vec();
        gdi.extend_from_slice(&[0; 12]);
        gdi.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            p(msg::GRAPHICS_DEVICE_INFO, &gdi),
            Err(MessageError::DeviceInfoOverrun(0))
        );
        assert_eq!(p(99, &[]), Err(MessageError::UnknownType(99)));
        // spice-vdagentd's one-byte "release all"
        assert_eq!(
            p(msg::CLIPBOARD_RELEASE, &[1]),
            Ok(Message::ClipboardRelease {
                selection: Selection::Primary
            })
        );
    }

    #[test]
    fn reassembles_interleaved_ports_in_any_split() {
        let big: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let a = encode_chunks(VDP_CLIENT_PORT, msg::CLIPBOARD, 0, &big);
        let b = encode_chunks(VDP_SERVER_PORT, msg::MOUSE_STATE, 0, &[1; 13]);
        // the server's single-chunk message lands between the client message's chunks
        let first_chunk = CHUNK_HEADER_SIZE + MAX_CHUNK;
        let mut stream = a[..first_chunk].to_vec();
        stream.extend_from_slice(&b);
        stream.extend_from_slice(&a[first_chunk..]);
        for split in [1, 3, 7, 8, 20, 2049, stream.len()] {
            let mut r = Reassembler::new(1 << 20);
            let mut out = vec![];
            for piece in stream.chunks(split) {
                r.feed(piece, &mut out).unwrap();
            }
            assert_eq!(out.len(), 2, "split {split}");
            assert_eq!(out[0].0, VDP_SERVER_PORT);
            assert_eq!(out[0].1.data, vec![1; 13]);
            assert_eq!(out[1].0, VDP_CLIENT_PORT);
            assert_eq!(out[1].1.data, big);
        }
    }

    #[test]
    fn stream_errors() {
        let feed = |bytes: &[u8]| {
            let mut out = vec![];
            Reassembler::new(1000).feed(bytes, &mut out)
        };
        let chunk = |port: u32, size: u32| [port.to_le_bytes(), size.to_le_bytes()].concat();
        assert_eq!(feed(&chunk(3, 20)), Err(StreamError::BadPort(3)));
        assert_eq!(feed(&chunk(1, 4096)), Err(StreamError::ChunkTooLarge(4096)));
        assert_eq!(feed(&chunk(1, 4)), Err(StreamError::ShortFirstChunk(4)));
        let too_big = encode_chunks(1, 4, 0, &[0; 1001]);
        assert_eq!(
            feed(&too_big),
            Err(StreamError::MessageTooLarge {
                size: 1001,
                max: 1000
            })
        );
        // a first chunk longer than its message
        let mut m = encode_chunks(1, 4, 0, &[0; 10]);
        m[4..8].copy_from_slice(&40u32.to_le_bytes());
        m.extend_from_slice(&[0; 10]);
        assert!(matches!(
            feed(&m),
            Err(StreamError::ChunkPastMessage { .. })
        ));
        let mut bad = encode_chunks(1, 4, 0, &[0; 10]);
        bad[8] = 2;
        assert_eq!(feed(&bad), Err(StreamError::BadProtocol(2)));
    }
}

//! Main channel messages (reference sheet §3).

use super::{message, wire_struct, Decode, Encode, Reader, WireError};

/// Main channel capability bits.
pub mod cap {
    /// SEMI_SEAMLESS_MIGRATE
    pub const SEMI_SEAMLESS_MIGRATE: u32 = 0;
    /// NAME_AND_UUID
    pub const NAME_AND_UUID: u32 = 1;
    /// AGENT_CONNECTED_TOKENS
    pub const AGENT_CONNECTED_TOKENS: u32 = 2;
    /// SEAMLESS_MIGRATE
    pub const SEAMLESS_MIGRATE: u32 = 3;
}

/// Mouse mode bits.
pub mod mouse_mode {
    /// server (relative) mouse
    pub const SERVER: u16 = 1;
    /// client (absolute) mouse
    pub const CLIENT: u16 = 2;
}

/// Largest AGENT_DATA body (`VD_AGENT_MAX_DATA_SIZE`).
pub const AGENT_DATA_MAX: usize = 2048;
/// Largest NAME accepted when decoding.
pub const NAME_MAX: usize = 4096;
/// Largest CHANNELS_LIST accepted when decoding.
pub const CHANNELS_MAX: u32 = 256;

/// Client → server main ids.
pub mod client_id {
    /// CLIENT_INFO
    pub const CLIENT_INFO: u16 = 101;
    /// ATTACH_CHANNELS
    pub const ATTACH_CHANNELS: u16 = 104;
    /// MOUSE_MODE_REQUEST
    pub const MOUSE_MODE_REQUEST: u16 = 105;
    /// AGENT_START
    pub const AGENT_START: u16 = 106;
    /// AGENT_DATA
    pub const AGENT_DATA: u16 = 107;
    /// AGENT_TOKEN
    pub const AGENT_TOKEN: u16 = 108;
}

wire_struct! {
    /// MAIN_INIT (103), 32 bytes.
    pub struct MainInit {
        /// session id (= connection id of secondary channels)
        pub session_id: u32,
        /// number of display channels
        pub display_channels_hint: u32,
        /// supported mouse modes (bits)
        pub supported_mouse_modes: u32,
        /// current mouse mode
        pub current_mouse_mode: u32,
        /// 1 if a guest agent is connected
        pub agent_connected: u32,
        /// AGENT_DATA messages the client may send
        pub agent_tokens: u32,
        /// multimedia time (ms)
        pub multi_media_time: u32,
        /// RAM hint (bytes)
        pub ram_hint: u32,
    }
}
message!(MainInit, 103);

/// CHANNELS_LIST (104): num u32 then (type u8, id u8) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelsList(pub Vec<(u8, u8)>);
impl Encode for ChannelsList {
    fn encode(&self, out: &mut Vec<u8>) {
        (self.0.len() as u32).encode(out);
        for (t, i) in &self.0 {
            out.push(*t);
            out.push(*i);
        }
    }
}
impl Decode for ChannelsList {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let n = r.u32()?;
        if n > CHANNELS_MAX {
            return Err(WireError::TooLarge {
                what: "channels",
                len: n.into(),
                max: CHANNELS_MAX.into(),
            });
        }
        let mut v = Vec::with_capacity(n as usize);
        for _ in 0..n {
            v.push((r.u8()?, r.u8()?));
        }
        Ok(ChannelsList(v))
    }
}
message!(ChannelsList, 104);

wire_struct! {
    /// MOUSE_MODE (105).
    pub struct MouseMode {
        /// supported modes (bits)
        pub supported_modes: u16,
        /// current mode
        pub current_mode: u16,
    }
}
message!(MouseMode, 105);

wire_struct! {
    /// MULTI_MEDIA_TIME (106).
    pub struct MultiMediaTime {
        /// ms
        pub time: u32,
    }
}
message!(MultiMediaTime, 106);

wire_struct! {
    /// AGENT_CONNECTED (107).
    pub struct AgentConnected {}
}
message!(AgentConnected, 107);

wire_struct! {
    /// AGENT_DISCONNECTED (108).
    pub struct AgentDisconnected {
        /// error code (0)
        pub error_code: u32,
    }
}
message!(AgentDisconnected, 108);

/// AGENT_DATA (server 109 / client 107): up to 2048 raw bytes of the VDAgent stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentData(pub Vec<u8>);
impl Encode for AgentData {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}
impl Decode for AgentData {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let d = r.rest();
        if d.len() > AGENT_DATA_MAX {
            return Err(WireError::TooLarge {
                what: "agent data",
                len: d.len() as u64,
                max: AGENT_DATA_MAX as u64,
            });
        }
        Ok(AgentData(d.to_vec()))
    }
}
/// Server → client AGENT_DATA id.
pub const SERVER_AGENT_DATA: u16 = 109;

wire_struct! {
    /// AGENT_TOKEN (server 110 / client 108).
    pub struct AgentToken {
        /// tokens returned
        pub num_tokens: u32,
    }
}
message!(AgentToken, 110);

/// NAME (113): name_len u32 (including NUL) then the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Name(pub String);
impl Encode for Name {
    fn encode(&self, out: &mut Vec<u8>) {
        ((self.0.len() + 1) as u32).encode(out);
        out.extend_from_slice(self.0.as_bytes());
        out.push(0);
    }
}
impl Decode for Name {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let n = r.u32()? as usize;
        if n == 0 || n > NAME_MAX {
            return Err(WireError::BadValue {
                what: "name length",
                value: n as u64,
            });
        }
        let b = r.take(n)?;
        let (text, nul) = b.split_at(n - 1);
        if nul != [0] {
            return Err(WireError::BadValue {
                what: "name terminator",
                value: nul[0].into(),
            });
        }
        String::from_utf8(text.to_vec())
            .map(Name)
            .map_err(|_| WireError::BadValue {
                what: "name utf-8",
                value: 0,
            })
    }
}
message!(Name, 113);

wire_struct! {
    /// UUID (114).
    pub struct Uuid {
        /// 16 bytes
        pub uuid: [u8; 16],
    }
}
message!(Uuid, 114);

wire_struct! {
    /// AGENT_CONNECTED_TOKENS (115).
    pub struct AgentConnectedTokens {
        /// tokens granted to the client
        pub num_tokens: u32,
    }
}
message!(AgentConnectedTokens, 115);

wire_struct! {
    /// Client CLIENT_INFO (101).
    pub struct ClientInfo {
        /// obsolete cache size
        pub cache_size: u64,
    }
}
wire_struct! {
    /// Client ATTACH_CHANNELS (104).
    pub struct AttachChannels {}
}
wire_struct! {
    /// Client MOUSE_MODE_REQUEST (105).
    pub struct MouseModeRequest {
        /// requested mode
        pub mode: u16,
    }
}
wire_struct! {
    /// Client AGENT_START (106).
    pub struct AgentStart {
        /// tokens the client grants the server
        pub num_tokens: u32,
    }
}

/// A main-channel message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MainClientMessage {
    /// CLIENT_INFO
    ClientInfo(ClientInfo),
    /// ATTACH_CHANNELS
    AttachChannels,
    /// MOUSE_MODE_REQUEST
    MouseModeRequest(MouseModeRequest),
    /// AGENT_START
    AgentStart(AgentStart),
    /// AGENT_DATA
    AgentData(AgentData),
    /// AGENT_TOKEN
    AgentToken(AgentToken),
}

impl MainClientMessage {
    /// Parses a main-channel client message.
    pub fn parse(msg_type: u16, body: &[u8]) -> Result<Self, WireError> {
        use super::decode_exact as d;
        use client_id::*;
        match msg_type {
            CLIENT_INFO => d(body).map(Self::ClientInfo),
            ATTACH_CHANNELS => d::<AttachChannels>(body).map(|_| Self::AttachChannels),
            MOUSE_MODE_REQUEST => d(body).map(Self::MouseModeRequest),
            AGENT_START => d(body).map(Self::AgentStart),
            AGENT_DATA => d(body).map(Self::AgentData),
            AGENT_TOKEN => d(body).map(Self::AgentToken),
            _ => Err(WireError::UnknownMessage {
                channel_type: 1,
                msg_type,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::round_trip;
    use crate::wire::{decode_exact, to_vec};

    #[test]
    fn server_main_messages_round_trip() {
        let init = MainInit {
            session_id: 42,
            display_channels_hint: 1,
            supported_mouse_modes: 3,
            current_mouse_mode: 1,
            agent_connected: 0,
            agent_tokens: 10,
            multi_media_time: 1000,
            ram_hint: 0,
        };
        assert_eq!(round_trip(&init).len(), 32);
        assert_eq!(
            round_trip(&ChannelsList(vec![(2, 0), (3, 0), (4, 0)])),
            vec![3, 0, 0, 0, 2, 0, 3, 0, 4, 0]
        );
        round_trip(&MouseMode {
            supported_modes: 3,
            current_mode: 2,
        });
        round_trip(&MultiMediaTime { time: 5 });
        round_trip(&AgentConnected {});
        round_trip(&AgentDisconnected { error_code: 0 });
        round_trip(&AgentToken { num_tokens: 5 });
        assert_eq!(
            round_trip(&Name("vm".into())),
            vec![3, 0, 0, 0, b'v', b'm', 0]
        );
        round_trip(&Uuid { uuid: [9; 16] });
        round_trip(&AgentConnectedTokens { num_tokens: 10 });
    }

    #[test]
    fn client_main_messages_parse() {
        assert_eq!(
            MainClientMessage::parse(104, &[]).unwrap(),
            MainClientMessage::AttachChannels
        );
        assert!(MainClientMessage::parse(104, &[0]).is_err());
        let b = round_trip(&MouseModeRequest { mode: 2 });
        assert!(MainClientMessage::parse(105, &b).is_ok());
        for cut in 0..b.len() {
            assert!(MainClientMessage::parse(105, &b[..cut]).is_err());
        }
        let b = round_trip(&AgentStart { num_tokens: !0 });
        assert!(MainClientMessage::parse(106, &b).is_ok());
        round_trip(&ClientInfo { cache_size: 1 });
        assert!(MainClientMessage::parse(107, &[1; 2048]).is_ok());
        assert!(MainClientMessage::parse(107, &[1; 2049]).is_err());
        assert!(MainClientMessage::parse(999, &[]).is_err());
    }

    #[test]
    fn agent_data_round_trip() {
        let d = AgentData(vec![1, 2, 3]);
        assert_eq!(decode_exact::<AgentData>(&to_vec(&d)).unwrap(), d);
    }

    #[test]
    fn name_rejects_missing_nul() {
        assert!(decode_exact::<Name>(&[2, 0, 0, 0, b'a', b'b']).is_err());
        assert!(decode_exact::<Name>(&[0, 0, 0, 0]).is_err());
    }
}

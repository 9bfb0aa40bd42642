//! Messages valid on every channel (reference sheet §2.2).

use super::{message, wire_struct, Decode, Encode, Reader, WireError};

/// Server → client base message ids.
pub mod server_id {
    /// SET_ACK
    pub const SET_ACK: u16 = 3;
    /// PING
    pub const PING: u16 = 4;
    /// DISCONNECTING
    pub const DISCONNECTING: u16 = 6;
    /// NOTIFY
    pub const NOTIFY: u16 = 7;
}

/// Client → server base message ids.
pub mod client_id {
    /// ACK_SYNC
    pub const ACK_SYNC: u16 = 1;
    /// ACK
    pub const ACK: u16 = 2;
    /// PONG
    pub const PONG: u16 = 3;
    /// MIGRATE_FLUSH_MARK
    pub const MIGRATE_FLUSH_MARK: u16 = 4;
    /// MIGRATE_DATA
    pub const MIGRATE_DATA: u16 = 5;
    /// DISCONNECTING
    pub const DISCONNECTING: u16 = 6;
}

/// Most padding bytes a PING may carry when decoded (spice-server's net test uses 256,000).
pub const MAX_PING_PADDING: usize = 1 << 20;

wire_struct! {
    /// SET_ACK {generation, window}.
    pub struct SetAck {
        /// generation, echoed by ACK_SYNC
        pub generation: u32,
        /// messages per ACK
        pub window: u32,
    }
}
message!(SetAck, server_id::SET_ACK);

/// PING {id, timestamp, padding to the end}.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ping {
    /// id echoed by PONG
    pub id: u32,
    /// timestamp echoed by PONG
    pub timestamp: u64,
    /// padding size (zeros)
    pub padding: u32,
}
impl Encode for Ping {
    fn encode(&self, out: &mut Vec<u8>) {
        self.id.encode(out);
        self.timestamp.encode(out);
        out.resize(out.len() + self.padding as usize, 0);
    }
}
impl Decode for Ping {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let id = r.u32()?;
        let timestamp = r.u64()?;
        let padding = r.rest().len();
        if padding > MAX_PING_PADDING {
            return Err(WireError::TooLarge {
                what: "ping padding",
                len: padding as u64,
                max: MAX_PING_PADDING as u64,
            });
        }
        Ok(Ping {
            id,
            timestamp,
            padding: padding as u32,
        })
    }
}
message!(Ping, server_id::PING);

wire_struct! {
    /// DISCONNECTING {time_stamp, reason} (both directions).
    pub struct Disconnecting {
        /// time stamp
        pub time_stamp: u64,
        /// `SpiceLinkErr`
        pub reason: u32,
    }
}
message!(Disconnecting, server_id::DISCONNECTING);

wire_struct! {
    /// Client ACK_SYNC {generation}.
    pub struct AckSync {
        /// generation of the SET_ACK being answered
        pub generation: u32,
    }
}
message!(AckSync, client_id::ACK_SYNC);

wire_struct! {
    /// Client ACK {} (one per `window` received messages).
    pub struct Ack {}
}
message!(Ack, client_id::ACK);

wire_struct! {
    /// Client PONG {id, timestamp}.
    pub struct Pong {
        /// PING id
        pub id: u32,
        /// PING timestamp
        pub timestamp: u64,
    }
}
message!(Pong, client_id::PONG);

/// A base message a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseClientMessage {
    /// ACK_SYNC
    AckSync(AckSync),
    /// ACK
    Ack,
    /// PONG
    Pong(Pong),
    /// DISCONNECTING
    Disconnecting(Disconnecting),
}

impl BaseClientMessage {
    /// Parses a base message, `None` if `msg_type` is not a base id this server accepts.
    /// (Migration messages are refused: this server never advertises migration.)
    pub fn parse(msg_type: u16, body: &[u8]) -> Option<Result<Self, WireError>> {
        use super::decode_exact as d;
        Some(match msg_type {
            client_id::ACK_SYNC => d(body).map(BaseClientMessage::AckSync),
            client_id::ACK => d::<Ack>(body).map(|_| BaseClientMessage::Ack),
            client_id::PONG => d(body).map(BaseClientMessage::Pong),
            client_id::DISCONNECTING => d(body).map(BaseClientMessage::Disconnecting),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::round_trip;

    #[test]
    fn base_messages_round_trip() {
        assert_eq!(
            round_trip(&SetAck {
                generation: 1,
                window: 20
            })
            .len(),
            8
        );
        assert_eq!(round_trip(&AckSync { generation: 1 }).len(), 4);
        round_trip(&Ack {});
        assert_eq!(
            round_trip(&Pong {
                id: 3,
                timestamp: 99
            })
            .len(),
            12
        );
        round_trip(&Disconnecting {
            time_stamp: 5,
            reason: 7,
        });
    }

    #[test]
    fn ping_keeps_padding_length() {
        let p = Ping {
            id: 1,
            timestamp: 2,
            padding: 10,
        };
        let b = crate::wire::to_vec(&p);
        assert_eq!(b.len(), 22);
        assert_eq!(crate::wire::decode_exact::<Ping>(&b).unwrap(), p);
        for cut in 0..12 {
            assert!(crate::wire::decode_exact::<Ping>(&b[..cut]).is_err());
        }
    }

    #[test]
    fn base_parse_rejects_migration_and_garbage() {
        assert!(BaseClientMessage::parse(client_id::MIGRATE_DATA, &[]).is_none());
        assert!(BaseClientMessage::parse(client_id::PONG, &[1, 2])
            .unwrap()
            .is_err());
        assert!(BaseClientMessage::parse(client_id::ACK, &[1])
            .unwrap()
            .is_err());
    }
}

//! The link stage as a state machine of types (reference sheet §1).
//!
//! `ExpectHeader` → `ExpectLinkMess` → `ExpectAuth` → `ExpectTicket` → [`Linked`]. Each state
//! says how many bytes it needs ([`ExpectHeader::LEN`], [`ExpectLinkMess::len`], ...) and its
//! `handle` consumes `self`, so a state cannot be reused or skipped. The async driver in
//! [`crate::server`] only moves bytes; all decisions are here, which is also what the fuzz target
//! drives.
//!
//! Errors before the link reply is sent are answered with a `SpiceLinkReply` carrying the error
//! code; errors after it with the 4-byte link result ([`LinkError::code`]).

use std::time::SystemTime;

use rsa::pkcs8::EncodePublicKey;
use rsa::{Oaep, RsaPrivateKey};

use crate::tls::{ChannelSecurity, Security};
use crate::wire::header::HeaderKind;
use crate::wire::link::{
    link_err, LinkHeader, LinkMess, LinkReply, LINK_MESS_FIXED, LINK_MESS_MAX, PUBKEY_BYTES,
    SPICE_MAGIC, TICKET_BYTES, VERSION_MAJOR,
};
use crate::wire::types::{common_cap, Caps, ChannelType};
use crate::wire::{decode_exact, display, inputs, WireError};

/// Longest password a Spice client can send (`SPICE_MAX_PASSWORD_LENGTH`).
pub const MAX_PASSWORD_LEN: usize = 60;
/// Auth mechanism value for Spice ticket auth (the AUTH_SPICE cap number).
pub const AUTH_MECHANISM_SPICE: u32 = 1;

/// Why a link failed. [`LinkError::code`] maps each to the `SpiceLinkErr` the client sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The first four bytes were not "REDQ".
    #[error("invalid magic {0:#010x}")]
    InvalidMagic(u32),
    /// Protocol major version other than 2.
    #[error("protocol major version {0} (need 2)")]
    VersionMismatch(u32),
    /// Link message size out of range.
    #[error("link message size {0} outside 18..=4096")]
    BadSize(u32),
    /// Link message did not decode.
    #[error("malformed link message: {0}")]
    Malformed(#[from] WireError),
    /// The client chose an auth mechanism this server does not offer (e.g. SASL).
    #[error("unsupported auth mechanism {0}")]
    UnsupportedAuth(u32),
    /// Wrong password / undecryptable ticket.
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// The password has expired.
    #[error("permission denied: password expired")]
    TicketExpired,
    /// A secondary channel named a session that does not exist.
    #[error("bad connection id {0:#x}")]
    BadConnectionId(u32),
    /// A channel type or id this server does not serve.
    #[error("channel type {0} id {1} not available")]
    ChannelNotAvailable(u8, u8),
    /// The RSA key could not be made.
    #[error("ticket key: {0}")]
    Key(String),
    /// The channel must use TLS (`tls-channel`) and came to the plain port.
    #[error("channel type {0} must use the TLS port")]
    NeedSecured(u8),
    /// The channel must be plain (`plaintext-channel`) and came to the TLS port.
    #[error("channel type {0} must use the plain port")]
    NeedUnsecured(u8),
}

impl LinkError {
    /// The `SpiceLinkErr` code the client is told.
    pub fn code(&self) -> u32 {
        match self {
            LinkError::InvalidMagic(_) => link_err::INVALID_MAGIC,
            LinkError::VersionMismatch(_) => link_err::VERSION_MISMATCH,
            LinkError::BadSize(_) | LinkError::Malformed(_) => link_err::INVALID_DATA,
            LinkError::UnsupportedAuth(_) => link_err::INVALID_DATA,
            LinkError::PermissionDenied(_) | LinkError::TicketExpired => {
                link_err::PERMISSION_DENIED
            }
            LinkError::BadConnectionId(_) => link_err::BAD_CONNECTION_ID,
            LinkError::ChannelNotAvailable(..) => link_err::CHANNEL_NOT_AVAILABLE,
            LinkError::Key(_) => link_err::ERROR,
            LinkError::NeedSecured(_) => link_err::NEED_SECURED,
            LinkError::NeedUnsecured(_) => link_err::NEED_UNSECURED,
        }
    }
}

/// The server's RSA-1024 ticket key and its DER SubjectPublicKeyInfo.
pub struct TicketKey {
    private: RsaPrivateKey,
    der: [u8; PUBKEY_BYTES],
}

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey(RSA-1024)")
    }
}

impl TicketKey {
    /// A fresh random RSA-1024 key (exponent 65537).
    pub fn generate() -> Result<TicketKey, LinkError> {
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), 1024)
            .map_err(|e| LinkError::Key(e.to_string()))?;
        TicketKey::from_private(private)
    }

    /// Wraps an existing 1024-bit key.
    pub fn from_private(private: RsaPrivateKey) -> Result<TicketKey, LinkError> {
        let doc = private
            .to_public_key()
            .to_public_key_der()
            .map_err(|e| LinkError::Key(e.to_string()))?;
        let der: [u8; PUBKEY_BYTES] = doc.as_bytes().try_into().map_err(|_| {
            LinkError::Key(format!(
                "public key DER is {} bytes, need {PUBKEY_BYTES} (RSA-1024)",
                doc.as_bytes().len()
            ))
        })?;
        Ok(TicketKey { private, der })
    }

    /// DER SubjectPublicKeyInfo sent in the link reply.
    pub fn public_der(&self) -> &[u8; PUBKEY_BYTES] {
        &self.der
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.private.decrypt(Oaep::new::<sha1::Sha1>(), ticket).ok()
    }
}

/// What a ticket must contain.
#[derive(Debug, Clone)]
pub enum TicketPolicy {
    /// Any ticket is accepted (ticketing disabled by configuration).
    Disabled,
    /// The ticket must decrypt to this password; optionally only until `expires`.
    Password {
        /// the password
        password: String,
        /// after this instant every ticket is refused
        expires: Option<SystemTime>,
    },
}

/// The caps this server advertises for a channel type.
pub fn server_caps(channel: ChannelType) -> (Caps, Caps) {
    let common = Caps::from_bits(&[
        common_cap::AUTH_SELECTION,
        common_cap::AUTH_SPICE,
        common_cap::MINI_HEADER,
    ]);
    let chan = match channel {
        ChannelType::Display => Caps::from_bits(&[
            display::cap::MONITORS_CONFIG,
            display::cap::PREF_COMPRESSION,
            display::cap::PREF_VIDEO_CODEC_TYPE,
        ]),
        ChannelType::Inputs => Caps::from_bits(&[inputs::CAP_KEY_SCANCODE]),
        _ => Caps::default(),
    };
    (common, chan)
}

/// First state: waiting for the 16-byte link header.
#[derive(Debug, Default)]
pub struct ExpectHeader;

impl ExpectHeader {
    /// Bytes needed.
    pub const LEN: usize = 16;

    /// Checks magic, major version and size.
    pub fn handle(self, bytes: &[u8]) -> Result<ExpectLinkMess, LinkError> {
        let h: LinkHeader = decode_exact(bytes)?;
        if h.magic != SPICE_MAGIC {
            return Err(LinkError::InvalidMagic(h.magic));
        }
        if h.major_version != VERSION_MAJOR {
            return Err(LinkError::VersionMismatch(h.major_version));
        }
        if !(LINK_MESS_FIXED..=LINK_MESS_MAX).contains(&h.size) {
            return Err(LinkError::BadSize(h.size));
        }
        Ok(ExpectLinkMess { size: h.size })
    }
}

/// Waiting for the `SpiceLinkMess` of the announced size.
#[derive(Debug)]
pub struct ExpectLinkMess {
    size: u32,
}

impl ExpectLinkMess {
    /// Bytes needed (at most 4096).
    pub fn len(&self) -> usize {
        self.size as usize
    }

    /// Always false (the size is at least 18); present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Decodes the link message. Returns the next state and the reply bytes (header + reply)
    /// to send.
    pub fn handle(self, bytes: &[u8], key: &TicketKey) -> Result<(ExpectAuth, Vec<u8>), LinkError> {
        self.handle_on(bytes, key, &ChannelSecurity::default(), false)
    }

    /// Like [`ExpectLinkMess::handle`] for a connection that came over TLS (`tls`) or not,
    /// under the per-channel policy `security`: a channel on the wrong port is refused with
    /// `NEED_SECURED` or `NEED_UNSECURED` in the link reply, so the client reconnects it to the
    /// other port.
    pub fn handle_on(
        self,
        bytes: &[u8],
        key: &TicketKey,
        security: &ChannelSecurity,
        tls: bool,
    ) -> Result<(ExpectAuth, Vec<u8>), LinkError> {
        if bytes.len() != self.len() {
            return Err(WireError::Truncated {
                needed: self.len(),
                available: bytes.len(),
            }
            .into());
        }
        let mess: LinkMess = decode_exact(bytes)?;
        match (security.of(mess.channel_type.into()), tls) {
            (Security::Secure, false) => return Err(LinkError::NeedSecured(mess.channel_type)),
            (Security::Plain, true) => return Err(LinkError::NeedUnsecured(mess.channel_type)),
            _ => {}
        }
        let (common_caps, channel_caps) = server_caps(mess.channel_type.into());
        let reply = LinkReply {
            error: link_err::OK,
            pub_key: *key.public_der(),
            common_caps,
            channel_caps,
        };
        Ok((ExpectAuth { mess }, reply.to_bytes_with_header()))
    }
}

/// Link reply sent; waiting for the auth mechanism word (if the client does auth selection).
#[derive(Debug)]
pub struct ExpectAuth {
    mess: LinkMess,
}

impl ExpectAuth {
    /// Bytes of the mechanism word.
    pub const LEN: usize = 4;

    /// The client's link message.
    pub fn link_mess(&self) -> &LinkMess {
        &self.mess
    }

    /// True if the client announced AUTH_SELECTION and will send a mechanism word first.
    pub fn expects_mechanism(&self) -> bool {
        self.mess.common_caps.has(common_cap::AUTH_SELECTION)
    }

    /// Handles the mechanism word: only AUTH_SPICE (1) is offered.
    pub fn handle(self, bytes: &[u8]) -> Result<ExpectTicket, LinkError> {
        let m: u32 = decode_exact(bytes)?;
        if m != AUTH_MECHANISM_SPICE {
            return Err(LinkError::UnsupportedAuth(m));
        }
        Ok(ExpectTicket { mess: self.mess })
    }

    /// For a client without AUTH_SELECTION: the ticket comes next.
    pub fn skip_mechanism(self) -> ExpectTicket {
        ExpectTicket { mess: self.mess }
    }
}

/// Waiting for the 128-byte encrypted ticket.
#[derive(Debug)]
pub struct ExpectTicket {
    mess: LinkMess,
}

impl ExpectTicket {
    /// Bytes needed.
    pub const LEN: usize = TICKET_BYTES;

    /// Decrypts and checks the ticket against `policy` at time `now`.
    pub fn handle(
        self,
        bytes: &[u8],
        key: &TicketKey,
        policy: &TicketPolicy,
        now: SystemTime,
    ) -> Result<Linked, LinkError> {
        if bytes.len() != Self::LEN {
            return Err(WireError::Truncated {
                needed: Self::LEN,
                available: bytes.len(),
            }
            .into());
        }
        match policy {
            // with ticketing disabled the ticket is read but neither decrypted nor checked
            TicketPolicy::Disabled => {}
            TicketPolicy::Password { password, expires } => {
                let plain = key
                    .decrypt(bytes)
                    .ok_or(LinkError::PermissionDenied("ticket does not decrypt"))?;
                let given = plain.split(|&b| b == 0).next().unwrap_or(&[]);
                if !ticket_matches(given, password.as_bytes()) {
                    return Err(LinkError::PermissionDenied("wrong password"));
                }
                if expires.is_some_and(|e| now > e) {
                    return Err(LinkError::TicketExpired);
                }
            }
        }
        let m = self.mess;
        Ok(Linked {
            connection_id: m.connection_id,
            channel_type: m.channel_type.into(),
            channel_id: m.channel_id,
            header: if m.common_caps.has(common_cap::MINI_HEADER) {
                HeaderKind::Mini
            } else {
                HeaderKind::Full
            },
            common_caps: m.common_caps,
            channel_caps: m.channel_caps,
        })
    }
}

/// Compares the ticket a client sent with the password in a time that depends on neither
/// their contents nor their lengths: both are zero-padded to the ticket block size and compared
/// with `subtle`, lengths included.
fn ticket_matches(given: &[u8], password: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let (mut a, mut b) = ([0u8; TICKET_BYTES], [0u8; TICKET_BYTES]);
    let (la, lb) = (
        given.len().min(TICKET_BYTES),
        password.len().min(TICKET_BYTES),
    );
    a[..la].copy_from_slice(&given[..la]);
    b[..lb].copy_from_slice(&password[..lb]);
    let same_len = (given.len() as u64).ct_eq(&(password.len() as u64));
    (a.ct_eq(&b) & same_len).into()
}

/// An authenticated channel connection, before session lookup.
#[derive(Debug, Clone)]
pub struct Linked {
    /// 0 for a new session (main), else the session id
    pub connection_id: u32,
    /// channel type
    pub channel_type: ChannelType,
    /// channel instance
    pub channel_id: u8,
    /// data header in use (mini iff the client announced MINI_HEADER; we always do)
    pub header: HeaderKind,
    /// client common caps
    pub common_caps: Caps,
    /// client channel caps
    pub channel_caps: Caps,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{encrypt_ticket, test_key};
    use crate::wire::to_vec;

    fn header_bytes(size: u32) -> Vec<u8> {
        to_vec(&LinkHeader {
            magic: SPICE_MAGIC,
            major_version: 2,
            minor_version: 2,
            size,
        })
    }

    fn mess(ct: u8) -> Vec<u8> {
        to_vec(&LinkMess {
            connection_id: 0,
            channel_type: ct,
            channel_id: 0,
            common_caps: Caps(vec![0x0d]),
            channel_caps: Caps(vec![0x0f]),
        })
    }

    fn run(password: &str, policy: &TicketPolicy) -> Result<Linked, LinkError> {
        let key = test_key();
        let m = mess(1);
        let s = ExpectHeader.handle(&header_bytes(m.len() as u32))?;
        let (auth, reply) = s.handle(&m, key)?;
        let r: LinkReply = decode_exact(&reply[16..]).unwrap();
        assert_eq!(r.error, 0);
        assert_eq!(r.common_caps.0, vec![0x0b]);
        assert!(auth.expects_mechanism());
        let t = auth.handle(&1u32.to_le_bytes())?;
        let ticket = encrypt_ticket(&r.pub_key, password);
        t.handle(&ticket, key, policy, SystemTime::now())
    }

    #[test]
    fn public_key_is_162_byte_spki() {
        let der = test_key().public_der();
        assert_eq!(&der[..3], &[0x30, 0x81, 0x9f]);
        assert_eq!(&der[der.len() - 5..], &[0x02, 0x03, 0x01, 0x00, 0x01]);
    }

    #[test]
    fn right_password_links_with_mini_header() {
        let p = TicketPolicy::Password {
            password: "s3cret".into(),
            expires: None,
        };
        let l = run("s3cret", &p).unwrap();
        assert_eq!(l.channel_type, ChannelType::Main);
        assert_eq!(l.header, HeaderKind::Mini);
    }

    #[test]
    fn wrong_password_is_permission_denied() {
        let p = TicketPolicy::Password {
            password: "s3cret".into(),
            expires: None,
        };
        let e = run("s3cre", &p).unwrap_err();
        assert_eq!(e.code(), link_err::PERMISSION_DENIED);
        let e = run("s3cret2", &p).unwrap_err();
        assert_eq!(e.code(), link_err::PERMISSION_DENIED);
    }

    #[test]
    fn expired_password_is_permission_denied() {
        let p = TicketPolicy::Password {
            password: "pw".into(),
            expires: Some(SystemTime::UNIX_EPOCH),
        };
        assert!(matches!(run("pw", &p), Err(LinkError::TicketExpired)));
    }

    #[test]
    fn disabled_ticketing_accepts_anything() {
        assert!(run("whatever", &TicketPolicy::Disabled).is_ok());
    }

    #[test]
    fn garbage_ticket_is_denied() {
        let key = test_key();
        let m = mess(1);
        let s = ExpectHeader.handle(&header_bytes(m.len() as u32)).unwrap();
        let (auth, _) = s.handle(&m, key).unwrap();
        let t = auth.handle(&1u32.to_le_bytes()).unwrap();
        let p = TicketPolicy::Password {
            password: String::new(),
            expires: None,
        };
        let e = t
            .handle(&[0x55; 128], key, &p, SystemTime::now())
            .unwrap_err();
        assert_eq!(e.code(), link_err::PERMISSION_DENIED);
    }

    #[test]
    fn header_checks() {
        let mut h = header_bytes(26);
        h[0] = b'X';
        assert_eq!(
            ExpectHeader.handle(&h).unwrap_err().code(),
            link_err::INVALID_MAGIC
        );
        let mut h = header_bytes(26);
        h[4] = 3;
        assert_eq!(
            ExpectHeader.handle(&h).unwrap_err().code(),
            link_err::VERSION_MISMATCH
        );
        assert!(ExpectHeader.handle(&header_bytes(17)).is_err());
        assert!(ExpectHeader.handle(&header_bytes(4097)).is_err());
        assert!(ExpectHeader.handle(&header_bytes(26)[..15]).is_err());
    }

    #[test]
    fn sasl_mechanism_is_refused() {
        let key = test_key();
        let m = mess(2);
        let s = ExpectHeader.handle(&header_bytes(m.len() as u32)).unwrap();
        let (auth, _) = s.handle(&m, key).unwrap();
        assert!(matches!(
            auth.handle(&2u32.to_le_bytes()),
            Err(LinkError::UnsupportedAuth(2))
        ));
    }

    #[test]
    fn every_truncated_link_mess_is_rejected() {
        let key = test_key();
        let m = mess(1);
        for cut in 0..m.len() {
            let s = ExpectHeader.handle(&header_bytes(cut as u32 + 18)).ok();
            if let Some(s) = s {
                assert!(s.handle(&m[..cut], key).is_err());
            }
        }
    }
}

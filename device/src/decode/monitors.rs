//! Guest monitors config (reference §7 "Monitors config", §9 CVE-2015-3247: count read once).

use super::{read_struct, DecodeError, Limits};
use crate::abi::cmd::{QxlHead, QxlMonitorsConfig};
use crate::mem::{GuestMemory, QxlPhys};
use zerocopy::FromBytes;

/// One head of a guest monitors config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    /// Head id.
    pub id: u32,
    /// Surface shown.
    pub surface_id: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// X offset within the surface.
    pub x: u32,
    /// Y offset within the surface.
    pub y: u32,
    /// Flags.
    pub flags: u32,
}

/// A decoded QXLMonitorsConfig (guest → device).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonitorsConfig {
    /// The driver's capacity (0 = no limit given).
    pub max_allowed: u16,
    /// The heads; empty when the guest sent count 0 (spice ignores such a config).
    pub heads: Vec<Head>,
}

pub(super) fn decode(
    mem: &dyn GuestMemory,
    addr: QxlPhys,
    limits: &Limits,
) -> Result<MonitorsConfig, DecodeError> {
    // The header is copied once; `count` is never read again.
    let hdr: QxlMonitorsConfig = read_struct(mem, addr)?;
    let count = hdr.count.get();
    let max_allowed = hdr.max_allowed.get();
    let mut max = limits.max_heads.min(64);
    if max_allowed != 0 {
        max = max.min(max_allowed as u32);
    }
    if count as u32 > max {
        return Err(DecodeError::MonitorsCount { count, max });
    }
    let heads_addr = addr.checked_add(4).ok_or(DecodeError::AddressOverflow {
        addr: addr.0,
        len: 4,
    })?;
    let mut buf = vec![0u8; count as usize * 28];
    mem.read(heads_addr, &mut buf)?;
    let heads = buf
        .chunks_exact(28)
        .filter_map(|c| QxlHead::read_from_bytes(c).ok())
        .map(|h| Head {
            id: h.id.get(),
            surface_id: h.surface_id.get(),
            width: h.width.get(),
            height: h.height.get(),
            x: h.x.get(),
            y: h.y.get(),
            flags: h.flags.get(),
        })
        .collect();
    Ok(MonitorsConfig { max_allowed, heads })
}

//! The ROM BAR: QXLRom, the modes table, and the client monitors config with its CRC
//! (reference qxl-device.md §3).

use crate::abi::dev::{
    QxlClientMonitorsConfig, QxlMode, QxlRom, QxlURect, CLIENT_CAPABILITIES_BYTES,
    CLIENT_MONITORS_CONFIG_MAX_HEADS, QXL_ROM_MAGIC, SLOTS_END, SLOTS_START,
};
use crate::config::{Layout, QxlConfig};
use core::mem::size_of;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// QEMU's static resolution list (`qxl_modes[]`); each gives 4 modes (16/32 bpp × orientation
/// 0/1), and a mode's id is its index in the expanded list.
pub const QXL_RESOLUTIONS: [(u32, u32); 37] = [
    (640, 480),
    (800, 480),
    (800, 600),
    (832, 624),
    (960, 640),
    (1024, 600),
    (1024, 768),
    (1152, 864),
    (1152, 870),
    (1280, 720),
    (1280, 760),
    (1280, 768),
    (1280, 800),
    (1280, 960),
    (1280, 1024),
    (1360, 768),
    (1366, 768),
    (1400, 1050),
    (1440, 900),
    (1600, 900),
    (1600, 1200),
    (1680, 1050),
    (1920, 1080),
    (1920, 1200),
    (1920, 1440),
    (2000, 2000),
    (2048, 1536),
    (2048, 2048),
    (2560, 1440),
    (2560, 1600),
    (2560, 2048),
    (2800, 2100),
    (3200, 2400),
    (3840, 2160),
    (4096, 2160),
    (7680, 4320),
    (8192, 4320),
];

/// Millimetres for `px` pixels: QEMU's `0.2936875 * px`, truncated (exact in integers).
fn mili(px: u32) -> u32 {
    ((px as u64 * 2_936_875) / 10_000_000) as u32
}

/// The full static mode list (148 entries), ids = index.
pub fn all_modes() -> Vec<QxlMode> {
    let mut v = Vec::with_capacity(QXL_RESOLUTIONS.len() * 4);
    for &(x, y) in QXL_RESOLUTIONS.iter() {
        for orientation in 0..2u32 {
            for bits in [16u32, 32] {
                let id = v.len() as u32;
                v.push(QxlMode {
                    id: id.into(),
                    x_res: x.into(),
                    y_res: y.into(),
                    bits: bits.into(),
                    stride: (x * bits / 8).into(),
                    x_mili: mili(x).into(),
                    y_mili: mili(y).into(),
                    orientation: orientation.into(),
                });
            }
        }
    }
    v
}

/// The modes that fit `vgamem` (y · stride ≤ vgamem), keeping their full-list ids.
pub fn modes_for(vgamem: u64) -> Vec<QxlMode> {
    all_modes()
        .into_iter()
        .filter(|m| m.y_res.get() as u64 * m.stride.get() as u64 <= vgamem)
        .collect()
}

/// Builds the initial ROM image (`layout.rom_size` bytes), as QEMU's `init_qxl_rom`.
pub fn build_rom(cfg: &QxlConfig, layout: &Layout) -> Vec<u8> {
    let mut bytes = vec![0u8; layout.rom_size as usize];
    let mut rom = QxlRom::new_zeroed();
    rom.magic = QXL_ROM_MAGIC.into();
    rom.id = cfg.id.into();
    rom.log_level = cfg.log_level.into();
    rom.modes_offset = (size_of::<QxlRom>() as u32).into();
    rom.slot_gen_bits = 8;
    rom.slot_id_bits = 8;
    rom.slots_start = SLOTS_START;
    rom.slots_end = SLOTS_END;
    rom.n_surfaces = cfg.n_surfaces.into();
    rom.draw_area_offset = 0.into();
    rom.surface0_area_size = layout.surface0_area_size.into();
    rom.pages_offset = layout.pages_offset.into();
    rom.num_pages = layout.num_pages.into();
    rom.ram_header_offset = layout.ram_header_offset.into();
    if let Some((w, h)) = cfg.initial_monitor {
        let mut mc = QxlClientMonitorsConfig::new_zeroed();
        mc.count = 1.into();
        mc.heads[0] = QxlURect {
            top: 0.into(),
            left: 0.into(),
            bottom: h.into(),
            right: w.into(),
        };
        rom.client_monitors_config_crc = crc32(mc.as_bytes()).into();
        rom.client_monitors_config = mc;
    }
    bytes[..size_of::<QxlRom>()].copy_from_slice(rom.as_bytes());
    // Modes table: n_modes, then the entries. 148 × 32 + 4 + 1160 < 8192, always fits.
    let modes = modes_for(cfg.vgamem_size);
    let mut off = size_of::<QxlRom>();
    bytes[off..off + 4].copy_from_slice(&(modes.len() as u32).to_le_bytes());
    off += 4;
    for m in &modes {
        bytes[off..off + size_of::<QxlMode>()].copy_from_slice(m.as_bytes());
        off += size_of::<QxlMode>();
    }
    bytes
}

/// CRC-32 as Linux `crc32(0, ..)` computes it: reflected polynomial 0xEDB88320, initial
/// value 0, no final XOR (reference §3).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// One client monitor (a head of the client's window layout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientMonitor {
    /// Left edge in the client's desktop.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// Encodes `heads` (truncated to `max_heads` ≤ 64) as the ROM's 1028-byte client monitors
/// config; returns it with its CRC. Coordinates saturate instead of wrapping.
pub fn encode_client_monitors(
    heads: &[ClientMonitor],
    max_heads: usize,
) -> (QxlClientMonitorsConfig, u32) {
    let mut mc = QxlClientMonitorsConfig::new_zeroed();
    let n = heads
        .len()
        .min(max_heads)
        .min(CLIENT_MONITORS_CONFIG_MAX_HEADS);
    mc.count = (n as u16).into();
    for (slot, h) in mc.heads.iter_mut().zip(heads.iter().take(n)) {
        *slot = QxlURect {
            top: h.y.into(),
            left: h.x.into(),
            bottom: h.y.saturating_add(h.height).into(),
            right: h.x.saturating_add(h.width).into(),
        };
    }
    let crc = crc32(mc.as_bytes());
    (mc, crc)
}

/// Reads back the ROM's QXLRom header (for tests and the mock driver).
pub fn parse_rom(rom: &[u8]) -> Option<QxlRom> {
    QxlRom::read_from_prefix(rom).ok().map(|(r, _)| r)
}

/// Capability bytes, zero-padded/truncated to the ROM field.
pub fn caps_bytes(caps: &[u8]) -> [u8; CLIENT_CAPABILITIES_BYTES] {
    let mut out = [0u8; CLIENT_CAPABILITIES_BYTES];
    for (o, c) in out.iter_mut().zip(caps) {
        *o = *c;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_test_vectors_from_the_sheet() {
        assert_eq!(crc32(&[0u8; 1028]), 0);
        let (mc, crc) = encode_client_monitors(
            &[ClientMonitor {
                x: 0,
                y: 0,
                width: 1024,
                height: 768,
            }],
            64,
        );
        assert_eq!(mc.as_bytes().len(), 1028);
        assert_eq!(crc, 0x3DEC_149C);
    }

    #[test]
    fn modes_table_ids_and_filter() {
        let all = all_modes();
        assert_eq!(all.len(), 148);
        assert_eq!(all[0].x_res.get(), 640);
        assert_eq!(all[1].bits.get(), 32);
        assert_eq!(all[2].orientation.get(), 1);
        assert_eq!(all[0].x_mili.get(), 187);
        // 16 MiB: 8192x4320x4 = 141 MB does not fit, 4096x2160x2 = 17.7 MB does not either.
        let m = modes_for(16 << 20);
        assert!(m.iter().all(|m| m.y_res.get() * m.stride.get() <= 16 << 20));
        // ids are not contiguous once something is filtered out, and stay full-list indices.
        let m2560 = m
            .iter()
            .find(|m| m.x_res.get() == 2560 && m.y_res.get() == 1600 && m.bits.get() == 32)
            .unwrap();
        assert_eq!(m2560.id.get(), 29 * 4 + 1);
        assert!(!m.iter().any(|m| m.x_res.get() == 8192));
    }

    #[test]
    fn rom_header_fields() {
        let cfg = QxlConfig::default();
        let l = cfg.validate().unwrap();
        let rom = build_rom(&cfg, &l);
        assert_eq!(rom.len(), 8192);
        let r = parse_rom(&rom).unwrap();
        assert_eq!(r.magic.get(), QXL_ROM_MAGIC);
        assert_eq!(r.modes_offset.get(), 1160);
        assert_eq!(r.ram_header_offset.get(), 0x3FF_E000);
        assert_eq!(r.num_pages.get(), 12286);
        assert_eq!(
            (r.slots_start, r.slots_end, r.slot_gen_bits, r.slot_id_bits),
            (1, 7, 8, 8)
        );
        assert_eq!(r.n_surfaces.get(), 1024);
        assert_eq!(r.client_monitors_config_crc.get(), 0);
        let n = u32::from_le_bytes(rom[1160..1164].try_into().unwrap());
        assert_eq!(n as usize, modes_for(16 << 20).len());
    }
}

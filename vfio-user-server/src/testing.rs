//! Test tools (feature `test-utils`): a mock PCI function with plain memory behind its BARs and
//! config space, raw message builders, and descriptor passing for tests that play the VMM.

use crate::function::{BarBacking, PciFunction};

pub use crate::sock::send_with_fd;

/// Vendor:device id the mock reports in config space (dword 0).
pub const MOCK_ID: u32 = 0x1234_5678;

/// A PCI function whose BAR0 (64 KiB, writable), BAR1 (4 KiB, read-only) and config space
/// (256 bytes) are plain memory; out-of-range accesses read all-ones and are dropped on write.
#[derive(Clone, Debug)]
pub struct MockFunction {
    /// Config space.
    pub config: Vec<u8>,
    /// BAR0 contents.
    pub bar0: Vec<u8>,
    /// BAR1 contents (read-only to the VMM).
    pub bar1: Vec<u8>,
    /// Resets requested.
    pub resets: u64,
}

impl Default for MockFunction {
    fn default() -> Self {
        let mut config = vec![0u8; 256];
        config[..4].copy_from_slice(&MOCK_ID.to_le_bytes());
        MockFunction {
            config,
            bar0: vec![0; 64 << 10],
            bar1: vec![0xAB; 4 << 10],
            resets: 0,
        }
    }
}

fn range(len: usize, offset: u64, n: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(n)?;
    (end <= len).then_some(start..end)
}

fn read(mem: &[u8], offset: u64, data: &mut [u8]) {
    match range(mem.len(), offset, data.len()) {
        Some(r) => data.copy_from_slice(&mem[r]),
        None => data.fill(0xff),
    }
}

fn write(mem: &mut [u8], offset: u64, data: &[u8]) {
    if let Some(r) = range(mem.len(), offset, data.len()) {
        mem[r].copy_from_slice(data);
    }
}

impl PciFunction for MockFunction {
    fn bars(&self) -> [BarBacking; 6] {
        let mut b = [BarBacking::Absent; 6];
        b[0] = BarBacking::Trapped {
            size: self.bar0.len() as u64,
            writable: true,
        };
        b[1] = BarBacking::Trapped {
            size: self.bar1.len() as u64,
            writable: false,
        };
        b
    }
    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        read(&self.config, offset, data)
    }
    fn config_write(&mut self, offset: u64, data: &[u8]) {
        // The identity dword is read-only.
        if offset >= 4 {
            write(&mut self.config, offset, data)
        }
    }
    fn bar_read(&mut self, bar: u32, offset: u64, data: &mut [u8]) {
        match bar {
            0 => read(&self.bar0, offset, data),
            1 => read(&self.bar1, offset, data),
            _ => data.fill(0xff),
        }
    }
    fn bar_write(&mut self, bar: u32, offset: u64, data: &[u8]) {
        if bar == 0 {
            write(&mut self.bar0, offset, data)
        }
    }
    fn reset(&mut self) {
        self.resets += 1;
        self.bar0.fill(0);
    }
}

/// A raw vfio-user message: header (`id`, `command`, `flags`, size computed) then `body`.
pub fn msg(id: u16, command: u16, flags: u32, body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(16 + body.len()).expect("test message size fits u32");
    let mut m = Vec::with_capacity(16 + body.len());
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&command.to_le_bytes());
    m.extend_from_slice(&size.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// A REGION_READ/WRITE body prefix: offset, region, count.
pub fn region_access(offset: u64, region: u32, count: u32) -> Vec<u8> {
    let mut b = offset.to_le_bytes().to_vec();
    b.extend_from_slice(&region.to_le_bytes());
    b.extend_from_slice(&count.to_le_bytes());
    b
}

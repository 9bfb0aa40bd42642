//! Counters kept by the device; every reject path bumps one (style.md habit 7).

/// A snapshot of the device's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// I/O port writes seen.
    pub io_writes: u64,
    /// I/O accesses of the wrong width or out of the BAR (ignored).
    pub io_bad_access: u64,
    /// I/O writes ignored (VGA mode restriction, or halted after a guest bug).
    pub io_ignored: u64,
    /// Guest bugs detected.
    pub guest_bugs: u64,
    /// Async I/Os completed (= IO_CMD interrupts raised for async I/O).
    pub async_completed: u64,
    /// Command-ring entries consumed.
    pub commands: u64,
    /// Cursor-ring entries consumed.
    pub cursor_commands: u64,
    /// Ring entries that failed to decode.
    pub decode_errors: u64,
    /// Render operations the renderer refused.
    pub render_errors: u64,
    /// Ring entries whose command address was NULL.
    pub null_commands: u64,
    /// Releases queued into a chain.
    pub releases: u64,
    /// Release chains published on the release ring.
    pub release_chains: u64,
    /// Releases refused: NULL info, id 0, or info outside guest memory.
    pub release_rejects: u64,
    /// Rings parked because of garbage indices.
    pub rings_parked: u64,
    /// Writes to the ROM BAR (ignored).
    pub rom_writes: u64,
    /// Trapped RAM/VRAM accesses outside the BAR (ignored).
    pub bar_bad_access: u64,
    /// QXL_IO_LOG messages.
    pub guest_logs: u64,
    /// Interrupt bits raised (calls, not bits).
    pub interrupts_raised: u64,
}

//! Device-level layouts: QXLRom, QXLModes, QXLRam, rings, QXLSurfaceCreate, I/O port and
//! interrupt numbers (reference qxl-device.md §3–§5).

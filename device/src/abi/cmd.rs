//! Command layouts: QXLCommand, QXLDrawable and its union members, QXLImage, QXLBitmap,
//! QXLDataChunk, QXLPalette, QXLClipRects, QXLSurfaceCmd, QXLCursorCmd, QXLCursor,
//! QXLMonitorsConfig (reference qxl-device.md §7).

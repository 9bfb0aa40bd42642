//! VP8 frames for Spice video streams, through the system libvpx.
//!
//! [`Vp8Encoder`] turns 32-bit BGRX pictures (the display channel's pixels) into VP8 frames as a
//! Spice STREAM_DATA message carries them: one raw frame per message, no container (sheet
//! `spice-protocol.md` §4.7). [`Vp8Decoder`] turns them back, so tests and fuzz targets can
//! check what a client shows.
//!
//! This crate is the one place of the project that calls C for video: libvpx is what a VP8
//! stream needs (spice-server's GStreamer `vp8enc` is libvpx too) and no maintained encoder in
//! Rust exists. The `unsafe` is kept to the FFI calls in [`encoder`] and [`decoder`]; every
//! buffer handed to libvpx is sized and checked here first, and the pixels go through the safe
//! [`color`] conversion before libvpx sees them.

pub mod color;
mod decoder;
mod encoder;

pub use decoder::{DecodedFrame, Vp8Decoder};
pub use encoder::{Vp8Encoder, Vp8Settings};

/// Largest width or height of a VP8 frame (14 bits in the key frame header).
pub const MAX_DIMENSION: u32 = 16_383;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A width or height of 0 or above [`MAX_DIMENSION`].
    #[error("frame size {width}x{height} is not 1..=16383 on each side")]
    Size {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
    },
    /// The picture handed in does not match the encoder's size or its buffer is short.
    #[error(transparent)]
    Layout(#[from] color::LayoutError),
    /// libvpx refused a call.
    #[error("libvpx {call}: {message}")]
    Libvpx {
        /// The libvpx function.
        call: &'static str,
        /// libvpx's error string and detail.
        message: String,
    },
}

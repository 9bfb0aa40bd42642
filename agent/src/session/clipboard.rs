//! X11 clipboard bridge (placeholder API; the implementation is on branch agent-clipboard).
#![allow(missing_docs, unused_variables)]
use std::sync::Arc;
use std::time::Duration;

use super::HostSink;
use crate::protocol::{Caps, Message};

pub struct ClipboardLimits {
    pub max_bytes: usize,
    pub request_timeout: Duration,
}
impl Default for ClipboardLimits {
    fn default() -> Self {
        ClipboardLimits {
            max_bytes: 128 << 20,
            request_timeout: Duration::from_secs(10),
        }
    }
}
#[derive(Debug, thiserror::Error)]
#[error("clipboard")]
pub struct ClipboardError;
pub struct X11Clipboard;
impl X11Clipboard {
    pub fn start(
        display: Option<&str>,
        host: Arc<dyn HostSink>,
        limits: ClipboardLimits,
    ) -> Result<X11Clipboard, ClipboardError> {
        Err(ClipboardError)
    }
    pub fn client_caps(&self, caps: &Caps, new_client: bool) {}
    pub fn client_message(&self, msg: Message) {}
    pub fn client_disconnected(&self) {}
}

//! File transfer (placeholder API; the implementation is on branch agent-xfer).
#![allow(missing_docs, unused_variables)]
use std::path::PathBuf;

use crate::protocol::Message;

pub struct FileXfers;
impl FileXfers {
    pub fn new(dir: PathBuf) -> FileXfers {
        FileXfers
    }
    pub fn download_dir() -> PathBuf {
        PathBuf::new()
    }
    pub fn handle(&mut self, msg: &Message, detailed_errors: bool) -> Vec<Message> {
        vec![]
    }
    pub fn client_disconnected(&mut self) {}
    pub fn set_disabled(&mut self, disabled: bool) {}
}

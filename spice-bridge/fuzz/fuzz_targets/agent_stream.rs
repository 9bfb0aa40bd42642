//! The agent stream parsers (guest VDI chunks and VDAgent messages, the client's AGENT_DATA
//! stream) in arbitrary splits. Input: a split seed byte, then the stream. Seeds:
//! `corpus/agent_stream/`. Body: `spice_bridge::fuzzing::agent_stream`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    spice_bridge::fuzzing::agent_stream(data);
});

//! Writes the seed corpora of the fuzz targets in `fuzz/corpus/<target>/` (run with
//! `cargo test -p spice-bridge --test fuzz_seeds -- --ignored`). Each seed is a valid message as
//! a real client sends it.

use std::path::PathBuf;

use spice_bridge::wire::link::{LinkHeader, LinkMess, SPICE_MAGIC};
use spice_bridge::wire::to_vec;
use spice_bridge::wire::types::Caps;

fn framed(t: u16, body: &[u8]) -> Vec<u8> {
    let mut v = t.to_le_bytes().to_vec();
    v.extend_from_slice(&(body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

#[test]
#[ignore = "writes files into fuzz/corpus"]
fn write_fuzz_seeds() {
    for (ct, caps) in [
        (1u8, vec![0x0f]),
        (2, vec![0x33f]),
        (3, vec![]),
        (4, vec![]),
    ] {
        let mess = to_vec(&LinkMess {
            connection_id: if ct == 1 { 0 } else { 0x1234 },
            channel_type: ct,
            channel_id: 0,
            common_caps: Caps(vec![0x0d]),
            channel_caps: Caps(caps),
        });
        let mut v = to_vec(&LinkHeader {
            magic: SPICE_MAGIC,
            major_version: 2,
            minor_version: 2,
            size: mess.len() as u32,
        });
        v.extend_from_slice(&mess);
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&[0x5a; 128]);
        write("link", &format!("channel{ct}"), &v);
    }
    let mut init = vec![1u8];
    init.extend_from_slice(&20_971_520i64.to_le_bytes());
    init.push(1);
    init.extend_from_slice(&3_145_728i32.to_le_bytes());
    write("client_display", "init", &framed(101, &init));
    write("client_display", "pref-compression", &framed(103, &[6]));
    write("client_display", "pref-codec", &framed(105, &[2, 1, 3]));
    write("client_display", "stream-report", &framed(102, &[0; 32]));
    write("client_main", "attach", &framed(104, &[]));
    write(
        "client_main",
        "mouse-mode",
        &framed(105, &2u16.to_le_bytes()),
    );
    write(
        "client_main",
        "agent-start",
        &framed(106, &u32::MAX.to_le_bytes()),
    );
    write(
        "client_main",
        "agent-data",
        &framed(107, &[1, 0, 0, 0, 6, 0, 0, 0]),
    );
    write(
        "client_main",
        "agent-token",
        &framed(108, &5u32.to_le_bytes()),
    );
    write("client_main", "client-info", &framed(101, &[0; 8]));
    write(
        "client_inputs",
        "key-down",
        &framed(101, &0x1eu32.to_le_bytes()),
    );
    write(
        "client_inputs",
        "key-up-ext",
        &framed(102, &0x9de0u32.to_le_bytes()),
    );
    write(
        "client_inputs",
        "modifiers",
        &framed(103, &4u16.to_le_bytes()),
    );
    write(
        "client_inputs",
        "scancode",
        &framed(104, &[0xe0, 0x48, 0xe0, 0xc8]),
    );
    write(
        "client_inputs",
        "motion",
        &framed(111, &[1, 0, 0, 0, 255, 255, 255, 255, 0, 0]),
    );
    write(
        "client_inputs",
        "position",
        &framed(112, &[100, 0, 0, 0, 50, 0, 0, 0, 1, 0, 0]),
    );
    write("client_inputs", "press", &framed(113, &[1, 1, 0]));
    write("client_inputs", "release", &framed(114, &[1, 0, 0]));
    write("client_base", "ack-sync", &framed(1, &1u32.to_le_bytes()));
    write("client_base", "ack", &framed(2, &[]));
    write(
        "client_base",
        "pong",
        &framed(3, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
    );
    write("client_base", "disconnecting", &framed(6, &[0; 12]));
    write(
        "client_base",
        "pause-scancode",
        &framed(99, &[0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]),
    );
    let sel = |s: u8, msgs: &[Vec<u8>]| {
        let mut v = vec![s];
        for m in msgs {
            v.extend_from_slice(m);
        }
        v
    };
    let attach = [framed(104, &[]), framed(105, &2u16.to_le_bytes())];
    write("session", "main-attach-mouse", &sel(0, &attach));
    let agent = [framed(106, &u32::MAX.to_le_bytes()), framed(107, &[1; 20])];
    write("session", "main-agent", &sel(0, &agent));
    let disp = [
        framed(1, &1u32.to_le_bytes()),
        framed(101, &init),
        framed(2, &[]),
    ];
    write("session", "display-init", &sel(1, &disp));
    let keys = [
        framed(101, &0x1eu32.to_le_bytes()),
        framed(111, &[1, 0, 0, 0, 2, 0, 0, 0, 0, 0]),
    ];
    write("session", "inputs-keys", &sel(2, &keys));
    write(
        "session",
        "cursor-ack",
        &sel(3, &[framed(1, &1u32.to_le_bytes()), framed(2, &[])]),
    );
    // tls_link: odd = behind a TLS handshake (every link seed), even = raw on the TLS port
    for name in ["channel1", "channel2", "channel3", "channel4"] {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/link");
        let link = std::fs::read(dir.join(format!("seed-{name}"))).unwrap();
        write(
            "tls_link",
            &format!("tls-{name}"),
            &[&[1u8][..], &link].concat(),
        );
        write(
            "tls_link",
            &format!("raw-{name}"),
            &[&[0u8][..], &link].concat(),
        );
    }
    write(
        "tls_link",
        "raw-client-hello",
        &[&[0u8][..], &client_hello()].concat(),
    );
    // websocket: byte 0 even = client bytes after "GET " (read 1 + byte0/2 bytes at a time),
    // odd = round trip of payloads (length byte, bytes)
    let request = "/ HTTP/1.1\r\nHost: 127.0.0.1:5930\r\nConnection: Upgrade\r\n\
        Upgrade: websocket\r\nOrigin: http://127.0.0.1:8000\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: binary\r\n\r\n";
    let mut link = request.as_bytes().to_vec();
    link.extend(ws_frame(
        0x82,
        [1, 2, 3, 4],
        b"REDQ\x02\0\0\0\x02\0\0\0\x10\0\0\0",
    ));
    link.extend(ws_frame(0x89, [5, 6, 7, 8], b"ping"));
    link.extend(ws_frame(0x02, [9, 9, 9, 9], b"frag"));
    link.extend(ws_frame(0x80, [0, 1, 0, 1], b"ment"));
    link.extend(ws_frame(0x88, [1, 1, 1, 1], &1000u16.to_be_bytes()));
    for (mode, name) in [
        (0u8, "chromium-bytewise"),
        (64, "chromium-33"),
        (254, "chromium-128"),
    ] {
        write("websocket", name, &[&[mode][..], &link].concat());
    }
    let bad = request.replace("Version: 13", "Version: 8");
    write(
        "websocket",
        "bad-version",
        &[&[8u8][..], bad.as_bytes()].concat(),
    );
    let mut rt = vec![1u8];
    for len in [0u8, 5, 3, 126, 10, 200] {
        rt.push(len);
        rt.extend((0..len).map(|i| i.wrapping_mul(31)));
    }
    write("websocket", "roundtrip", &rt);
}

/// The first flight of a rustls client (its ClientHello records) to 127.0.0.1.
fn client_hello() -> Vec<u8> {
    use std::sync::Arc;
    let connector = spice_bridge::testing::test_tls_connector();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut c = rustls::ClientConnection::new(Arc::clone(connector.config()), name).unwrap();
    let mut out = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut out).unwrap();
    }
    out
}

/// A masked client WebSocket frame (first byte `b0`: FIN and opcode), payload under 126 bytes.
fn ws_frame(b0: u8, mask: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = vec![b0, 0x80 | payload.len() as u8];
    v.extend_from_slice(&mask);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    v
}

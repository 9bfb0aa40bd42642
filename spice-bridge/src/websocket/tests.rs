//! Handshake and framing tests of the WebSocket transport.

use super::*;

/// Chromium's upgrade request as spice-html5 makes it (`new WebSocket(uri, 'binary')`), with
/// the RFC 6455 sample key.
const CHROMIUM: &str = "GET / HTTP/1.1\r\n\
Host: 127.0.0.1:5930\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://127.0.0.1:8000\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: binary\r\n\r\n";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

/// Runs [`accept`] on `bytes` (which start with "GET ").
fn handshake(
    bytes: &[u8],
    chunk: usize,
) -> (Result<WsStream<ScriptedPeer>, HandshakeError>, usize) {
    rt().block_on(async {
        let mut p = ScriptedPeer::new(&bytes[4..], chunk);
        let r = accept(&mut p, *b"GET ").await.map(|w| {
            let raw = w.raw.clone();
            WsStream::with_buffered(ScriptedPeer::new(&[], 1), raw)
        });
        (r, p.input.len())
    })
}

fn replace(from: &str, to: &str) -> String {
    assert!(CHROMIUM.contains(from));
    CHROMIUM.replace(from, to)
}

#[test]
fn accept_key_matches_rfc_6455_sample() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn chromium_request_is_accepted_with_binary_protocol() {
    let block = CHROMIUM.strip_suffix("\r\n\r\n").unwrap();
    let req = parse_request(block.as_bytes()).unwrap();
    assert!(req.binary_protocol);
    let r = response(&req);
    assert!(r.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(r.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(r.contains("Sec-WebSocket-Protocol: binary\r\n"));
    assert!(r.ends_with("\r\n\r\n"));
}

#[test]
fn handshake_keeps_the_bytes_after_the_request_for_the_frame_reader() {
    let mut bytes = CHROMIUM.as_bytes().to_vec();
    let frame = client_frame(true, OP_BINARY, [1, 2, 3, 4], b"REDQ");
    bytes.extend_from_slice(&frame);
    // one read of everything: the frame arrives with the request
    rt().block_on(async {
        let mut p = ScriptedPeer::new(&bytes[4..], usize::MAX);
        let mut ws = accept(&mut p, *b"GET ").await.unwrap();
        let mut got = [0u8; 4];
        ws.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"REDQ");
        drop(ws);
        assert!(String::from_utf8_lossy(&p.output).contains("101 Switching"));
    });
    // byte by byte: nothing past the blank line is read by the handshake
    let (r, left) = handshake(&bytes, 1);
    assert!(r.is_ok());
    assert_eq!(left, frame.len());
}

#[test]
fn no_protocol_header_is_accepted_without_one_in_the_answer() {
    let req = replace("Sec-WebSocket-Protocol: binary\r\n", "");
    let block = req.strip_suffix("\r\n\r\n").unwrap();
    let r = parse_request(block.as_bytes()).unwrap();
    assert!(!r.binary_protocol);
    assert!(!response(&r).contains("Sec-WebSocket-Protocol"));
}

fn refused(req: &str) -> HandshakeError {
    let (r, _) = handshake(req.as_bytes(), 7);
    match r {
        Ok(_) => panic!("accepted: {req:?}"),
        Err(e) => e,
    }
}

#[test]
fn bad_requests_are_refused() {
    let cases = [
        replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        replace(
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: c2hvcnQ=",
        ),
        replace(
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: !!!",
        ),
        replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
        replace(
            "Sec-WebSocket-Protocol: binary",
            "Sec-WebSocket-Protocol: base64",
        ),
        replace("Upgrade: websocket", "Upgrade: h2c"),
        replace("Connection: Upgrade", "Connection: keep-alive"),
        replace("HTTP/1.1\r\n", "HTTP/1.0\r\n"),
        replace("Pragma: no-cache", "no colon here"),
    ];
    for c in &cases {
        assert!(matches!(refused(c), HandshakeError::Bad(_)), "{c:?}");
    }
}

#[test]
fn refusal_answers_400() {
    let req = replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    rt().block_on(async {
        let mut p = ScriptedPeer::new(&req.as_bytes()[4..], 100);
        assert!(accept(&mut p, *b"GET ").await.is_err());
        assert!(p.output.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    });
}

#[test]
fn header_names_and_tokens_are_case_insensitive() {
    let req = CHROMIUM
        .replace("Upgrade: websocket", "upgrade: WebSocket")
        .replace("Connection: Upgrade", "CONNECTION: keep-alive, upgrade")
        .replace(
            "Sec-WebSocket-Protocol: binary",
            "sec-websocket-protocol: base64, binary",
        );
    let (r, _) = handshake(req.as_bytes(), 3);
    assert!(r.is_ok());
}

#[test]
fn huge_header_block_is_refused_at_the_cap() {
    let mut req = CHROMIUM.strip_suffix("\r\n").unwrap().to_string();
    while req.len() < 2 * MAX_REQUEST {
        req.push_str("X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    req.push_str("\r\n");
    let (r, left) = handshake(req.as_bytes(), 1000);
    assert!(matches!(r, Err(HandshakeError::TooLarge)));
    // it stopped reading at the cap
    assert_eq!(left, req.len() - MAX_REQUEST);
}

#[test]
fn too_many_headers_are_refused() {
    let mut req = CHROMIUM.strip_suffix("\r\n").unwrap().to_string();
    for i in 0..MAX_HEADERS {
        req.push_str(&format!("X-{i}: y\r\n"));
    }
    req.push_str("\r\n");
    assert!(matches!(refused(&req), HandshakeError::TooManyHeaders));
}

#[test]
fn eof_before_the_blank_line_is_an_error() {
    let req = CHROMIUM.strip_suffix("\r\n").unwrap();
    assert!(matches!(refused(req), HandshakeError::Io(_)));
}

/// A stream already upgraded whose client sends `input` (`chunk` bytes per read).
fn ws(input: &[u8], chunk: usize) -> WsStream<ScriptedPeer> {
    WsStream::with_buffered(ScriptedPeer::new(input, chunk), BytesMut::new())
}

/// Reads to end of stream or error; returns the bytes and the error, if any.
fn read_all(w: &mut WsStream<ScriptedPeer>) -> (Vec<u8>, Option<io::Error>) {
    rt().block_on(async {
        let mut v = Vec::new();
        let e = w.read_to_end(&mut v).await.err();
        (v, e)
    })
}

#[test]
fn masked_frames_round_trip_in_any_read_sizes() {
    let payload: Vec<u8> = (0..70_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let mut input = client_frame(true, OP_BINARY, [0xA5, 0x11, 0x00, 0xFF], &payload[..10]);
    input.extend(client_frame(
        true,
        OP_BINARY,
        [9, 8, 7, 6],
        &payload[10..300],
    ));
    input.extend(client_frame(true, OP_TEXT, [1, 1, 1, 1], &payload[300..]));
    for chunk in [1, 3, 100, 4096, usize::MAX] {
        let mut w = ws(&input, chunk);
        let (got, err) = read_all(&mut w);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(got, payload, "chunk {chunk}");
    }
}

#[test]
fn unmasked_client_frame_is_refused() {
    let mut f = client_frame(true, OP_BINARY, [0; 4], b"abc");
    f[1] &= 0x7F;
    f.drain(2..6);
    let (_, err) = read_all(&mut ws(&f, 100));
    assert_eq!(err.unwrap().kind(), io::ErrorKind::InvalidData);
}

#[test]
fn huge_lengths_are_refused() {
    for len in [1u64 << 63, u64::MAX, MAX_FRAME + 1] {
        let mut f = vec![0x82, 0x80 | 127];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4]);
        let (_, err) = read_all(&mut ws(&f, 100));
        assert_eq!(err.unwrap().kind(), io::ErrorKind::InvalidData, "{len}");
    }
}

#[test]
fn reserved_bits_unknown_opcodes_and_bad_control_frames_are_refused() {
    let mut rsv = client_frame(true, OP_BINARY, [1, 2, 3, 4], b"x");
    rsv[0] |= 0x40;
    let bad = [
        rsv,
        client_frame(true, 0x3, [1, 2, 3, 4], b"x"),
        client_frame(true, OP_PING, [1, 2, 3, 4], &[0u8; 126]),
        client_frame(false, OP_PING, [1, 2, 3, 4], b"x"),
        client_frame(true, OP_CONTINUATION, [1, 2, 3, 4], b"x"),
        [
            client_frame(false, OP_BINARY, [1, 2, 3, 4], b"x"),
            client_frame(true, OP_BINARY, [1, 2, 3, 4], b"y"),
        ]
        .concat(),
    ];
    for f in &bad {
        let (_, err) = read_all(&mut ws(f, 100));
        assert_eq!(
            err.expect("refused").kind(),
            io::ErrorKind::InvalidData,
            "{f:?}"
        );
    }
}

#[test]
fn ping_is_answered_with_pong_between_data() {
    let mut input = client_frame(true, OP_BINARY, [1, 2, 3, 4], b"ab");
    input.extend(client_frame(true, OP_PING, [5, 6, 7, 8], b"hello"));
    input.extend(client_frame(true, OP_PONG, [5, 6, 7, 8], b"ignored"));
    input.extend(client_frame(true, OP_BINARY, [1, 2, 3, 4], b"cd"));
    let mut w = ws(&input, 2);
    let (got, err) = read_all(&mut w);
    assert!(err.is_none());
    assert_eq!(got, b"abcd");
    assert_eq!(w.inner.output, [&[0x8A, 5][..], b"hello"].concat());
}

#[test]
fn close_is_answered_and_ends_the_stream() {
    let mut input = client_frame(true, OP_BINARY, [1, 2, 3, 4], b"ab");
    input.extend(client_frame(true, OP_CLOSE, [5, 6, 7, 8], b"\x03\xe8bye"));
    input.extend(client_frame(true, OP_BINARY, [1, 2, 3, 4], b"after"));
    let mut w = ws(&input, 1);
    let (got, err) = read_all(&mut w);
    assert!(err.is_none());
    assert_eq!(got, b"ab");
    assert_eq!(w.inner.output, [0x88, 2, 0x03, 0xe8]);
    // no data after our CLOSE
    let r = rt().block_on(w.write_all(b"x"));
    assert_eq!(r.unwrap_err().kind(), io::ErrorKind::BrokenPipe);
}

#[test]
fn fragmented_message_is_joined() {
    let mut input = client_frame(false, OP_BINARY, [1, 2, 3, 4], b"one ");
    input.extend(client_frame(true, OP_PING, [5, 6, 7, 8], b""));
    input.extend(client_frame(false, OP_CONTINUATION, [9, 9, 9, 9], b""));
    input.extend(client_frame(false, OP_CONTINUATION, [9, 9, 9, 9], b"two "));
    input.extend(client_frame(true, OP_CONTINUATION, [0, 0, 0, 0], b"three"));
    input.extend(client_frame(true, OP_BINARY, [1, 2, 3, 4], b"!"));
    let (got, err) = read_all(&mut ws(&input, 5));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(got, b"one two three!");
}

#[test]
fn eof_inside_a_frame_is_an_error_and_between_frames_is_end_of_stream() {
    let f = client_frame(true, OP_BINARY, [1, 2, 3, 4], b"abcdef");
    let (got, err) = read_all(&mut ws(&f[..f.len() - 2], 1));
    assert_eq!(got, b"abcd");
    assert_eq!(err.unwrap().kind(), io::ErrorKind::UnexpectedEof);
    let (got, err) = read_all(&mut ws(&f, 1));
    assert_eq!(got, b"abcdef");
    assert!(err.is_none());
}

#[test]
fn writes_are_unmasked_binary_frames() {
    let mut w = ws(&[], 1);
    let big = vec![7u8; MAX_OUT_FRAME + 10];
    rt().block_on(async {
        w.write_all(b"hi").await.unwrap();
        w.write_all(&big[..300]).await.unwrap();
        w.write_all(&big).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let o = &w.inner.output;
    assert_eq!(&o[..4], &[0x82, 2, b'h', b'i']);
    assert_eq!(&o[4..8], &[0x82, 126, 1, 44]);
    let at = 8 + 300;
    assert_eq!(&o[at..at + 2], &[0x82, 127]);
    assert_eq!(&o[at + 2..at + 10], &(MAX_OUT_FRAME as u64).to_be_bytes());
    let at = at + 10 + MAX_OUT_FRAME;
    assert_eq!(&o[at..at + 2], &[0x82, 10]);
    assert_eq!(&o[at + 12..], &[0x88, 2, 0x03, 0xe8]);
}

//! The TLS port in-process (issue 12): a scripted client links over TLS and gets the picture;
//! the per-channel policy answers NEED_SECURED / NEED_UNSECURED; handshake garbage, truncated
//! records and a client that stalls mid-handshake are closed and counted while everyone else is
//! served. spice-gtk over TLS is in `real_clients.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use spice_bridge::input::{NullAgent, NullInput};
use spice_bridge::server::{ConnectionLimits, ServerHandle, TlsListen};
use spice_bridge::testing::*;
use spice_bridge::tls::{ChannelSecurity, Security};
use spice_bridge::wire::link::link_err;
use spice_bridge::{DisplayModel, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(model: DisplayModel, policy: &[(&str, Security)]) -> ServerHandle {
    let mut channel_security = ChannelSecurity::default();
    for (name, s) in policy {
        channel_security.set(name, *s).unwrap();
    }
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsListen {
            listen: "127.0.0.1:0".parse().unwrap(),
            config: test_tls_config(),
        }),
        channel_security,
        limits: ConnectionLimits {
            link_timeout: Duration::from_secs(1),
            ..Default::default()
        },
        ..Default::default()
    };
    Server::start(config, model, Arc::new(NullInput), Arc::new(NullAgent))
        .await
        .unwrap()
}

/// Links `channel_type` over TLS to `h`'s TLS port.
async fn link_tls(h: &ServerHandle, channel_type: u8, sid: u32) -> LinkOutcome {
    let s = tls_connect(h.tls_addr().unwrap()).await.unwrap();
    ScriptedClient::link_on(
        Box::new(s),
        channel_type,
        sid,
        "",
        spice_gtk_caps(channel_type),
    )
    .await
    .unwrap()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_client_over_tls_gets_every_pixel() {
    let model = DisplayModel::new();
    scene_gradient(&model);
    let h = start(model.clone(), &[("default", Security::Secure)]).await;
    let mut main = link_tls(&h, 1, 0).await.client.expect("main over TLS");
    let (t, body) = main.recv().await.unwrap();
    assert_eq!(t, 103, "MAIN_INIT");
    let sid = u32::from_le_bytes(body[..4].try_into().unwrap());
    let mut d = link_tls(&h, 2, sid).await.client.expect("display over TLS");
    start_display(&mut d).await.unwrap();
    let mut canvas = ClientCanvas::default();
    read_to_mark(&mut d, &mut canvas, &mut 0).await;
    assert_eq!(canvas.surface(0), model_surface_rgb(&model, 0));
    let s = h.stats();
    assert_eq!((s.tls_connections, s.links_ok, s.tls_failed), (2, 2, 0));
    h.shutdown().await;
}

#[tokio::test]
async fn channels_on_the_wrong_port_are_told_to_reconnect() {
    let h = start(
        DisplayModel::new(),
        &[("main", Security::Secure), ("cursor", Security::Plain)],
    )
    .await;
    // main in the clear: NEED_SECURED in the link reply, nothing linked
    let o = ScriptedClient::link(h.local_addr(), 1, 0, "", spice_gtk_caps(1))
        .await
        .unwrap();
    assert_eq!(o.reply.error, link_err::NEED_SECURED);
    assert!(o.client.is_none());
    // main over TLS links; cursor over TLS is sent back to the plain port; display (Any)
    // links on either
    let mut main = link_tls(&h, 1, 0).await.client.expect("main over TLS");
    let (_, body) = main.recv().await.unwrap();
    let sid = u32::from_le_bytes(body[..4].try_into().unwrap());
    let o = link_tls(&h, 4, sid).await;
    assert_eq!(o.reply.error, link_err::NEED_UNSECURED);
    let o = ScriptedClient::link(h.local_addr(), 4, sid, "", spice_gtk_caps(4))
        .await
        .unwrap();
    assert_eq!(o.result, Some(0), "cursor in the clear");
    assert_eq!(
        link_tls(&h, 2, sid).await.result,
        Some(0),
        "display over TLS"
    );
    assert_eq!(h.stats().wrong_port, 2);
    assert_eq!(h.stats().links_refused, 0, "wrong port is not a refusal");
    h.shutdown().await;
}

#[tokio::test]
async fn handshake_garbage_truncated_records_and_stalled_clients_are_closed() {
    let model = DisplayModel::new();
    scene_gradient(&model);
    let h = start(model, &[]).await;
    let tls = h.tls_addr().unwrap();
    // plain Spice to the TLS port, and HTTP: not TLS records, closed at once
    for junk in [
        link_request(1, 0, spice_gtk_caps(1)),
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        let mut s = TcpStream::connect(tls).await.unwrap();
        s.write_all(&junk).await.unwrap();
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "closed without waiting for the deadline");
    }
    wait_for("both handshakes failed", || h.stats().tls_failed == 2).await;
    // a record header announcing 16 KiB, then silence; and a bare TCP connect: both held
    // until the link deadline (1 s), then closed
    let mut truncated = TcpStream::connect(tls).await.unwrap();
    truncated
        .write_all(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01])
        .await
        .unwrap();
    let mut idle = TcpStream::connect(tls).await.unwrap();
    // meanwhile a real TLS client links
    assert_eq!(link_tls(&h, 1, 0).await.result, Some(0));
    let t = Instant::now();
    let mut b = [0u8; 1];
    assert_eq!(truncated.read(&mut b).await.unwrap_or(0), 0);
    assert_eq!(idle.read(&mut b).await.unwrap_or(0), 0);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    wait_for("deadline counted", || h.stats().link_timeouts == 2).await;
    // a client that finishes the handshake and then stops: closed at the deadline too
    let mut stalled = tls_connect(tls).await.unwrap();
    assert_eq!(stalled.read(&mut b).await.unwrap_or(0), 0);
    wait_for("stalled counted", || h.stats().link_timeouts == 3).await;
    assert_eq!(link_tls(&h, 1, 0).await.result, Some(0), "still serving");
    h.shutdown().await;
}

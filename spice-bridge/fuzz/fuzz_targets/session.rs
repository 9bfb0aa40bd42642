//! A whole server under hostile clients: each input links a main channel (a new session), then
//! - byte 0 % 4 = 0: writes the rest as raw bytes on the main channel,
//! - 1: links a display channel and writes the rest there, 2: inputs, 3: cursor.
//! A panic in any server task aborts the process (panic hook), so libFuzzer sees it; a server
//! that stops answering fails the next link. Seeds: `corpus/session/`.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use spice_bridge::input::{NullAgent, NullInput};
use spice_bridge::link::TicketKey;
use spice_bridge::model::Rect;
use spice_bridge::testing::{scene_odd, ScriptedClient};
use spice_bridge::{DisplayModel, Server, ServerConfig, ServerHandle};

struct Fixture {
    rt: tokio::runtime::Runtime,
    server: ServerHandle,
    addr: SocketAddr,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        std::panic::set_hook(Box::new(|info| {
            eprintln!("panic: {info}");
            std::process::abort();
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let model = DisplayModel::with_queue_limit(1 << 20);
        scene_odd(&model);
        let server = rt.block_on(async {
            let key = TicketKey::from_private(
                rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap(),
            )
            .unwrap();
            Server::start_with_key(
                ServerConfig {
                    listen: "127.0.0.1:0".parse().unwrap(),
                    ..Default::default()
                },
                key,
                model.clone(),
                Arc::new(NullInput),
                Arc::new(NullAgent),
            )
            .await
            .unwrap()
        });
        // keep the model busy so display connections have something to send
        let m2 = model.clone();
        rt.spawn(async move {
            let mut i = 0u32;
            loop {
                let _ = m2.fill(0, Rect::new((i % 300) as i32, 5, 7, 9), i, &[]);
                i = i.wrapping_add(1);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let addr = server.local_addr();
        Fixture { rt, server, addr }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    f.rt.block_on(async {
        let mut main = ScriptedClient::connect(f.addr, 1, 0, "").await;
        let (t, body) = main.recv().await.expect("server answers a new main link");
        assert_eq!(t, 103);
        let sid = u32::from_le_bytes([body[0], body[1], body[2], body[3]]);
        let mut target = match sel % 4 {
            0 => None,
            n => {
                Some(ScriptedClient::connect(f.addr, [2, 3, 4][usize::from(n) - 1], sid, "").await)
            }
        };
        let c = target.as_mut().unwrap_or(&mut main);
        c.write_raw(rest).await.ok();
        // give the server a moment to chew on it, then hang up
        let _ = tokio::time::timeout(Duration::from_millis(3), c.closed_by_server()).await;
    });
    assert!(f.server.has_client() || f.server.stats().sessions > 0);
});

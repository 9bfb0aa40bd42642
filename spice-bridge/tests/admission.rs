//! Connection admission in process (issue 12): the pending pool evicts its oldest member, the
//! linked-channel limit refuses with a link error, the link deadline closes idle connections;
//! each path bumps its counter, and a real link still completes.

use std::sync::Arc;
use std::time::Duration;

use spice_bridge::input::{NullAgent, NullInput};
use spice_bridge::link::TicketPolicy;
use spice_bridge::server::{ConnectionLimits, ServerHandle};
use spice_bridge::testing::{spice_gtk_caps, ScriptedClient};
use spice_bridge::{DisplayModel, Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limits: ConnectionLimits) -> ServerHandle {
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ticket: TicketPolicy::Password {
            password: "pw".into(),
            expires: None,
        },
        limits,
        ..Default::default()
    };
    Server::start(
        config,
        DisplayModel::new(),
        Arc::new(NullInput),
        Arc::new(NullAgent),
    )
    .await
    .unwrap()
}

async fn wait_for(h: &ServerHandle, what: &str, f: impl Fn(&ServerHandle) -> bool) {
    for _ in 0..500 {
        if f(h) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: {:?}", h.stats());
}

/// True once the server has closed `s` (EOF or reset), reading whatever it sent first.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pending_pool_evicts_the_oldest_and_a_real_client_links() {
    let h = start(ConnectionLimits {
        link_timeout: Duration::from_secs(60),
        max_pending: 3,
        max_linked: 8,
    })
    .await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(h.local_addr()).await.unwrap());
    }
    wait_for(&h, "3 pending", |h| h.stats().pending == 3).await;
    // a fourth (half a header) evicts the first
    let mut half = TcpStream::connect(h.local_addr()).await.unwrap();
    half.write_all(b"REDQ\x02\0\0\0").await.unwrap();
    assert!(
        closed(&mut idle[0]).await,
        "oldest pending connection closed"
    );
    assert_eq!(h.stats().pending_evicted, 1);
    // the real client evicts the next oldest and links
    let c = ScriptedClient::connect(h.local_addr(), 1, 0, "pw").await;
    assert!(closed(&mut idle[1]).await);
    // (links_ok is counted just after the OK result goes out)
    wait_for(&h, "link counted", |h| h.stats().links_ok == 1).await;
    let s = h.stats();
    assert_eq!(
        (s.pending_evicted, s.links_ok, s.linked),
        (2, 1, 1),
        "{s:?}"
    );
    assert_eq!(s.pending, 2, "{s:?}");
    drop(c);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_limit_refuses_with_a_link_error_and_frees_on_close() {
    let h = start(ConnectionLimits {
        link_timeout: Duration::from_secs(60),
        max_pending: 8,
        max_linked: 1,
    })
    .await;
    let main = ScriptedClient::connect(h.local_addr(), 1, 0, "pw").await;
    let o = ScriptedClient::link(h.local_addr(), 1, 0, "pw", spice_gtk_caps(1))
        .await
        .unwrap();
    assert_eq!(o.result, Some(1), "SPICE_LINK_ERR_ERROR");
    let s = h.stats();
    assert_eq!((s.linked_full, s.linked, s.sessions), (1, 1, 1), "{s:?}");
    main.close().await;
    wait_for(&h, "slot freed", |h| h.stats().linked == 0).await;
    let again = ScriptedClient::connect(h.local_addr(), 1, 0, "pw").await;
    wait_for(&h, "second link", |h| h.stats().links_ok == 2).await;
    drop(again);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_deadline_closes_idle_and_stalled_connections() {
    let h = start(ConnectionLimits {
        link_timeout: Duration::from_millis(300),
        max_pending: 8,
        max_linked: 8,
    })
    .await;
    let mut idle = TcpStream::connect(h.local_addr()).await.unwrap();
    let mut half = TcpStream::connect(h.local_addr()).await.unwrap();
    half.write_all(b"REDQ\x02\0\0\0").await.unwrap();
    assert!(closed(&mut idle).await);
    assert!(closed(&mut half).await);
    wait_for(&h, "timeouts counted", |h| h.stats().link_timeouts == 2).await;
    let s = h.stats();
    assert_eq!((s.pending, s.links_refused), (0, 0), "{s:?}");
    // a client that links at once is not affected
    let c = ScriptedClient::connect(h.local_addr(), 1, 0, "pw").await;
    wait_for(&h, "link counted", |h| h.stats().links_ok == 1).await;
    drop(c);
    h.shutdown().await;
}

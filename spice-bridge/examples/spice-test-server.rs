//! Serves a scripted picture for manual tests with real clients:
//! `spice-test-server PORT SCENE [PASSWORD]`, SCENE = gradient | odd | scroll.
//! With `SPICE_TLS_PORT=N SPICE_X509_DIR=DIR` a TLS port too, and `SPICE_TLS_CHANNELS=a,b`
//! the channels that must use it (names as QEMU's tls-channel, `default` for all).
use std::sync::Arc;

use spice_bridge::input::{NullAgent, NullInput};
use spice_bridge::link::TicketPolicy;
use spice_bridge::{DisplayModel, Server, ServerConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).map(|p| p.parse()).transpose()?.unwrap_or(5930);
    let scene = args.get(2).cloned().unwrap_or_else(|| "gradient".into());
    let model = DisplayModel::new();
    match scene.as_str() {
        "odd" => spice_bridge::testing::scene_odd(&model),
        "scroll" => spice_bridge::testing::scene_scroll(&model),
        _ => spice_bridge::testing::scene_gradient(&model),
    }
    model.set_cursor(spice_bridge::testing::test_cursor());
    let config = ServerConfig {
        listen: ([127, 0, 0, 1], port).into(),
        ticket: match args.get(3) {
            Some(p) => TicketPolicy::Password {
                password: p.clone(),
                expires: None,
            },
            None => TicketPolicy::Disabled,
        },
        name: Some("spice-test-server".into()),
        ..Default::default()
    };
    let mut config = config;
    if let (Ok(tls_port), Ok(dir)) = (
        std::env::var("SPICE_TLS_PORT"),
        std::env::var("SPICE_X509_DIR"),
    ) {
        config.tls = Some(spice_bridge::server::TlsListen {
            listen: ([127, 0, 0, 1], tls_port.parse()?).into(),
            config: spice_bridge::tls::TlsConfig::from_x509_dir(dir.as_ref())?,
        });
        for c in std::env::var("SPICE_TLS_CHANNELS")
            .unwrap_or_default()
            .split(',')
        {
            if !c.is_empty() {
                config
                    .channel_security
                    .set(c, spice_bridge::tls::Security::Secure)
                    .map_err(anyhow::Error::msg)?;
            }
        }
    }
    let h = Server::start(config, model, Arc::new(NullInput), Arc::new(NullAgent)).await?;
    println!("listening on {}", h.local_addr());
    tokio::signal::ctrl_c().await?;
    h.shutdown().await;
    Ok(())
}

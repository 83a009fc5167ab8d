//! The node's swarm: TCP (noise or TLS, yamux), QUIC, WebSocket over TCP, DNS; the manager
//! beside identify.

use anyhow::Context as _;
use libp2p::{identify, identity::Keypair, noise, swarm::NetworkBehaviour, tcp, tls, yamux, Swarm};
use libp2p_connection_manager as manager;

use crate::config::Security;

/// The manager first, so that its refusals run before identify spends work on a connection.
/// No `ping::Behaviour`: the manager runs ping on every connection itself.
#[derive(NetworkBehaviour)]
pub struct NodeBehaviour {
    pub manager: manager::Behaviour,
    pub identify: identify::Behaviour,
}

/// A swarm for `key` with a manager configured by `config`, noise on TCP.
pub async fn build_swarm(
    key: Keypair,
    config: manager::Config,
) -> anyhow::Result<Swarm<NodeBehaviour>> {
    let manager = manager::Behaviour::new(key.public().to_peer_id(), config);
    build_swarm_with(key, manager, Security::Noise).await
}

/// The same chain for either security upgrade (the builder's types differ by upgrade, so a
/// function cannot take it as a value).
macro_rules! swarm_with_security {
    ($key:expr, $manager:expr, $upgrade:expr) => {{
        let manager = $manager;
        libp2p::SwarmBuilder::with_existing_identity($key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                $upgrade,
                yamux::Config::default,
            )
            .context("cannot set up TCP")?
            .with_quic()
            .with_dns()
            .context("cannot set up DNS")?
            .with_websocket($upgrade, yamux::Config::default)
            .await
            .context("cannot set up WebSocket")?
            .with_behaviour(|key| NodeBehaviour {
                manager,
                identify: identify::Behaviour::new(identify::Config::new(
                    "/connection-manager-example/1.0.0".into(),
                    key.public(),
                )),
            })
            .context("cannot build the behaviour")?
            .build()
    }};
}

/// A swarm for `key` around `manager`, on every transport, with `security` on TCP and
/// WebSocket (QUIC brings its own TLS 1.3).
pub async fn build_swarm_with(
    key: Keypair,
    manager: manager::Behaviour,
    security: Security,
) -> anyhow::Result<Swarm<NodeBehaviour>> {
    Ok(match security {
        Security::Noise => swarm_with_security!(key, manager, noise::Config::new),
        Security::Tls => swarm_with_security!(key, manager, tls::Config::new),
    })
}

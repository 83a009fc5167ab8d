//! The node's swarm: transports and behaviours.

use anyhow::Context as _;
use libp2p::{identify, identity::Keypair, noise, swarm::NetworkBehaviour, tcp, yamux, Swarm};
use libp2p_connection_manager as manager;

/// The manager first, so that its refusals run before identify spends work on a connection.
/// No `ping::Behaviour`: the manager runs ping on every connection itself.
#[derive(NetworkBehaviour)]
pub struct NodeBehaviour {
    pub manager: manager::Behaviour,
    pub identify: identify::Behaviour,
}

/// A swarm on TCP with noise and yamux for `key`, with a manager configured by `config`.
pub fn build_swarm(key: Keypair, config: manager::Config) -> anyhow::Result<Swarm<NodeBehaviour>> {
    let manager = manager::Behaviour::new(key.public().to_peer_id(), config);
    build_swarm_with(key, manager)
}

/// A swarm on TCP with noise and yamux for `key`, around `manager`.
pub fn build_swarm_with(
    key: Keypair,
    manager: manager::Behaviour,
) -> anyhow::Result<Swarm<NodeBehaviour>> {
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .context("cannot set up TCP with noise and yamux")?
        .with_behaviour(|key| NodeBehaviour {
            manager,
            identify: identify::Behaviour::new(identify::Config::new(
                "/connection-manager-example/1.0.0".into(),
                key.public(),
            )),
        })
        .context("cannot build the behaviour")?
        .build();
    Ok(swarm)
}

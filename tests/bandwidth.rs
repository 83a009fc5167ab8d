//! Bandwidth counted on real connections feeds the health score.

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    core::{transport::Transport as _, upgrade::Version},
    identity::Keypair,
    noise,
    swarm::SwarmEvent,
    tcp, yamux, Swarm,
};
use libp2p_connection_manager::{
    bandwidth::{counting_transport, BandwidthMeter},
    Behaviour, Config,
};

fn node(meter: Option<BandwidthMeter>) -> Swarm<Behaviour> {
    let key = Keypair::generate_ed25519();
    let config = Config::default().with_ping_interval(Duration::from_millis(100));
    libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            let upgraded = tcp::tokio::Transport::new(tcp::Config::default())
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default());
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(counting_transport(
                upgraded,
                meter.clone().unwrap_or_default(),
            ))
        })
        .expect("transport")
        .with_behaviour(|key| {
            let behaviour = Behaviour::new(key.public().to_peer_id(), config);
            match meter {
                Some(meter) => behaviour.with_bandwidth_meter(meter),
                None => behaviour,
            }
        })
        .expect("behaviour")
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_bandwidth_joins_the_health_score() {
    let meter = BandwidthMeter::default();
    let mut a = node(Some(meter.clone()));
    let mut b = node(None);
    b.listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("address"))
        .expect("listen");
    let addr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = b.select_next_some().await {
            break address;
        }
    };
    let b_peer = *b.local_peer_id();
    a.behaviour_mut()
        .add_peer(b_peer, vec![addr])
        .expect("dial");
    tokio::spawn(async move {
        loop {
            b.select_next_some().await;
        }
    });
    // Pings every 100 ms move bytes; after a couple of seconds a rate has been sampled.
    let health = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            a.select_next_some().await;
            if let Some(health) = a.behaviour().health(&b_peer) {
                if health.bandwidth.is_some() {
                    return health;
                }
            }
        }
    })
    .await
    .expect("a bandwidth sample within the deadline");
    let (inbound, outbound) = meter.bytes(&b_peer).expect("counted");
    assert!(inbound > 0 && outbound > 0, "{inbound} {outbound}");
    let score = health.bandwidth.expect("measured");
    assert!(
        score > 0.0 && score < 0.1,
        "an idle link moves little: {score}"
    );
    assert!(health.reliability == Some(1.0));
}

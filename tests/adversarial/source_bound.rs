//! A dial-only TCP transport that binds every outgoing connection to one source IP, so that
//! in-process attackers on one machine look, to the node they dial, like hosts of chosen
//! networks (any address of 127.0.0.0/8 works on Linux's loopback; IPv6 addresses must be on
//! `lo` first, see [`add_ipv6_to_loopback`]). libp2p-tcp cannot do this: with port reuse it
//! binds the unspecified address and the kernel picks the source.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures::{future::BoxFuture, FutureExt, StreamExt};
use libp2p::{
    core::{
        multiaddr::Protocol,
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
        upgrade::Version,
    },
    identity::Keypair,
    noise,
    swarm::dummy,
    tcp::tokio::TcpStream,
    yamux, Multiaddr, PeerId, Swarm, Transport,
};

pub struct SourceBoundTcp {
    source: IpAddr,
}

impl Transport for SourceBoundTcp {
    type Output = TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Pending<Result<TcpStream, io::Error>>;
    type Dial = BoxFuture<'static, Result<TcpStream, io::Error>>;

    fn listen_on(
        &mut self,
        _id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<io::Error>> {
        Err(TransportError::MultiaddrNotSupported(addr))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<io::Error>> {
        let mut parts = addr.iter();
        let ip = match parts.next() {
            Some(Protocol::Ip4(ip)) => IpAddr::V4(ip),
            Some(Protocol::Ip6(ip)) => IpAddr::V6(ip),
            _ => return Err(TransportError::MultiaddrNotSupported(addr)),
        };
        let Some(Protocol::Tcp(port)) = parts.next() else {
            return Err(TransportError::MultiaddrNotSupported(addr));
        };
        if ip.is_ipv4() != self.source.is_ipv4() {
            return Err(TransportError::MultiaddrNotSupported(addr));
        }
        let source = self.source;
        Ok(async move {
            let socket = match source {
                IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
                IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
            };
            socket.bind(SocketAddr::new(source, 0))?;
            let stream = socket.connect(SocketAddr::new(ip, port)).await?;
            stream.set_nodelay(true)?;
            Ok(TcpStream(stream))
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, io::Error>> {
        Poll::Pending
    }
}

/// An attacker: a bare swarm (no connection manager, no protocols) that dials from `source`
/// and holds its connections open. Runs until the returned handle is aborted.
pub fn spawn_attacker(source: IpAddr, target: Multiaddr) -> (PeerId, tokio::task::JoinHandle<()>) {
    let key = Keypair::generate_ed25519();
    let peer = key.public().to_peer_id();
    let transport = SourceBoundTcp { source }
        .upgrade(Version::V1)
        .authenticate(noise::Config::new(&key).expect("noise config"))
        .multiplex(yamux::Config::default())
        .boxed();
    let mut swarm = Swarm::new(
        transport,
        dummy::Behaviour,
        peer,
        libp2p::swarm::Config::with_tokio_executor()
            .with_idle_connection_timeout(Duration::from_secs(3600)),
    );
    let task = tokio::spawn(async move {
        let _ = swarm.dial(target);
        loop {
            swarm.select_next_some().await;
        }
    });
    (peer, task)
}

/// Puts `address` on the loopback interface (root only). Returns why not, if it cannot.
pub fn add_ipv6_to_loopback(address: std::net::Ipv6Addr) -> Result<(), String> {
    let output = std::process::Command::new("ip")
        .args([
            "-6",
            "addr",
            "replace",
            &format!("{address}/128"),
            "dev",
            "lo",
            "nodad",
        ])
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip -6 addr replace {address}/128 dev lo` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

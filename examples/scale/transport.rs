//! A dial-only TCP transport that connects from a chosen source address.
//!
//! Linux routes all of 127.0.0.0/8 to the loopback interface, so binding the socket to
//! 127.g.b.c before `connect` makes the listener see that address as the remote's: thousands of
//! distinct source IPs, in several /16s, without a listening socket per dialer (libp2p-tcp's
//! port reuse would need one each, and a process may hold only about 19,900 sockets here).

use std::{
    io,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    pin::Pin,
    task::{Context, Poll},
};

use futures::{future::BoxFuture, FutureExt as _};
use libp2p::{
    core::{
        transport::{DialOpts, ListenerId, TransportError, TransportEvent},
        Transport,
    },
    multiaddr::Protocol,
    tcp::tokio::TcpStream,
    Multiaddr,
};

pub struct BoundTcp {
    source: Ipv4Addr,
}

impl BoundTcp {
    pub fn new(source: Ipv4Addr) -> Self {
        Self { source }
    }
}

/// The socket address of `/ip4/a.b.c.d/tcp/port`, the only form this transport dials.
fn socket_address(address: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = address.iter();
    match (parts.next(), parts.next()) {
        (Some(Protocol::Ip4(ip)), Some(Protocol::Tcp(port))) => {
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        _ => None,
    }
}

impl Transport for BoundTcp {
    type Output = TcpStream;
    type Error = io::Error;
    type ListenerUpgrade = futures::future::Pending<Result<TcpStream, io::Error>>;
    type Dial = BoxFuture<'static, Result<TcpStream, io::Error>>;

    fn listen_on(
        &mut self,
        _id: ListenerId,
        address: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        Err(TransportError::MultiaddrNotSupported(address))
    }

    fn remove_listener(&mut self, _id: ListenerId) -> bool {
        false
    }

    fn dial(
        &mut self,
        address: Multiaddr,
        _opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        let Some(remote) = socket_address(&address) else {
            return Err(TransportError::MultiaddrNotSupported(address));
        };
        let source = SocketAddr::V4(SocketAddrV4::new(self.source, 0));
        Ok(async move {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(source)?;
            let stream = socket.connect(remote).await?;
            stream.set_nodelay(true)?;
            Ok(TcpStream(stream))
        }
        .boxed())
    }

    fn poll(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        // Never listens: no event ever.
        Poll::Pending
    }
}

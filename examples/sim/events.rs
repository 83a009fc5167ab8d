//! Events at their time: they become the managers' inputs (pings, goodbyes, closes, lists) and
//! the handshake of a dial on both sides.

use std::time::Duration;

use libp2p_connection_manager::core::{CloseCause, DialFailureCause, Initiator, NewConnection};
use libp2p_core::Endpoint;

use crate::{
    diag::denial_name,
    world::{Ev, World},
};

/// How long a ping may go unanswered before libp2p-ping reports a failure (the crate's default).
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How often each side of a connection pings (the crate's default).
const PING_INTERVAL: Duration = Duration::from_secs(15);

impl World {
    /// Runs one event.
    pub(crate) fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Wake(i) => {
                if self.nodes[i].wake == Some(now) {
                    self.nodes[i].wake = None;
                }
                if self.net.hosts[i] == crate::net::Host::Up {
                    self.nodes[i].manager.handle_timeout(now);
                    self.run_node(i);
                }
            }
            Ev::DialArrive(link) => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                let [dialer, listener] = l.sides;
                if !self.net.path(dialer.node, listener.node) {
                    self.diag_dial(listener.node, "timed out (target down)");
                    let at = now + self.net.params.connect_timeout;
                    return self.push(
                        at,
                        Ev::DialFail {
                            link,
                            refused: false,
                        },
                    );
                }
                self.metrics
                    .arrival(self.secs(), self.bootstrap.contains(&listener.node));
                let from = self.nodes[dialer.node].addr.clone();
                let manager = &mut self.nodes[listener.node].manager;
                let latency = self.net.latency(dialer.node, listener.node);
                match manager.on_pending_inbound(now, listener.conn, &from) {
                    Ok(()) => self.push(now + latency, Ev::Handshake(link)),
                    Err(denial) => {
                        let outcome = format!("refused on arrival: {}", denial_name(&denial));
                        self.diag_dial(listener.node, &outcome);
                        self.push(
                            now + latency,
                            Ev::DialFail {
                                link,
                                refused: true,
                            },
                        )
                    }
                }
                self.run_node(listener.node);
            }
            Ev::Handshake(link) => self.handshake(link),
            Ev::DialFail { link, refused } => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                let dialer = l.sides[0];
                let peer = self.nodes[l.sides[1].node].peer;
                let cause = if refused {
                    let addr = self.nodes[l.sides[1].node].addr.clone();
                    let errors = vec![(addr, "connection refused".to_string())];
                    DialFailureCause::Transport { errors }
                } else {
                    DialFailureCause::TimedOut(self.net.params.connect_timeout)
                };
                self.forget_link(link);
                let manager = &mut self.nodes[dialer.node].manager;
                manager.on_dial_failure(now, dialer.conn, Some(peer), cause);
                self.run_node(dialer.node);
            }
            Ev::Goodbye {
                link,
                to,
                reason,
                retry,
            } => {
                let Some(side) = self.links.get(&link).map(|l| l.sides[to]) else {
                    return;
                };
                if side.open {
                    let manager = &mut self.nodes[side.node].manager;
                    manager.on_goodbye_received(now, side.conn, reason, retry);
                    self.run_node(side.node);
                }
            }
            Ev::GoodbyeDone { link, from } => {
                let Some(side) = self.links.get(&link).map(|l| l.sides[from]) else {
                    return;
                };
                if side.open {
                    self.nodes[side.node].manager.on_goodbye_finished(side.conn);
                    self.run_node(side.node);
                }
            }
            Ev::Closed { link, to } => self.close_side(link, to, CloseCause::RemoteClosed),
            Ev::Ping { link, from } => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                let (me, other) = (l.sides[from], l.sides[1 - from]);
                if !me.open {
                    return;
                }
                if other.open && self.net.delivers(me.node, other.node, &mut self.rng) {
                    let rtt = self.net.rtt(me.node, other.node);
                    self.push(
                        now + rtt,
                        Ev::PingResult {
                            link,
                            from,
                            rtt: Some(rtt),
                        },
                    );
                } else {
                    self.push(
                        now + PING_TIMEOUT,
                        Ev::PingResult {
                            link,
                            from,
                            rtt: None,
                        },
                    );
                }
                self.push(now + PING_INTERVAL, Ev::Ping { link, from });
            }
            Ev::PingResult { link, from, rtt } => {
                let Some(me) = self.links.get(&link).map(|l| l.sides[from]) else {
                    return;
                };
                if !me.open {
                    return;
                }
                let manager = &mut self.nodes[me.node].manager;
                match rtt {
                    Some(rtt) => manager.on_ping_success(now, me.conn, rtt),
                    None => manager.on_ping_failure(now, me.conn),
                }
                self.run_node(me.node);
            }
            Ev::Peers { link, to, list } => {
                let Some(l) = self.links.get(&link) else {
                    return;
                };
                let (me, from) = (l.sides[to], l.sides[1 - to]);
                if me.open {
                    let from = self.nodes[from.node].peer;
                    self.nodes[me.node]
                        .manager
                        .on_peers_received(now, from, list);
                    self.run_node(me.node);
                }
            }
        }
    }

    /// Both sides finish the handshake: each manager vets the connection (the listener first:
    /// a refused listener is a failed dial to the dialer), then it is established.
    fn handshake(&mut self, link: u64) {
        let now = self.now;
        let Some(l) = self.links.get(&link) else {
            return;
        };
        let [dialer, listener] = l.sides;
        let (a, b) = (dialer.node, listener.node);
        let (peer_a, peer_b) = (self.nodes[a].peer, self.nodes[b].peer);
        let out = NewConnection::new(
            Initiator::Local,
            Endpoint::Dialer,
            self.nodes[b].addr.clone(),
        );
        // An inbound connection comes from an ephemeral port, not the dialer's listen address.
        let ephemeral = ephemeral_port(&self.nodes[a].addr, dialer.conn);
        let inc = NewConnection::new(Initiator::Remote, Endpoint::Listener, ephemeral);
        if !self.net.path(a, b) {
            self.diag_dial(b, "timed out (target down)");
            self.nodes[b].manager.on_listen_failure(listener.conn);
            let at = now + self.net.params.connect_timeout;
            self.push(
                at,
                Ev::DialFail {
                    link,
                    refused: false,
                },
            );
            return self.run_node(b);
        }
        if let Err(denial) =
            self.nodes[b]
                .manager
                .check_established(now, listener.conn, peer_a, &inc)
        {
            let outcome = format!("refused at the handshake: {}", denial_name(&denial));
            self.diag_dial(b, &outcome);
            self.nodes[b].manager.on_listen_failure(listener.conn);
            self.run_node(b);
            return self.push(
                now,
                Ev::DialFail {
                    link,
                    refused: true,
                },
            );
        }
        if let Err(denial) = self.nodes[a]
            .manager
            .check_established(now, dialer.conn, peer_b, &out)
        {
            let outcome = format!(
                "denied by the dialer at the handshake: {}",
                denial_name(&denial)
            );
            self.diag_dial(b, &outcome);
            let cause = DialFailureCause::DeniedByManager(denial);
            self.nodes[a]
                .manager
                .on_dial_failure(now, dialer.conn, Some(peer_b), cause);
            self.nodes[b].manager.on_listen_failure(listener.conn);
            self.forget_link(link);
            self.run_node(a);
            return self.run_node(b);
        }
        if let Some(l) = self.links.get_mut(&link) {
            l.sides[0].open = true;
            l.sides[1].open = true;
            l.changed = now;
        }
        self.metrics.established += 1;
        self.nodes[a]
            .manager
            .on_established(now, dialer.conn, peer_b, out);
        self.nodes[b]
            .manager
            .on_established(now, listener.conn, peer_a, inc);
        if self.diag.on {
            // A listener past a limit lets the connection up only to say goodbye.
            let outcome = if self.nodes[b].manager.is_connected(&peer_a) {
                "established"
            } else {
                "refused with a goodbye (limit)"
            };
            self.diag_dial(b, outcome);
        }
        // Identify: each side tells the other its listen address.
        let (addr_a, addr_b) = (self.nodes[a].addr.clone(), self.nodes[b].addr.clone());
        self.nodes[a].manager.on_peer_address(now, peer_b, addr_b);
        self.nodes[b].manager.on_peer_address(now, peer_a, addr_a);
        // libp2p-ping pings at once, then every interval; both sides ping.
        let rtt = self.net.rtt(a, b);
        self.push(now + rtt, Ev::Ping { link, from: 0 });
        self.push(now + rtt, Ev::Ping { link, from: 1 });
        self.run_node(a);
        self.run_node(b);
    }
}

/// `listen` with its TCP port replaced by an ephemeral one.
fn ephemeral_port(
    listen: &libp2p_core::Multiaddr,
    conn: libp2p_swarm::ConnectionId,
) -> libp2p_core::Multiaddr {
    use libp2p_core::multiaddr::Protocol;
    // A connection id displays as its number.
    let n: u64 = conn.to_string().parse().unwrap_or(0);
    let port = 32768 + (n % 28000) as u16;
    listen
        .iter()
        .map(|p| match p {
            Protocol::Tcp(_) => Protocol::Tcp(port),
            other => other,
        })
        .collect()
}

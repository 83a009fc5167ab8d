//! What the swarm would do: a node's actions become events at the other nodes after the link's
//! latency, and events become the manager's inputs.

use std::time::Duration;

use libp2p_connection_manager::core::{
    Action, CloseCause, DialFailureCause, Event, Initiator, NewConnection,
};
use libp2p_core::Endpoint;
use rand::Rng;

use crate::world::{Ev, Link, Side, World};

/// How long a ping may go unanswered before libp2p-ping reports a failure (the crate's default).
const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// How often each side of a connection pings (the crate's default).
const PING_INTERVAL: Duration = Duration::from_secs(15);

impl World {
    /// Carries out node `i`'s actions until it has none, then queues its next deadline.
    pub fn run_node(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].manager.poll_action() {
            self.act(i, action);
        }
        self.schedule_wake(i);
    }

    fn act(&mut self, i: usize, action: Action) {
        let now = self.now;
        match action {
            Action::Dial {
                peer, addresses, ..
            } => {
                let conn = self.new_conn();
                let manager = &mut self.nodes[i].manager;
                if let Err(denial) = manager.on_pending_outbound(now, conn, Some(peer), &addresses)
                {
                    let cause = DialFailureCause::DeniedByManager(denial);
                    manager.on_dial_failure(now, conn, Some(peer), cause);
                    return;
                }
                let Some(&target) = self.index.get(&peer) else {
                    return;
                };
                self.metrics
                    .dial(self.secs(), i, self.bootstrap.contains(&target));
                if self.net.hosts[target] == crate::net::Host::Dead {
                    self.metrics.dials_to_dead += 1;
                }
                let remote = self.new_conn();
                let link = self.new_link(Link {
                    sides: [
                        Side {
                            node: i,
                            conn,
                            open: false,
                        },
                        Side {
                            node: target,
                            conn: remote,
                            open: false,
                        },
                    ],
                    changed: now,
                });
                let reachable = !self.net.unreachable[target];
                if reachable && self.net.delivers(i, target, &mut self.rng) {
                    self.push(now + self.net.latency(i, target), Ev::DialArrive(link));
                } else {
                    let at = now + self.net.params.connect_timeout;
                    self.push(
                        at,
                        Ev::DialFail {
                            link,
                            refused: false,
                        },
                    );
                }
            }
            Action::SendGoodbye {
                connection,
                reason,
                retry_after,
                timeout,
                ..
            } => {
                let Some((link, mine, other)) = self.side_of(connection) else {
                    return;
                };
                let (a, b) = (self.node_of(link, mine), self.node_of(link, other));
                let rtt = self.net.rtt(a, b);
                if rtt < timeout && self.net.delivers(a, b, &mut self.rng) {
                    let goodbye = Ev::Goodbye {
                        link,
                        to: other,
                        reason,
                        retry: retry_after,
                    };
                    self.push(now + self.net.latency(a, b), goodbye);
                    self.push(now + rtt, Ev::GoodbyeDone { link, from: mine });
                } else {
                    self.push(now + timeout, Ev::GoodbyeDone { link, from: mine });
                }
            }
            Action::SendPeers {
                connection, peers, ..
            } => {
                let Some((link, mine, other)) = self.side_of(connection) else {
                    return;
                };
                let (a, b) = (self.node_of(link, mine), self.node_of(link, other));
                if self.net.delivers(a, b, &mut self.rng) {
                    self.metrics.lists += 1;
                    let at = now + self.net.latency(a, b);
                    self.push(
                        at,
                        Ev::Peers {
                            link,
                            to: other,
                            list: peers,
                        },
                    );
                }
            }
            Action::Close { connection, .. } => {
                let Some((link, mine, other)) = self.side_of(connection) else {
                    return;
                };
                let (a, b) = (self.node_of(link, mine), self.node_of(link, other));
                self.close_side(link, mine, CloseCause::Local);
                // The remote hears of it only if packets flow; otherwise its pings find out.
                if self.net.path(a, b) {
                    self.push(now + self.net.latency(a, b), Ev::Closed { link, to: other });
                }
            }
            Action::KeepAlive { .. } => {}
            Action::Event(event) => self.on_event(i, event),
        }
    }

    fn on_event(&mut self, i: usize, event: Event) {
        match event {
            Event::Disconnected { peer, reason, .. } => {
                let remote = self.index.get(&peer).copied();
                self.metrics.disconnected(self.secs(), i, remote, reason);
            }
            Event::RedialGaveUp { peer, .. } if self.replace_on_give_up => {
                let Some(&gone) = self.index.get(&peer) else {
                    return;
                };
                self.nodes[i].wanted.retain(|w| *w != gone);
                self.nodes[i].manager.remove_peer(self.now, peer);
                self.metrics.replaced += 1;
                let n = self.nodes.len();
                let fresh = loop {
                    let pick = self.rng.gen_range(0..n);
                    if pick != i && !self.nodes[i].wanted.contains(&pick) {
                        break pick;
                    }
                };
                self.add_peer(i, fresh);
            }
            _ => {}
        }
    }

    /// The link, this side and the other side of a connection id.
    fn side_of(&self, conn: libp2p_swarm::ConnectionId) -> Option<(u64, usize, usize)> {
        let link = *self.conns.get(&conn)?;
        let mine = usize::from(self.links.get(&link)?.sides[1].conn == conn);
        Some((link, mine, 1 - mine))
    }

    fn node_of(&self, link: u64, side: usize) -> usize {
        self.links[&link].sides[side].node
    }

    /// Closes one side of an open link and tells its manager.
    fn close_side(&mut self, link: u64, side: usize, cause: CloseCause) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let s = l.sides[side];
        if !s.open {
            return;
        }
        l.sides[side].open = false;
        l.changed = self.now;
        let remote = self.nodes[l.sides[1 - side].node].peer;
        let both_closed = !l.sides[1 - side].open;
        self.nodes[s.node]
            .manager
            .on_closed(self.now, s.conn, remote, cause);
        if both_closed {
            self.forget_link(link);
        } else {
            self.conns.remove(&s.conn);
        }
        self.run_node(s.node);
    }

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
                    Err(_) => self.push(
                        now + latency,
                        Ev::DialFail {
                            link,
                            refused: true,
                        },
                    ),
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
        if self.nodes[b]
            .manager
            .check_established(now, listener.conn, peer_a, &inc)
            .is_err()
        {
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

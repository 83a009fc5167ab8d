//! What the swarm would do with a node's actions: they become events at the other nodes after
//! the link's latency (see `events.rs` for what the events do).

use libp2p_connection_manager::core::{Action, CloseCause, DialFailureCause, Event};
use rand::Rng;

use crate::{
    diag,
    world::{Ev, Link, Side, World},
};

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
                    if let Some(&target) = self.index.get(&peer) {
                        let outcome =
                            format!("denied by the dialer: {}", diag::denial_name(&denial));
                        self.diag_dial(target, &outcome);
                    }
                    let manager = &mut self.nodes[i].manager;
                    let cause = DialFailureCause::DeniedByManager(denial);
                    manager.on_dial_failure(now, conn, Some(peer), cause);
                    return;
                }
                let Some(&target) = self.index.get(&peer) else {
                    return;
                };
                self.metrics
                    .dial(self.secs(), i, self.bootstrap.contains(&target));
                self.diag_dial(target, "started");
                if self.nodes[i].manager.stats().connected_peers > 0 {
                    // Not a bootstrap round (those run with no connection): hearsay or a redial.
                    self.diag_dial(target, "started by a node with peers");
                }
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
                    let outcome = if reachable {
                        "timed out (lost)"
                    } else {
                        "timed out (accepts no inbound)"
                    };
                    self.diag_dial(target, outcome);
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
                    if self.diag.on {
                        let named: Vec<usize> = peers
                            .iter()
                            .filter_map(|(p, _)| self.index.get(p).copied())
                            .collect();
                        self.diag_list(b, named.into_iter());
                    }
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
            other => unreachable!("an action the simulator does not model: {other:?}"),
        }
    }

    fn on_event(&mut self, i: usize, event: Event) {
        match event {
            Event::Disconnected {
                peer,
                reason,
                closed_by,
                remaining,
                ..
            } => {
                let remote = self.index.get(&peer).copied();
                self.metrics.disconnected(self.secs(), i, remote, reason);
                if remaining == 0 {
                    self.diag_disconnected(i, remote, reason, closed_by);
                }
            }
            Event::Trimmed { peers, .. } => self.diag_trimmed(i, peers.len()),
            Event::PhaseChanged { new, .. } => self.diag_phase(i, new),
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
    pub(crate) fn side_of(&self, conn: libp2p_swarm::ConnectionId) -> Option<(u64, usize, usize)> {
        let link = *self.conns.get(&conn)?;
        let mine = usize::from(self.links.get(&link)?.sides[1].conn == conn);
        Some((link, mine, 1 - mine))
    }

    pub(crate) fn node_of(&self, link: u64, side: usize) -> usize {
        self.links[&link].sides[side].node
    }

    /// Closes one side of an open link and tells its manager.
    pub(crate) fn close_side(&mut self, link: u64, side: usize, cause: CloseCause) {
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
}

//! Inputs from the swarm: connections pending, established, closed, failed; goodbyes; pings.

use super::*;

impl Manager {
    /// An inbound connection is being negotiated.
    pub fn on_pending_inbound(
        &mut self,
        now: Instant,
        connection: ConnectionId,
    ) -> Result<(), Denial> {
        let _ = now;
        if self.terminated {
            return Err(self.deny(None, connection, Denial::Terminated));
        }
        self.pending.insert(
            connection,
            Pending {
                peer: None,
                direction: Direction::Inbound,
                deadline: None,
                timed_out: false,
            },
        );
        Ok(())
    }

    /// An outbound connection is being dialed, by the manager or anyone else, on `addresses`
    /// (remembered for redials). Returns the other addresses the manager knows for the peer.
    pub fn on_pending_outbound(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
    ) -> Result<Vec<Multiaddr>, Denial> {
        if self.terminated {
            return Err(self.deny(peer, connection, Denial::Terminated));
        }
        if peer == Some(self.local) {
            return Err(self.deny(
                peer,
                connection,
                Denial::SelfConnection { peer: self.local },
            ));
        }
        let deadline = peer.map(|_| now + self.config.dial_timeout);
        if let Some(at) = deadline {
            self.timers.schedule(at, Timer::DialDeadline(connection));
        }
        self.pending.insert(
            connection,
            Pending {
                peer,
                direction: Direction::Outbound,
                deadline,
                timed_out: false,
            },
        );
        let Some(peer) = peer else {
            return Ok(Vec::new());
        };
        let max = self.config.max_addresses_per_peer;
        let record = self.peers.entry(peer).or_default();
        record.pending_outbound += 1;
        let known = record
            .addresses
            .iter()
            .filter(|a| !addresses.contains(a))
            .cloned()
            .collect();
        for address in addresses.iter().rev() {
            record.add_address(address.clone(), max);
        }
        Ok(known)
    }

    /// A connection finished its handshake: may it be established? Refuses self-connections,
    /// connections past the per-peer cap, and duplicates whose winner is already established.
    pub fn check_established(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: PeerId,
        initiator: Initiator,
    ) -> Result<(), Denial> {
        if self.terminated {
            return Err(self.deny(Some(peer), connection, Denial::Terminated));
        }
        if peer == self.local {
            return Err(self.deny(Some(peer), connection, Denial::SelfConnection { peer }));
        }
        let Some(record) = self.peers.get(&peer) else {
            return Ok(());
        };
        let current = record.connections.len() as u32;
        let limit = self.config.max_connections_per_peer;
        if current >= limit {
            let denial = Denial::PerPeerLimit {
                peer,
                limit,
                current,
            };
            return Err(self.deny(Some(peer), connection, denial));
        }
        let newcomer = duplicates::Candidate {
            id: connection,
            initiator,
            established_at: now,
        };
        let mut candidates: Vec<_> = record.open().map(|c| c.candidate()).collect();
        candidates.push(newcomer);
        let Some(winner) = duplicates::survivor(&self.local, &peer, &candidates) else {
            return Ok(());
        };
        if winner.id != connection
            && duplicates::close_timing(&winner, &newcomer) == duplicates::CloseTiming::Now
        {
            tracing::debug!(%peer, %connection, kept = %winner.id, "refusing duplicate connection");
            self.push_event(Event::DuplicateClosed {
                peer,
                kept: winner.id,
                closed: connection,
            });
            self.mark_duplicate(now, peer);
            return Err(Denial::Duplicate {
                peer,
                kept: winner.id,
            });
        }
        Ok(())
    }

    /// A connection was established (every behaviour accepted it).
    pub fn on_established(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: PeerId,
        initiator: Initiator,
        direction: Endpoint,
        remote_addr: Multiaddr,
    ) {
        self.finish_pending(connection);
        let max = self.config.max_addresses_per_peer;
        let record = self.peers.entry(peer).or_default();
        let first = record.connections.is_empty();
        if initiator == Initiator::Local {
            record.add_address(remote_addr.clone(), max);
        }
        record.connections.push(ConnectionRecord {
            id: connection,
            initiator,
            direction,
            established_at: now,
            remote_addr,
            closing: None,
            remote_goodbye: None,
            grace_deadline: None,
            rtt: None,
        });
        record.redial_attempts = 0;
        record.rescue_dials = 0;
        self.owners.insert(connection, peer);
        self.cancel_redial(peer);
        if first {
            self.connected_peers += 1;
        }
        self.bootstrap.round.clear();
        self.bootstrap.attempt = 0;
        if let Some(due) = self.bootstrap.due.take() {
            self.timers.cancel(due, Timer::Bootstrap);
        }
        self.settle_duplicates(now, peer, Some(connection));
        self.update_phase();
    }

    /// An established connection closed.
    pub fn on_closed(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: PeerId,
        cause: CloseCause,
    ) {
        self.owners.remove(&connection);
        let Some(record) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(index) = record.connections.iter().position(|c| c.id == connection) else {
            return;
        };
        let closed = record.connections.swap_remove(index);
        let remaining = record.connections.len();
        let still_connected = record.is_connected();
        let pending_outbound = record.pending_outbound;
        let context = redial::PeerContext {
            wanted: record.wanted,
            attempt: record.redial_attempts,
            settling_duplicates: record
                .last_duplicate_at
                .is_some_and(|at| now.saturating_duration_since(at) <= self.config.duplicate_grace),
        };
        self.cancel_connection_timers(&closed);

        let (reason, closed_by, retry_after) = match (closed.closing, closed.remote_goodbye) {
            (Some(closing), _) => (closing.reason, ClosedBy::Local, None),
            (None, Some((reason, retry_after))) => (reason, ClosedBy::Remote, retry_after),
            (None, None) => match cause {
                CloseCause::Local | CloseCause::Idle => {
                    (DisconnectReason::Normal, ClosedBy::Local, None)
                }
                CloseCause::Transport => (DisconnectReason::Timeout, ClosedBy::Remote, None),
            },
        };
        tracing::debug!(%peer, %connection, %reason, ?closed_by, remaining, "connection closed");
        self.push_event(Event::Disconnected {
            peer,
            connection,
            reason,
            closed_by,
            remaining,
        });
        if remaining == 0 {
            self.connected_peers -= 1;
        }

        // Only the side that dialed the lost connection redials; the other side cleans up.
        if !still_connected
            && pending_outbound == 0
            && closed.initiator == Initiator::Local
            && !self.terminated
        {
            let plan = redial::plan(reason, closed_by, context);
            self.plan_redial(now, peer, plan, retry_after);
        }
        self.forget_if_idle(peer);
        if self.connected_peers == 0 && !self.terminated && !self.config.bootstrap_peers.is_empty()
        {
            self.schedule_bootstrap(now);
        }
        self.update_phase();
    }

    /// A dial failed. `peer` is the peer the dial named, if any.
    pub fn on_dial_failure(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        peer: Option<PeerId>,
        cause: DialFailure,
    ) {
        let pending = self.finish_pending(connection);
        if pending.as_ref().is_some_and(|p| p.timed_out) {
            // Already reported and planned for when its deadline passed.
            return;
        }
        let peer = pending.and_then(|p| p.peer).or(peer);
        if !matches!(cause, DialFailure::DeniedByManager(_)) {
            tracing::debug!(?peer, %connection, %cause, "dial failed");
            self.push_event(Event::DialFailed {
                peer,
                connection,
                cause: cause.clone(),
            });
        }
        if let Some(peer) = peer {
            self.after_failed_dial(now, peer, &cause);
        }
    }

    /// An inbound connection failed before it was established.
    pub fn on_listen_failure(&mut self, connection: ConnectionId) {
        self.finish_pending(connection);
    }

    /// The remote said goodbye on `connection`.
    pub fn on_goodbye_received(
        &mut self,
        now: Instant,
        connection: ConnectionId,
        reason: DisconnectReason,
        retry_after: Option<Duration>,
    ) {
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        if let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        {
            record.remote_goodbye = Some((reason, retry_after));
        }
        if reason == DisconnectReason::Duplicate {
            self.mark_duplicate(now, peer);
        }
        tracing::debug!(%peer, %connection, %reason, "goodbye received");
        self.push_event(Event::GoodbyeReceived {
            peer,
            connection,
            reason,
            retry_after,
        });
    }

    /// The goodbye on `connection` was delivered, refused, or timed out: close it now.
    pub fn on_goodbye_finished(&mut self, connection: ConnectionId) {
        let Some(peer) = self.owners.get(&connection).copied() else {
            return;
        };
        let Some(record) = self
            .peers
            .get_mut(&peer)
            .and_then(|r| r.connection_mut(connection))
        else {
            return;
        };
        if let Some(closing) = record.closing {
            self.timers
                .cancel(closing.deadline, Timer::GoodbyeDeadline(connection));
            self.actions.push_back(Action::Close { peer, connection });
        }
    }

    /// A ping on `connection` came back after `rtt`.
    pub fn on_ping_success(&mut self, connection: ConnectionId, rtt: Duration) {
        let Some(peer) = self.owners.get(&connection) else {
            return;
        };
        if let Some(record) = self
            .peers
            .get_mut(peer)
            .and_then(|r| r.connection_mut(connection))
        {
            record.rtt = Some(rtt);
        }
    }
}
